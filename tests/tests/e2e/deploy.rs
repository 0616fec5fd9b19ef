//! The Kubernetes manifests in `deploy/`, rendered with kustomize (`kubectl kustomize`) and
//! checked against the binaries they run: the grid they carry parses, every flag they pass
//! exists, and the worker, the Service and the coordinator agree on one port. No cluster is
//! needed; skipped, with a note, where kubectl is not installed.

use std::path::Path;
use std::process::Command;

use integration_tests::{bin, output};

use crate::support::repo;
use serde::Deserialize;
use serde_yaml::Value;

/// The rendered objects of a kustomization, or None without kubectl.
fn render(dir: &str) -> Option<Vec<Value>> {
    let (status, stdout, stderr) = match Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    {
        Ok(_) => output(
            Command::new("kubectl")
                .arg("kustomize")
                .arg(repo().join(dir)),
        ),
        Err(_) => {
            eprintln!("kubectl not installed; skipping the manifest check of {dir}");
            return None;
        }
    };
    assert!(status.success(), "kustomize build {dir}: {stderr}");
    let docs = serde_yaml::Deserializer::from_str(&stdout)
        .map(|d| Value::deserialize(d).unwrap())
        .collect();
    Some(docs)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn container(job: &Value) -> &Value {
    &job["spec"]["template"]["spec"]["containers"][0]
}

fn args(job: &Value) -> Vec<String> {
    container(job)["args"]
        .as_sequence()
        .unwrap()
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

#[test]
fn base_manifests_agree_with_the_binaries() {
    let Some(docs) = render("deploy/base") else {
        return;
    };
    for d in &docs {
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "dlgrid", "{d:?}");
        }
    }
    // The grid in the ConfigMap is one the coordinator accepts.
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("grid ConfigMap");
    let grid_text = cm["data"]["grid.yaml"].as_str().unwrap();
    let grid = domain::Grid::parse(grid_text, Path::new("deploy/base/grid.yaml"))
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
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile
            .contains("/src/target/release/coordinator /src/target/release/worker /usr/local/bin/"),
        "the image puts both binaries where the manifests run them"
    );

    // One port: the coordinator listens on it, the container and Service expose it, the
    // workers dial the Service by name on it.
    let listen = arg(&c_args, "--listen");
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(container(coordinator)["ports"][0]["containerPort"], port);
    assert_eq!(service["spec"]["ports"][0]["port"], port);
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/name"],
        coordinator["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    assert_eq!(
        arg(&w_args, "--coordinator"),
        format!("http://coordinator:{port}")
    );
    assert_eq!(arg(&c_args, "--local-workers"), "0");
    // The probes use gRPC health, which the coordinator serves without the token.
    assert_eq!(
        container(coordinator)["readinessProbe"]["grpc"]["port"],
        port
    );

    // Both sides read the same secret, and the file they are told to read is where it mounts.
    for job in [coordinator, workers] {
        let job_args = args(job);
        let token = arg(&job_args, "--token-file");
        let mount = container(job)["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "token")
            .unwrap();
        assert!(token.starts_with(mount["mountPath"].as_str().unwrap()));
        let volume = job["spec"]["template"]["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "token")
            .unwrap();
        assert!(volume["secret"]["secretName"]
            .as_str()
            .unwrap()
            .starts_with("dlgrid-token"));
    }
}

#[test]
fn gpu_overlay_gives_each_worker_pod_one_gpu() {
    let Some(docs) = render("deploy/overlays/gpu") else {
        return;
    };
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
    assert!(workers["spec"]["template"]["spec"]["tolerations"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|t| t["key"] == "nvidia.com/gpu"));
}
