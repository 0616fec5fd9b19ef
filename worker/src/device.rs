//! The training device: a [`DeviceSpec`] resolved against what libtorch sees, and the facts
//! the worker declares about it.

use domain::DeviceSpec;
use orchestrator_proto::host;
use tch::Device;

/// `auto` → the first GPU if libtorch sees one, else the CPU; `cuda` → GPU 0; `cuda:N` → GPU N,
/// checked against the devices libtorch sees.
pub fn resolve(spec: DeviceSpec) -> anyhow::Result<Device> {
    let gpus = tch::Cuda::device_count();
    let index = match spec {
        DeviceSpec::Cpu => return Ok(Device::Cpu),
        DeviceSpec::Auto if gpus > 0 => 0,
        DeviceSpec::Auto => return Ok(Device::Cpu),
        DeviceSpec::Cuda(i) => i.unwrap_or(0) as usize,
    };
    if (index as i64) >= gpus {
        anyhow::bail!(
            "--device {spec}: this machine has {gpus} CUDA device(s) visible to libtorch"
        );
    }
    Ok(Device::Cuda(index))
}

/// The spec naming `device` exactly (`cpu` or `cuda:N`).
pub fn spec_of(device: Device) -> DeviceSpec {
    match device {
        Device::Cuda(i) => DeviceSpec::Cuda(Some(i as u32)),
        // The worker only ever trains on the CPU or a CUDA device.
        _ => DeviceSpec::Cpu,
    }
}

/// A human-readable name of the device: the GPU's name, or the CPU model.
pub fn name(device: Device) -> String {
    match device {
        Device::Cuda(i) => gpu(i)
            .map(|g| g.name)
            .unwrap_or_else(|| format!("CUDA device {i}")),
        _ => host::cpu_model(),
    }
}

/// Memory of the device, MiB: the GPU's total memory, or the machine's RAM (0 when unknown).
pub fn memory_mb(device: Device) -> u64 {
    match device {
        Device::Cuda(i) => gpu(i).map_or(0, |g| g.memory_mb),
        _ => host::memory_mb(),
    }
}

fn gpu(index: usize) -> Option<host::Gpu> {
    host::gpus().into_iter().find(|g| g.index as usize == index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_resolves_and_names_itself() {
        assert_eq!(resolve(DeviceSpec::Cpu).unwrap(), Device::Cpu);
        assert_eq!(spec_of(Device::Cuda(2)), DeviceSpec::Cuda(Some(2)));
        assert_eq!(spec_of(Device::Cpu), DeviceSpec::Cpu);
        if tch::Cuda::device_count() == 0 {
            assert_eq!(resolve(DeviceSpec::Auto).unwrap(), Device::Cpu);
            let e = resolve(DeviceSpec::Cuda(Some(0))).unwrap_err().to_string();
            assert!(e.contains("0 CUDA device(s)"), "{e}");
        }
        assert!(!name(Device::Cpu).is_empty());
    }
}
