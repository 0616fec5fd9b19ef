#!/usr/bin/env python3
"""A grid across containers, run as Kubernetes runs dlgrid's pods (tests/containers.sh).

The pods come from the Kubernetes manifests themselves (deploy/base), not from a copy: each
container's command, arguments, environment, user, volume mounts, read-only root filesystem and
dropped capabilities become a `podman run`, and each volume a folder on this machine:

  secret     the files the kustomization's secretGenerator names, made here (lab-certs.sh
             certificates, random tokens), mode defaultMode, group fsGroup
  configMap  the grid (the demo grid, checkpointing every epoch, instead of the paper's)
  PVC        a folder: the coordinator's state (its output folder is checked here) and the
             datasets (read-only)
  emptyDir   an empty folder, shared by the pod's containers, kept across a container restart

Containers share the host's network, where `coordinator` names 127.0.0.1 (the Service).
Init containers run first, in order; a container whose pod says `restartPolicy: OnFailure` is
started again after it is killed, as the kubelet would.

The run: one coordinator pod and two worker pods finish the demo grid; one worker container is
killed (SIGKILL) mid-job and started again. Then deploy/compose.yaml runs the same grid with
podman-compose and the same secrets, nothing killed. Passes (exit 0) when, both times, every
job succeeded exactly once and every container exited 0; the killed job resumed from a
checkpoint at most one epoch behind, the report is in the mounted output folder, and no
container logged a warning a clean run does not give.

usage: tests/containers.py IMAGE DATA_DIR GRID   (root, podman)
"""
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, "deploy", "base")
PREFIX = f"dlgrid-ct{os.getpid()}-"  # this run's containers
DEADLINE = 600  # seconds for the whole grid


