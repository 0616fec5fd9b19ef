//! Facts about this machine that both binaries report: its host name, its CPU and memory, and
//! its NVIDIA GPUs as `nvidia-smi` lists them (the coordinator does not link libtorch, so it
//! cannot ask CUDA).

use std::process::{Command, Stdio};

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// The CPU's model name, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "CPU".into())
}

/// The machine's RAM, MiB (0 when unknown).
pub fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// One GPU of this machine: the one type for a GPU in both binaries (nvidia-smi's list, the
/// CUDA driver's, the worker's preflight and its JSON, the coordinator's local workers).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gpu {
    /// Its number where it was listed: CUDA's ordinal (`cuda:N`) in this process from the CUDA
    /// driver and the preflight, nvidia-smi's index (PCI bus order) in nvidia-smi's list.
    pub ordinal: u32,
    /// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as nvidia-smi and CUDA_VISIBLE_DEVICES write it.
    pub uuid: String,
    pub name: String,
    #[serde(default)]
    pub memory_mb: u64,
}

/// `CUDA_VISIBLE_DEVICES`, which decides the GPUs CUDA shows this process; read here only.
pub fn cuda_visible_devices() -> Option<String> {
    std::env::var("CUDA_VISIBLE_DEVICES").ok()
}

/// What `nvidia-smi` reports: the driver's version and every GPU of the machine (whatever
/// `CUDA_VISIBLE_DEVICES` says).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Smi {
    pub driver_version: String,
    pub gpus: Vec<Gpu>,
}

/// Runs `nvidia-smi`; None where it is absent or fails (no driver loaded).
pub fn nvidia_smi() -> Option<Smi> {
    Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,uuid,name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_smi(&String::from_utf8_lossy(&o.stdout)))
}

/// Parses `nvidia-smi --query-gpu=index,uuid,name,memory.total,driver_version
/// --format=csv,noheader,nounits`.
pub fn parse_smi(csv: &str) -> Smi {
    let mut smi = Smi::default();
    for line in csv.lines() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, uuid, name, memory, driver] = f[..] else {
            continue;
        };
        let Ok(index) = index.parse() else { continue };
        smi.driver_version = driver.to_string();
        smi.gpus.push(Gpu {
            ordinal: index,
            uuid: uuid.to_string(),
            name: name.to_string(),
            memory_mb: memory.parse().unwrap_or(0),
        });
    }
    smi
}

/// The GPUs of `all` that a process may use under `CUDA_VISIBLE_DEVICES=visible`, in the order
/// it lists them (which becomes their `cuda:N` numbering). Entries are indices or UUIDs (a
/// unique prefix is enough, as for CUDA); as in CUDA, the list ends at the first entry that
/// names no GPU. Unset: every GPU.
pub fn visible_gpus(all: &[Gpu], visible: Option<&str>) -> Vec<Gpu> {
    let Some(list) = visible else {
        return all.to_vec();
    };
    let mut out: Vec<Gpu> = Vec::new();
    for entry in list.split(',').map(str::trim) {
        let found = if let Ok(i) = entry.parse::<u32>() {
            all.iter().find(|g| g.ordinal == i)
        } else {
            let mut m = all
                .iter()
                .filter(|g| !entry.is_empty() && g.uuid.starts_with(entry));
            match (m.next(), m.next()) {
                (Some(g), None) => Some(g),
                _ => None,
            }
        };
        match found {
            Some(g) if !out.contains(g) => out.push(g.clone()),
            _ => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nvidia_smi_csv() {
        let out = "0, GPU-aaaa1111-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559, 580.82.07\n\
                   1, GPU-bbbb2222-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559, 580.82.07\n\n";
        let smi = parse_smi(out);
        assert_eq!(smi.gpus.len(), 2);
        assert_eq!(smi.driver_version, "580.82.07");
        assert_eq!(smi.gpus[1].ordinal, 1);
        assert_eq!(smi.gpus[0].name, "NVIDIA H100 80GB HBM3");
        assert_eq!(smi.gpus[0].memory_mb, 81559);
        assert!(parse_smi("No devices were found\n").gpus.is_empty());
    }

    #[test]
    fn cuda_visible_devices_selects_and_orders_as_cuda_does() {
        let smi =
            parse_smi("0, GPU-aaaa, A, 1, 580\n1, GPU-bbbb, B, 1, 580\n2, GPU-bbcc, C, 1, 580\n");
        let names = |v: Option<&str>| -> Vec<String> {
            visible_gpus(&smi.gpus, v)
                .into_iter()
                .map(|g| g.name)
                .collect()
        };
        assert_eq!(names(None), ["A", "B", "C"]);
        assert_eq!(names(Some("2,0")), ["C", "A"]);
        assert_eq!(names(Some("GPU-bbcc")), ["C"]);
        assert_eq!(names(Some("GPU-a,1")), ["A", "B"]);
        // An ambiguous prefix, an unknown index or a MIG id ends the list, as in CUDA.
        assert_eq!(names(Some("0,GPU-bb,2")), ["A"]);
        assert_eq!(names(Some("1,7,0")), ["B"]);
        assert_eq!(names(Some("")), Vec::<String>::new());
        assert_eq!(names(Some("-1")), Vec::<String>::new());
    }
}
