//! The training device: a [`DeviceSpec`] resolved against what CUDA sees (after the GPU
//! [`preflight`](crate::preflight)), and the facts the worker declares about it.

use common::DeviceSpec;
use orchestrator_proto::host;
use tch::Device;

use crate::cuda::{self, Gpu};
use crate::preflight::{self, Facts};

/// A device to train on, with its GPU's description when it is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub device: Device,
    pub gpu: Option<Gpu>,
}

impl Resolved {
    pub fn cpu() -> Resolved {
        Resolved {
            device: Device::Cpu,
            gpu: None,
        }
    }

    /// A human-readable name of the device: the GPU's name, or the CPU model.
    pub fn name(&self) -> String {
        match (&self.gpu, self.device) {
            (Some(g), _) => g.name.clone(),
            (None, Device::Cuda(i)) => format!("CUDA device {i}"),
            _ => host::cpu_model(),
        }
    }

    /// Memory of the device, MiB: the GPU's total memory, or the machine's RAM (0 if unknown).
    pub fn memory_mb(&self) -> u64 {
        match (&self.gpu, self.device) {
            (Some(g), _) => g.memory_mb,
            (None, Device::Cuda(_)) => 0,
            _ => host::memory_mb(),
        }
    }
}

/// `cpu` → the CPU, without asking CUDA anything. Otherwise the GPU preflight runs first, and
/// its error (an old driver, GPUs libtorch cannot see) stops the worker rather than letting it
/// train on the CPU by surprise. `auto` → GPU 0 if there is one, else the CPU; `cuda` → GPU 0;
/// `cuda:N` → GPU N, checked against the GPUs visible to this process.
pub fn resolve(spec: DeviceSpec) -> anyhow::Result<Resolved> {
    if spec == DeviceSpec::Cpu {
        return Ok(Resolved::cpu());
    }
    let verdict = preflight::check(&Facts::gather()).map_err(|e| {
        let hint = if spec == DeviceSpec::Auto {
            " (--device cpu trains on the CPU anyway)"
        } else {
            ""
        };
        anyhow::anyhow!("GPU preflight: {e}{hint}")
    })?;
    for note in &verdict.notes {
        tracing::debug!(%note, "GPU preflight");
    }
    choose(spec, verdict.gpus)
}

fn choose(spec: DeviceSpec, gpus: Vec<Gpu>) -> anyhow::Result<Resolved> {
    let index = match spec {
        DeviceSpec::Cpu => return Ok(Resolved::cpu()),
        DeviceSpec::Auto if gpus.is_empty() => {
            tracing::info!(
                "device auto: chose the CPU, as this machine has no NVIDIA GPU visible to it"
            );
            return Ok(Resolved::cpu());
        }
        DeviceSpec::Auto => 0,
        DeviceSpec::Cuda(i) => i.unwrap_or(0) as usize,
    };
    let Some(gpu) = gpus.get(index).cloned() else {
        anyhow::bail!(
            "--device {spec}: this process sees {} CUDA device(s){}",
            gpus.len(),
            orchestrator_proto::host::cuda_visible_devices()
                .map(|v| format!(" (CUDA_VISIBLE_DEVICES={v})"))
                .unwrap_or_default()
        );
    };
    if spec == DeviceSpec::Auto {
        tracing::info!(
            gpus = gpus.len(),
            gpu = %gpu.name,
            uuid = %gpu.uuid,
            "device auto: chose cuda:0, the first of the GPUs visible to this process"
        );
    }
    Ok(Resolved {
        device: Device::Cuda(index),
        gpu: Some(gpu),
    })
}

/// For a job process, whose daemon has already run the preflight: `spec` (`cpu` or `cuda:N`)
/// with its GPU's UUID from the driver library, without running nvidia-smi again.
pub fn resolve_for_job(spec: DeviceSpec) -> anyhow::Result<Resolved> {
    let DeviceSpec::Cuda(index) = spec else {
        // `cpu`; `auto` (a job started by hand) goes through the preflight.
        return if spec == DeviceSpec::Cpu {
            Ok(Resolved::cpu())
        } else {
            resolve(spec)
        };
    };
    let (index, count) = (index.unwrap_or(0) as usize, tch::Cuda::device_count());
    if count == 0 {
        // The preflight says why there is none.
        return resolve(spec);
    }
    if index as i64 >= count {
        anyhow::bail!("--device {spec}: libtorch sees {count} CUDA device(s)");
    }
    let gpus = cuda::driver().map(|d| d.gpus).unwrap_or_default();
    Ok(Resolved {
        device: Device::Cuda(index),
        gpu: gpus.get(index).cloned(),
    })
}

/// The spec naming `device` exactly (`cpu` or `cuda:N`).
pub fn spec_of(device: Device) -> DeviceSpec {
    match device {
        Device::Cuda(i) => DeviceSpec::Cuda(Some(i as u32)),
        // The worker only ever trains on the CPU or a CUDA device.
        _ => DeviceSpec::Cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(ordinal: u32) -> Gpu {
        Gpu {
            ordinal,
            uuid: format!("GPU-{ordinal}"),
            name: "NVIDIA H100".into(),
            memory_mb: 81559,
        }
    }

    #[test]
    fn cpu_resolves_and_names_itself() {
        assert_eq!(resolve(DeviceSpec::Cpu).unwrap().device, Device::Cpu);
        assert_eq!(spec_of(Device::Cuda(2)), DeviceSpec::Cuda(Some(2)));
        assert_eq!(spec_of(Device::Cpu), DeviceSpec::Cpu);
        assert!(!Resolved::cpu().name().is_empty());
    }

    #[test]
    fn auto_and_cuda_choose_among_the_visible_gpus() {
        assert_eq!(choose(DeviceSpec::Auto, vec![]).unwrap(), Resolved::cpu());
        let r = choose(DeviceSpec::Auto, vec![gpu(0), gpu(1)]).unwrap();
        assert_eq!(
            (r.device, r.name(), r.memory_mb()),
            (Device::Cuda(0), "NVIDIA H100".into(), 81559)
        );
        let r = choose(DeviceSpec::Cuda(Some(1)), vec![gpu(0), gpu(1)]).unwrap();
        assert_eq!(r.gpu.unwrap().uuid, "GPU-1");
        let e = choose(DeviceSpec::Cuda(Some(2)), vec![gpu(0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sees 1 CUDA device(s)"), "{e}");
        let e = choose(DeviceSpec::Cuda(None), vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sees 0 CUDA device(s)"), "{e}");
    }
}
