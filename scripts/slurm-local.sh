#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, for the tests and for trying the SLURM launcher:
# Debian's slurm-wlm and munge, one node ("localhost") with this machine's CPUs and two "GPUs"
# as generic resources whose device files are ordinary character devices, so `srun --gres=gpu:1` and
# `sbatch --gres=gpu:1` set CUDA_VISIBLE_DEVICES as on a GPU node (jobs then train on the CPU).
#
#   scripts/slurm-local.sh          # install what is missing, start munged, slurmctld, slurmd
#   scripts/slurm-local.sh stop     # stop the daemons this script started
#
# Needs root (it writes /etc/slurm and /etc/munge and starts system daemons); idempotent: a
# cluster that already answers `sinfo` is left as it is. Not for a real cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

state=/run/dlgrid-slurm
if [ "${1:-}" = stop ]; then
    for d in slurmd slurmctld munged; do
        [ -f "$state/$d.pid" ] && kill "$(cat "$state/$d.pid")" 2>/dev/null || true
    done
    exit 0
fi
if command -v sinfo >/dev/null && timeout 5 sinfo -h >/dev/null 2>&1; then
    echo "slurm-local: a cluster already answers sinfo" >&2
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "slurm-local: run as root" >&2; exit 1; }
command -v slurmctld >/dev/null && command -v munged >/dev/null || dlgrid_apt slurm-wlm munge
mkdir -p "$state" /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/munge /run/munge

# munge: a key only its owner reads (munged refuses anything looser), then the daemon.
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null >/dev/null 2>&1; then
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    cp /run/munge/munged.pid "$state/munged.pid"
fi

# Two GPUs whose device files are ordinary character devices (/dev/null's numbers): SLURM binds
# them per job as it binds /dev/nvidiaN on a GPU node.
for i in 0 1; do
    [ -c "$state/gpu$i" ] || { rm -f "$state/gpu$i"; mknod -m 666 "$state/gpu$i" c 1 3; }
done
cpus=$(nproc)
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=dlgrid-local
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MinJobAge=600
KillWait=5
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
NodeName=localhost CPUs=$cpus Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
cat >/etc/slurm/gres.conf <<EOF
NodeName=localhost Name=gpu File=$state/gpu[0-1]
EOF
slurmctld -i
slurmd -N localhost
for _ in $(seq 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^idle'; then
        echo "slurm-local: one node (localhost, $cpus CPUs, gpu:2) is up" >&2
        exit 0
    fi
    sleep 0.5
done
echo "slurm-local: the node did not come up; see /var/log/slurm/" >&2
sinfo -N -l >&2 || true
exit 1
