//! The GPU preflight: whether the GPUs this machine has can be used by this libtorch, and if
//! not, why, in words a user can act on.
//!
//! The common failure: PyPI's CUDA 13 build of torch needs NVIDIA driver 580 or newer. With an
//! older driver `nvidia-smi` lists the GPUs while libtorch sees none, so a worker would fall
//! back to the CPU or die without saying why. The facts are gathered once ([`Facts::gather`])
//! and judged by a pure function ([`check`]), which the tests feed with made-up machines.

use orchestrator_proto::host::{self, Smi};
use serde::Serialize;

use crate::cuda::{self, CudaVersion, Gpu};

/// Everything the preflight looks at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The CUDA libtorch was built for; None for a CPU-only build.
    pub build: Option<CudaVersion>,
    /// `nvidia-smi`'s report; None where it is absent or fails.
    pub smi: Option<Smi>,
    /// The inherited `CUDA_VISIBLE_DEVICES`.
    pub visible: Option<String>,
    /// The driver library's answer, or why there is none.
    pub driver: Result<cuda::Driver, String>,
    /// The CUDA devices libtorch counts.
    pub torch_count: i64,
    /// Whether this worker loads libtorch's CUDA part: false for a worker built with
    /// `DLGRID_WORKER_CUDA=off` (the CPU image).
    pub cuda_linked: bool,
}

/// Whether this binary was built to load libtorch's CUDA part (worker/build.rs).
pub const CUDA_LINKED: bool = !matches!(env!("DLGRID_WORKER_CUDA").as_bytes(), b"off");

impl Facts {
    /// Asks the machine.
    pub fn gather() -> Facts {
        Facts {
            build: cuda::build_version(),
            smi: host::nvidia_smi(),
            visible: host::cuda_visible_devices(),
            driver: cuda::driver(),
            torch_count: tch::Cuda::device_count(),
            cuda_linked: CUDA_LINKED,
        }
    }
}

/// The preflight's answer: the GPUs this process can train on (none on a CPU machine), and
/// what it found, for the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub gpus: Vec<Gpu>,
    pub notes: Vec<String>,
}

/// The oldest Linux driver each CUDA major version runs on (CUDA's release notes, table 3).
fn min_driver(cuda_major: u32) -> Option<u32> {
    match cuda_major {
        11 => Some(450),
        12 => Some(525),
        13 => Some(580),
        _ => None,
    }
}

/// The newest CUDA a Linux driver of this major version supports (CUDA's release notes).
fn cuda_of_driver(driver_major: u32) -> CudaVersion {
    let (major, minor) = match driver_major {
        580.. => (13, 0),
        570.. => (12, 8),
        560.. => (12, 6),
        550.. => (12, 4),
        535.. => (12, 2),
        525.. => (12, 0),
        450.. => (11, 0),
        _ => (10, 0),
    };
    CudaVersion { major, minor }
}

/// The torch wheel index to suggest for a driver supporting CUDA `supported`: PyTorch 2.11
/// publishes cu126, cu128 and cu130 builds, and a CUDA 12 build runs on any CUDA 12 driver
/// (CUDA's minor version compatibility).
fn wheel_for(supported: CudaVersion) -> Option<&'static str> {
    match (supported.major, supported.minor) {
        (13.., _) => Some("cu130"),
        (12, 8..) => Some("cu128"),
        (12, _) => Some("cu126"),
        _ => None,
    }
}