def fail(msg):
    print(f"containers: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def say(msg):
    print(f"containers: {msg}", file=sys.stderr, flush=True)


def load(name):
    with open(os.path.join(BASE, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def job(docs, name):
    return next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"] == name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def podman(*args, check=True, capture=False):
    r = subprocess.run(["podman", *args], text=True, capture_output=capture)
    if check and r.returncode != 0:
        fail(f"podman {' '.join(args[:3])}...: exit {r.returncode}\n{r.stderr if capture else ''}")
    return r


class Secrets:
    """The kustomization's secretGenerator, with the files made here."""

    def __init__(self, root):
        self.src = os.path.join(root, "secrets-src")
        subprocess.run([os.path.join(REPO, "scripts", "lab-certs.sh"), self.src, "coordinator",
                        "127.0.0.1"], check=True, stdout=subprocess.DEVNULL)
        for name in ("token", "operator-token"):
            with open(os.path.join(self.src, name), "w") as f:
                f.write(os.urandom(32).hex() + "\n")
        with open(os.path.join(BASE, "kustomization.yaml")) as f:
            kust = yaml.safe_load(f)
        self.files = {}
        for s in kust["secretGenerator"]:
            pairs = [e.split("=", 1) for e in s["files"]]
            self.files[s["name"]] = {k: os.path.join(self.src, os.path.basename(v)) for k, v in pairs}
        self.root = root

    def volume(self, name, mode, group):
        d = os.path.join(self.root, "secrets", name)
        if not os.path.isdir(d):
            os.makedirs(d)
            for key, path in self.files[name].items():
                shutil.copy(path, os.path.join(d, key))
                os.chown(os.path.join(d, key), 0, group)
                os.chmod(os.path.join(d, key), mode)
            os.chmod(d, 0o755)
        return d


class Pod:
    """One pod of a Job's template: its volumes as folders, its containers as podman runs."""

    def __init__(self, name, spec, ctx):
        self.name, self.spec, self.ctx = name, spec, ctx
        sc = spec.get("securityContext", {})
        self.user = f"{sc['runAsUser']}:{sc['runAsGroup']}"
        self.fs_group = sc.get("fsGroup")
        if not sc.get("runAsNonRoot"):
            fail(f"pod {name}: runAsNonRoot is not set")
        self.volumes = {v["name"]: self.volume(v) for v in spec["volumes"]}

    def volume(self, v):
        root, name = self.ctx["root"], v["name"]
        if "secret" in v:
            return self.ctx["secrets"].volume(v["secret"]["secretName"],
                                             v["secret"].get("defaultMode", 0o644),
                                             self.fs_group or 0)
        if "configMap" in v:
            return self.ctx["configmaps"][v["configMap"]["name"]]
        if "persistentVolumeClaim" in v:
            return self.ctx["claims"][v["persistentVolumeClaim"]["claimName"]]
        if "emptyDir" in v:
            d = os.path.join(root, "pods", self.name, name)
            os.makedirs(d)
            os.chmod(d, 0o777)  # as the kubelet makes an emptyDir
            return d
        fail(f"pod {self.name}: volume {name} of a kind this test does not know: {v}")

    def run_args(self, c, detach):
        sc = c.get("securityContext", {})
        args = ["run", "--name", f"{PREFIX}{self.name}-{c['name']}", "--network", "host",
                "--add-host", "coordinator:127.0.0.1", "--user", self.user]
        if self.fs_group is not None:
            args += ["--group-add", str(self.fs_group)]
        if not sc.get("readOnlyRootFilesystem"):
            fail(f"{self.name}/{c['name']}: the root filesystem is not read-only")
        # Only the manifest's mounts are writable: no tmpfs podman would add on its own.
        args += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(f"{self.name}/{c['name']}: capabilities are not all dropped")
        args += ["--cap-drop", "all"]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for m in c.get("volumeMounts", []):
            mode = "ro" if m.get("readOnly") else "rw"
            args += ["-v", f"{self.volumes[m['name']]}:{m['mountPath']}:{mode}"]
        for e in c.get("env", []):
            if "value" in e:
                value = e["value"]
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
                value = self.name
            else:
                fail(f"{self.name}/{c['name']}: env {e['name']}: a source this test does not know")
            args += ["-e", f"{e['name']}={value}"]
        args += ["-e", f"WORKER_DATASET_MIRRORS={self.ctx['mirror']}"]
        args += ["-d"] if detach else ["--rm"]
        args += ["--entrypoint", c["command"][0], self.ctx["image"], *c["command"][1:]]
        return args + [self.ctx["rewrite"](a) for a in c.get("args", [])]

    def start(self):
        for c in self.spec.get("initContainers", []):
            r = podman(*self.run_args(c, detach=False), check=False, capture=True)
            if r.returncode != 0:
                fail(f"init container {self.name}/{c['name']}: exit {r.returncode}: {r.stderr}")
        (c,) = self.spec["containers"]
        podman(*self.run_args(c, detach=True), capture=True)
        return f"{PREFIX}{self.name}-{c['name']}"


class Page:
    """The coordinator's page over HTTPS, with the operators' token."""

    def __init__(self, port, secrets):
        src = secrets.src
        self.ctx = ssl.create_default_context(cafile=os.path.join(src, "ca.pem"))
        self.ctx.load_cert_chain(os.path.join(src, "client.pem"), os.path.join(src, "client.key"))
        with open(os.path.join(src, "operator-token")) as f:
            self.token = f.read().strip()
        self.url = f"https://127.0.0.1:{port}/results.json"

    def results(self):
        req = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=5) as r:
                return json.load(r)
        except OSError:
            return None


def state(name):
    r = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name,
               capture=True)
    status, code = r.stdout.split()
    return status, int(code)


def logs_of(name):
    r = podman("logs", name, capture=True)
    return r.stdout + r.stderr


def wait_exit(name, seconds):
    """Waits for container `name` to exit, and fails unless it exited 0."""
    limit = time.time() + seconds
    while state(name)[0] != "exited":
        if time.time() > limit:
            fail(f"{name} did not exit within {seconds:.0f} s")
        time.sleep(1)
    code = state(name)[1]
    if code != 0:
        fail(f"{name} exited {code}")


def kill_mid_job(page, container, worker, deadline):
    """Waits for a job of `worker` with an epoch done and more to go; SIGKILLs its container."""
    while time.time() < deadline:
        r = page.results()
        for j in (r or {}).get("jobs", []):
            done, total = len(j.get("epochs") or []), j["spec"]["epochs"]
            if j["status"] == "running" and str(j.get("worker", "")).startswith(worker) \
                    and 1 <= done < total:
                podman("kill", "--signal", "KILL", container, capture=True)
                say(f"killed {container} (SIGKILL) in job {j['id']} after {done} of {total} epochs")
                return j["id"], done
        time.sleep(0.2)
    fail(f"no job of {worker} was seen between epochs")


def resumed_from(logs, job_id):
    """The epochs the job's resuming worker found in its checkpoint (its JSON log line)."""
    for line in logs.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("message") == "resumed from checkpoint" and e.get("job_id") == job_id:
            return int(e["epochs_done"])
    return None


# Warnings a run like this one gives by design: two workers training on a machine's few cores
# slow each other (the worker says so), and a killed worker's lease runs out.
EXPECTED_WARNINGS = (
    "other processes competed for this job's cores",
    "lease expired; job re-queued",
)


def unexpected(logs):
    """The warnings and errors (JSON log lines) of `logs` that this run should not give."""
    found = []
    for name, text in logs.items():
        for line in text.splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            msg = str(e.get("message", ""))
            if e.get("level") in ("WARN", "ERROR") and not msg.startswith(EXPECTED_WARNINGS):
                found.append(f"{name}: {e['level']} {msg}")
    return found


def every_job_once(out, grid_jobs, killed=None):
    """results.json in `out`: every job of the grid succeeded with each epoch once, in one
    attempt (the `killed` one in two); the report beside it. Returns the jobs."""
    with open(os.path.join(out, "results.json")) as f:
        jobs = json.load(f)["jobs"]
    if len(jobs) != grid_jobs:
        fail(f"{len(jobs)} jobs in results.json, the grid has {grid_jobs}")
    for j in jobs:
        if j["status"] != "succeeded":
            fail(f"job {j['id']}: {j['status']} ({j.get('error')})")
        epochs = [e["epoch"] for e in j["epochs"]]
        if epochs != list(range(1, j["spec"]["epochs"] + 1)):
            fail(f"job {j['id']}: epochs {epochs}: each once, in order, was expected")
        if j["id"] == killed and j["attempts"] != 2:
            fail(f"the killed job {killed} took {j['attempts']} attempts, 2 were expected")
        if j["id"] != killed and j["attempts"] != 1:
            fail(f"job {j['id']}, not killed, took {j['attempts']} attempts")
    for f in ("report.md", "report.html", "results.json"):
        if not os.path.isfile(os.path.join(out, f)):
            fail(f"{f} is not in the mounted output folder {out}")
    return jobs


def check(out, grid_jobs, killed, at_kill, logs):
    jobs = every_job_once(out, grid_jobs, killed)
    found = [resumed_from(text, killed) for text in logs.values()]
    got = max((n for n in found if n is not None), default=None)
    if got is None:
        fail(f"no worker says it resumed {killed} from a checkpoint")
    if got < at_kill - 1:
        fail(f"{killed} resumed from epoch {got}, killed after {at_kill}: more than one lost")
    surprises = unexpected(logs)
    if surprises:
        fail("warnings or errors a clean run does not give (a path not writable, a file not "
             "readable...):\n  " + "\n  ".join(surprises))
    say(f"{len(jobs)} jobs succeeded once; {killed} killed after {at_kill} epoch(s), resumed "
        f"from {got}; report.md, report.html, results.json in the output folder")


def run_compose(image, data, grid, grid_jobs, secrets):
    """deploy/compose.yaml as its header says, with podman-compose and the same secrets: the
    same grid, nothing killed; every job once, and every container exits 0."""
    root = os.path.join(secrets.root, "compose")
    os.makedirs(root)
    shutil.copy(os.path.join(REPO, "deploy", "compose.yaml"), root)
    shutil.copytree(secrets.src, os.path.join(root, "secrets"))
    project = f"dlgrid-ct{os.getpid()}"
    compose = ["podman-compose", "-p", project, "-f", os.path.join(root, "compose.yaml")]
    env = dict(os.environ, GRID=grid, DATASETS=data, OUT=os.path.join(root, "out"),
               PAGE_PORT=str(free_port()), DLGRID_IMAGE=image)
    start = time.time()
    try:
        try:
            up = subprocess.run([*compose, "up"], env=env, text=True, capture_output=True,
                                timeout=DEADLINE)
            log = up.stdout + up.stderr
        except subprocess.TimeoutExpired as e:
            log = f"podman-compose up did not end within {DEADLINE} s: {e}"
        codes = {s: podman("inspect", "--format", "{{.State.ExitCode}}", f"{project}_{s}_1",
                           check=False, capture=True).stdout.strip()
                 for s in ("coordinator", "worker-0", "worker-1")}
        if any(code != "0" for code in codes.values()):
            print("\n".join(log.splitlines()[-40:]), file=sys.stderr)
            fail(f"deploy/compose.yaml: exit codes {codes}")
        every_job_once(os.path.join(root, "out", "out"), grid_jobs)
    finally:
        subprocess.run([*compose, "down", "-v"], env=env, capture_output=True)
    say(f"deploy/compose.yaml ran the grid, every job once, in {time.time() - start:.0f} s")


def run_pods(image, data, grid, grid_jobs, secrets):
    """The manifests' pods as containers: the grid, one worker killed mid-job (see above)."""
    root = secrets.root
    coordinator_docs, worker_docs = load("coordinator.yaml"), load("workers.yaml")
    c_job, w_job = job(coordinator_docs, "coordinator"), job(worker_docs, "workers")
    # The manifests' ports, moved to free ones (the host's network is shared).
    ports = {"50051": str(free_port()), "50052": str(free_port())}

    def rewrite(arg):
        for old, new in ports.items():
            arg = arg.replace(f":{old}", f":{new}")
        return arg

    grid_dir = os.path.join(root, "grid")
    os.makedirs(grid_dir)
    shutil.copy(grid, os.path.join(grid_dir, "grid.yaml"))
    os.chmod(grid_dir, 0o755)
    state_dir = os.path.join(root, "state")
    os.makedirs(state_dir)
    os.chown(state_dir, 0, 10001)
    os.chmod(state_dir, 0o2775)  # a claim the pod's fsGroup may write
    ctx = {"root": root, "image": image, "rewrite": rewrite, "secrets": secrets,
           "configmaps": {"grid": grid_dir},
           "claims": {"coordinator-state": state_dir, "datasets": data},
           "mirror": "http://127.0.0.1:9"}
    containers = {}
    started = time.time()
    try:
        containers["coordinator"] = Pod("coordinator", c_job["spec"]["template"]["spec"],
                                        ctx).start()
        workers = [f"workers-{i}" for i in range(w_job["spec"]["parallelism"])]
        pods = {w: Pod(w, w_job["spec"]["template"]["spec"], ctx) for w in workers}
        for w in workers:
            containers[w] = pods[w].start()
        say(f"{image}: coordinator and {len(workers)} workers started "
            f"(ports {ports['50051']}, {ports['50052']})")
        page = Page(ports["50052"], secrets)
        deadline = time.time() + DEADLINE
        victim = workers[-1]
        killed, at_kill = kill_mid_job(page, containers[victim], victim, deadline)
        if w_job["spec"]["template"]["spec"].get("restartPolicy") == "OnFailure":
            podman("start", containers[victim], capture=True)
            say(f"started {containers[victim]} again (restartPolicy: OnFailure)")
        wait_exit(containers["coordinator"], deadline - time.time())
        for w in workers:
            wait_exit(containers[w], 60)
        logs = {name: logs_of(c) for name, c in containers.items()}
        check(os.path.join(state_dir, "out"), grid_jobs, killed, at_kill, logs)
        say(f"the grid across containers took {time.time() - started:.0f} s")
    except SystemExit:
        for name in containers.values():
            r = podman("logs", "--tail", "30", name, check=False, capture=True)
            print(f"--- {name}\n{r.stdout}{r.stderr}", file=sys.stderr)
        raise
    finally:
        for name in containers.values():
            podman("rm", "-f", name, check=False, capture=True)


def main():
    image, data, grid = sys.argv[1:4]
    with open(grid) as f:
        g = yaml.safe_load(f)
    grid_jobs = len(g["activations"]) * len(g["datasets"]) * len(g.get("seeds", [0]))
    root = tempfile.mkdtemp(prefix="dlgrid-containers-")
    try:
        secrets = Secrets(root)
        run_pods(image, data, grid, grid_jobs, secrets)
        run_compose(image, data, grid, grid_jobs, secrets)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
