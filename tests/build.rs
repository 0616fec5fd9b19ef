//! Finds which outside tools and data the end-to-end tests can use on this machine, so a test
//! whose tool is missing is reported as *ignored* with its reason instead of passing by doing
//! nothing. Each probe sets `cfg(have_<name>)`; under `CI=true` the build sets `cfg(ci)` too,
//! which ignores nothing: there every tool must be present, and a missing one fails its test.

use std::path::{Path, PathBuf};
use std::process::Command;

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Beside `$DLGRID_PYTOOLS` (the pytools virtualenv's python), where scripts/test.sh installs
/// kubectl, kubernetes-validate and hadolint, else on PATH.
fn pytool(name: &str) -> bool {
    let venv = std::env::var_os("DLGRID_PYTOOLS")
        .map(|p| PathBuf::from(p).with_file_name(name))
        .is_some_and(|p| is_executable(&p));
    venv || on_path(name).is_some()
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn main() {
    for var in ["PATH", "DLGRID_PYTOOLS", "DATASETS_DIR", "CI"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");
    // A tool installed later lands in one of these folders, whose change runs the probes again.
    let mut folders: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    folders.extend(
        std::env::var_os("DLGRID_PYTOOLS")
            .and_then(|p| Path::new(&p).parent().map(Path::to_path_buf)),
    );
    for dir in folders.iter().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let probes: [(&str, bool); 12] = [
        (
            "chromium",
            on_path("chromium").is_some() || on_path("chromium-browser").is_some(),
        ),
        ("promtool", on_path("promtool").is_some()),
        ("script", on_path("script").is_some()),
        ("readelf", on_path("readelf").is_some()),
        ("kubectl", pytool("kubectl")),
        ("kubernetes_validate", pytool("kubernetes-validate")),
        ("hadolint", pytool("hadolint")),
        (
            "pytools",
            std::env::var_os("DLGRID_PYTOOLS").is_some_and(|p| is_executable(Path::new(&p))),
        ),
        ("datasets", std::env::var_os("DATASETS_DIR").is_some()),
        (
            "python_torch",
            succeeds(Command::new("python3").args(["-c", "import torch"])),
        ),
        // A SLURM cluster that answers (scripts/slurm-local.sh starts one).
        (
            "slurm",
            on_path("sbatch").is_some()
                && succeeds(Command::new("timeout").args(["5", "sinfo", "-h"])),
        ),
        (
            "gpu",
            on_path("nvidia-smi").is_some() && succeeds(Command::new("nvidia-smi").arg("-L")),
        ),
    ];
    for (name, found) in probes {
        println!("cargo::rustc-check-cfg=cfg(have_{name})");
        if found {
            println!("cargo::rustc-cfg=have_{name}");
        }
    }
    println!("cargo::rustc-check-cfg=cfg(ci)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        println!("cargo::rustc-cfg=ci");
    }
}