/// Judges `f`: Ok with the usable GPUs, or an error saying what is wrong and the ways out.
pub fn check(f: &Facts) -> Result<Verdict, String> {
    let smi_visible = f
        .smi
        .as_ref()
        .map(|s| host::visible_gpus(&s.gpus, f.visible.as_deref()))
        .unwrap_or_default();
    let driver_gpus = f
        .driver
        .as_ref()
        .map(|d| d.gpus.clone())
        .unwrap_or_default();
    let visible_note = f
        .visible
        .as_ref()
        .map(|v| format!(" (CUDA_VISIBLE_DEVICES={v})"))
        .unwrap_or_default();
    let notes = notes(f, smi_visible.len(), &visible_note);
    let expected = smi_visible.len().max(driver_gpus.len());
    if expected == 0 && f.torch_count == 0 {
        return Ok(Verdict {
            gpus: vec![],
            notes,
        });
    }
    if !f.cuda_linked {
        return Err(format!(
            "this machine has {expected} NVIDIA GPU(s) but this worker was built for CPUs only \
             (DLGRID_WORKER_CUDA=off, as in the CPU image dlgrid:<version>-cpu); run the CUDA \
             image, or a worker built without that setting"
        ));
    }
    let Some(build) = f.build else {
        return Err(format!(
            "this machine has {expected} NVIDIA GPU(s) but this libtorch has no CUDA support \
             (a CPU-only build); install the CUDA build of torch (scripts/env.sh does by default)"
        ));
    };
    driver_new_enough(f, build)?;
    if (f.torch_count as usize) < expected {
        let why = f.driver.as_ref().err().cloned().unwrap_or_else(|| {
            "the driver and libtorch disagree; is the kernel module loaded (dmesg)?".into()
        });
        return Err(format!(
            "{expected} GPU(s) are visible to this process{visible_note} but libtorch sees {}: {why}",
            f.torch_count
        ));
    }
    let gpus = if driver_gpus.is_empty() {
        // nvidia-smi's view, renumbered as CUDA numbers the visible devices.
        smi_visible
            .into_iter()
            .enumerate()
            .map(|(i, g)| Gpu {
                ordinal: i as u32,
                uuid: g.uuid,
                name: g.name,
                memory_mb: g.memory_mb,
            })
            .collect()
    } else {
        driver_gpus
    };
    Ok(Verdict { gpus, notes })
}

/// What the preflight found, one line per source.
fn notes(f: &Facts, smi_visible: usize, visible_note: &str) -> Vec<String> {
    let mut notes = Vec::new();
    match &f.smi {
        None => notes.push("nvidia-smi: not found or failed".into()),
        Some(s) => notes.push(format!(
            "nvidia-smi: driver {}, {} GPU(s), {smi_visible} visible to this process{visible_note}",
            s.driver_version,
            s.gpus.len(),
        )),
    }
    match &f.driver {
        Ok(d) => notes.push(format!(
            "CUDA driver library: supports CUDA {}, {} GPU(s) visible",
            d.cuda,
            d.gpus.len()
        )),
        Err(why) => notes.push(format!("CUDA driver library: {why}")),
    }
    let build = if f.cuda_linked {
        let build = f
            .build
            .map_or("none (a CPU-only build)".into(), |v| v.to_string());
        format!("built for CUDA {build}")
    } else {
        "this worker is built for CPUs only and does not load its CUDA part".into()
    };
    notes.push(format!(
        "libtorch {}: {build}, sees {} GPU(s)",
        crate::LIBTORCH_VERSION,
        f.torch_count
    ));
    notes
}

