#!/usr/bin/env bash
# Multi-host test: the coordinator and two workers in separate network namespaces, each with
# its own address on a bridge, like three machines. Worker A's link is cut for longer than the
# lease mid-job and then healed: its job must finish exactly once (on B, from A's checkpoint
# stored with the coordinator), and A's late reports must be rejected.
# Everything crosses the "network" over mutual TLS with certificates made by
# scripts/lab-certs.sh (as docs/operations/security.md says); a plaintext client and one without a client
# certificate get nothing; a host opening more than 64 connections has the rest closed.
#
# Needs root (ip netns); builds nothing: run scripts/test.sh (or cargo build) first.
# Only addresses inside these namespaces are used (10.77.0.0/24 on a private bridge).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN_DIR:-target/debug}
data=${DATA:-$(mktemp -d)}
work=$(mktemp -d)
ns="dlg$$"
cleanup() {
    set +e
    for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    for n in c a b; do ip netns pids "$ns$n" 2>/dev/null | xargs -r kill -9; ip netns del "$ns$n" 2>/dev/null; done
    ip link del "br$ns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

command -v ip >/dev/null || { echo "multihost: needs iproute2 (ip)"; exit 1; }
ip link add "br$ns" type bridge && ip link set "br$ns" up
i=1
for n in c a b; do
    ip netns add "$ns$n"
    ip link add "v$ns$n" type veth peer name eth0 netns "$ns$n"
    ip link set "v$ns$n" master "br$ns" up
    ip -n "$ns$n" addr add "10.77.0.$i/24" dev eth0
    ip -n "$ns$n" link set eth0 up
    ip -n "$ns$n" link set lo up
    i=$((i + 1))
done

# A dataset the workers can learn: the test helper writes one when DATA has none.
if [ ! -e "$data/mnist/train-images-idx3-ubyte" ] && [ ! -e "$data/mnist/train-images-idx3-ubyte.gz" ]; then
    cargo run -q -p integration-tests --example make_fixture -- "$data/mnist"
fi
cat >"$work/grid.yaml" <<YAML
name: multihost
# Every epoch, so the worker that takes over resumes from what the first one stored.
checkpoint_every: 1
activations: [relu]
datasets:
  - {dataset: mnist, model: paper-cnn, epochs: 12, target_accuracy: 0.5, latency_samples: 5}
YAML
export WORKER_DATASET_MIRRORS=http://127.0.0.1:9
# The hosts share a network: the coordinator refuses to serve it without a token.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/token")
# The operators' token: the control API and the page take it, and not the workers'.
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/operator-token")
pki="$work/pki"
bash scripts/lab-certs.sh "$pki" 10.77.0.1 coordinator.lab 2>/dev/null
ip netns exec "${ns}c" "$bin/coordinator" --grid "$work/grid.yaml" --out "$work/out" \
    --listen 10.77.0.1:50051 --http 10.77.0.1:50052 --local-workers 0 --lease-seconds 3 \
    --token-file "$work/token" --operator-token-file "$work/operator-token" \
    --tls-cert "$pki/coordinator.pem" --tls-key "$pki/coordinator.key" \
    --tls-client-ca "$pki/ca.pem" 2>"$work/coordinator.log" &
coord=$!
tls=(--tls-ca "$pki/ca.pem" --tls-cert "$pki/client.pem" --tls-key "$pki/client.key")
worker() { # name netns
    ip netns exec "$ns$2" "$bin/worker" --coordinator https://10.77.0.1:50051 --device cpu \
        --name "$1" --data-dir "$data" --checkpoint-dir "$work/$1-ckpt" --token-file "$work/token" \
        "${tls[@]}" 2>"$work/$1.log" &
}
page() { # path, from worker b's host
    ip netns exec "${ns}b" curl -sf --cacert "$pki/ca.pem" \
        -H "Authorization: Bearer $(cat "$work/operator-token")" "https://10.77.0.1:50052$1"
}
for _ in $(seq 100); do page /results.json >/dev/null && break; sleep 0.1; done
status() { ip netns exec "${ns}b" "$bin/coordinator" status --connect "$1" --token-file "$work/operator-token" "${@:2}" 2>&1; }
# Into a variable first: with pipefail, `status | grep -q` fails whenever grep's early exit
# makes status's next write hit a closed pipe (SIGPIPE), as it did once in CI.
said="$(status https://10.77.0.1:50051 "${tls[@]}" || true)"
grep -q "grid multihost:" <<<"$said" \
    || { echo "multihost: status over mTLS failed:"; echo "$said"; exit 1; }
if status http://10.77.0.1:50051 >/dev/null; then echo "multihost: plaintext was served"; exit 1; fi
if ip netns exec "${ns}b" "$bin/coordinator" cancel --all --connect https://10.77.0.1:50051 \
    --token-file "$work/token" "${tls[@]}" >/dev/null 2>&1; then
    echo "multihost: a worker's token cancelled the grid"; exit 1
fi
if status https://10.77.0.1:50051 --tls-ca "$pki/ca.pem" >/dev/null; then
    echo "multihost: served without a client certificate"; exit 1
fi
# One host, 80 connections: 64 are kept, the rest closed at once.
ip netns exec "${ns}b" python3 - <<'PY'
import socket, time
conns = [socket.create_connection(("10.77.0.1", 50051)) for _ in range(80)]
time.sleep(1)
closed = 0
for c in conns:
    c.setblocking(False)
    try:
        closed += c.recv(1) == b""
    except BlockingIOError:
        pass
    except ConnectionError:
        closed += 1
assert closed == 16, f"{closed} of 80 closed, expected 16"
print("multihost: ok: 16 of 80 connections from one host closed (cap 64)")
PY
echo "multihost: ok: mTLS status works; plaintext and certificate-less clients refused"
worker a a
epochs() {
    page /results.json \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["jobs"][0]["epochs"]))' 2>/dev/null || echo 0
}
for _ in $(seq 600); do [ "$(epochs)" -ge 2 ] && break; sleep 0.1; done
echo "multihost: cutting worker a's link after $(epochs) epochs"
ip link set "v${ns}a" down
worker b b
sleep 5   # past the 3 s lease
echo "multihost: healing worker a's link"
ip link set "v${ns}a" up
wait "$coord"
python3 - "$work/out/results.json" <<'PY'
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
assert len(jobs) == 1, jobs
j = jobs[0]
assert j["status"] == "succeeded", j
assert j["worker"] == "b", j["worker"]
assert [e["epoch"] for e in j["epochs"]] == list(range(1, 13)), j["epochs"]
print(f"multihost: ok: one result, attempts {j['attempts']}, finished on {j['worker']}")
PY
grep -q "resuming from the checkpoint stored with the coordinator" "$work/b.log" \
    || { echo "multihost: b did not resume from the stored checkpoint"; cat "$work/b.log"; exit 1; }
echo "multihost: ok: b resumed from a's checkpoint"
echo "multihost: 1 passed, 0 failed"