/// Whether the driver runs CUDA `build`; the error names the driver needed and both ways out.
fn driver_new_enough(f: &Facts, build: CudaVersion) -> Result<(), String> {
    let smi_driver = f.smi.as_ref().map(|s| s.driver_version.clone());
    let driver_major = smi_driver
        .as_deref()
        .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
    let supported = match &f.driver {
        Ok(d) => Some(d.cuda),
        Err(_) => driver_major.map(cuda_of_driver),
    };
    let Some(supported) = supported else {
        return Ok(());
    };
    let too_old = supported.major < build.major
        || matches!((driver_major, min_driver(build.major)), (Some(d), Some(min)) if d < min);
    if !too_old {
        return Ok(());
    }
    let needed = min_driver(build.major).map_or(String::new(), |m| format!(" {m} or newer"));
    let have = smi_driver.unwrap_or_else(|| "an older one".into());
    let other = match wheel_for(supported) {
        Some(w) => format!(
            "or install the torch build for the CUDA your driver supports: \
             `TORCH_CUDA={w} scripts/env.sh`, then rebuild (cargo build --release)"
        ),
        None => "no torch 2.11 build supports a driver this old".into(),
    };
    Err(format!(
        "libtorch {} is built for CUDA {build}, which needs NVIDIA driver{needed}; this machine's \
         driver is {have} (CUDA {supported} at most), so libtorch cannot use its GPUs. Either \
         install driver{needed}, {other}",
        crate::LIBTORCH_VERSION
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_proto::host::parse_smi;

    const TWO_H100: &str = "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, DRIVER\n\
                            1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, DRIVER\n";

    fn machine(driver: &str, torch_count: i64, visible: Option<&str>) -> Facts {
        Facts {
            build: CudaVersion::from_int(13000),
            smi: Some(parse_smi(&TWO_H100.replace("DRIVER", driver))),
            visible: visible.map(str::to_string),
            driver: Err("the CUDA driver library could not be loaded (test)".into()),
            torch_count,
            cuda_linked: true,
        }
    }

    #[test]
    fn an_old_driver_names_the_driver_needed_and_both_ways_out() {
        let e = check(&machine("550.54.15", 0, None)).unwrap_err();
        assert!(e.contains("built for CUDA 13.0"), "{e}");
        assert!(e.contains("driver 580 or newer"), "{e}");
        assert!(e.contains("550.54.15"), "{e}");
        assert!(e.contains("TORCH_CUDA=cu126 scripts/env.sh"), "{e}");
        // The driver library's own answer wins over the table: 12.8 → the cu128 build.
        let mut f = machine("570.86.10", 0, None);
        f.driver = Ok(cuda::Driver {
            cuda: CudaVersion::from_int(12080).unwrap(),
            gpus: vec![],
        });
        let e = check(&f).unwrap_err();
        assert!(e.contains("TORCH_CUDA=cu128"), "{e}");
        let e = check(&machine("470.1", 0, None)).unwrap_err();
        assert!(e.contains("no torch 2.11 build"), "{e}");
    }

    #[test]
    fn gpus_libtorch_cannot_see_are_an_error_not_a_cpu_fallback() {
        let e = check(&machine("580.82.07", 0, None)).unwrap_err();
        assert!(e.contains("2 GPU(s) are visible"), "{e}");
        assert!(e.contains("libtorch sees 0"), "{e}");
        assert!(e.contains("could not be loaded"), "{e}");
    }

    #[test]
    fn cuda_visible_devices_decides_what_is_expected_and_numbered() {
        let v = check(&machine("580.82.07", 1, Some("GPU-bbbb"))).unwrap();
        assert_eq!(v.gpus.len(), 1);
        assert_eq!(
            (v.gpus[0].ordinal, v.gpus[0].uuid.as_str()),
            (0, "GPU-bbbb")
        );
        assert!(v
            .notes
            .iter()
            .any(|n| n.contains("CUDA_VISIBLE_DEVICES=GPU-bbbb")));
        // Hidden entirely: a CPU machine as far as this process goes.
        let v = check(&machine("550.54.15", 0, Some(""))).unwrap();
        assert!(v.gpus.is_empty());
        let v = check(&machine("580.82.07", 2, None)).unwrap();
        assert_eq!(v.gpus.len(), 2);
    }

    #[test]
    fn cpu_machines_and_cpu_builds() {
        let cpu = Facts {
            build: CudaVersion::from_int(13000),
            smi: None,
            visible: None,
            driver: Err("no libcuda".into()),
            torch_count: 0,
            cuda_linked: true,
        };
        let v = check(&cpu).unwrap();
        assert!(v.gpus.is_empty());
        assert!(v.notes[0].contains("nvidia-smi: not found"));
        let e = check(&Facts {
            build: None,
            ..machine("580.82.07", 0, None)
        })
        .unwrap_err();
        assert!(e.contains("no CUDA support"), "{e}");
        // The CPU image's worker on a GPU machine says which image it is, not "libtorch sees 0".
        let e = check(&Facts {
            cuda_linked: false,
            ..machine("580.82.07", 0, None)
        })
        .unwrap_err();
        assert!(e.contains("built for CPUs only"), "{e}");
        assert!(e.contains("CUDA image"), "{e}");
        let v = check(&Facts {
            cuda_linked: false,
            ..cpu
        })
        .unwrap();
        assert!(v.notes[2].contains("built for CPUs only"), "{:?}", v.notes);
    }

    /// Name and memory come from CUDA itself where nvidia-smi is absent.
    #[test]
    fn the_driver_library_describes_gpus_without_nvidia_smi() {
        let f = Facts {
            build: CudaVersion::from_int(13000),
            smi: None,
            visible: None,
            driver: Ok(cuda::Driver {
                cuda: CudaVersion::from_int(13000).unwrap(),
                gpus: vec![Gpu {
                    ordinal: 0,
                    uuid: "GPU-cccc".into(),
                    name: "NVIDIA H200".into(),
                    memory_mb: 143771,
                }],
            }),
            torch_count: 1,
            cuda_linked: true,
        };
        let v = check(&f).unwrap();
        assert_eq!(v.gpus[0].name, "NVIDIA H200");
        assert_eq!(v.gpus[0].memory_mb, 143771);
    }
}
