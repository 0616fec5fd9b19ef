//! What CUDA itself says about this machine, and the CUDA settings a job trains under.
//!
//! - [`build_version`]: the CUDA runtime libtorch was built for (libtorch's own record).
//! - [`driver`]: the NVIDIA driver's CUDA version and each GPU the process may use (UUID, name,
//!   memory), asked through the driver's library `libcuda.so.1`, loaded at run time so that the
//!   worker also runs where there is none. Like training itself, it honours
//!   `CUDA_VISIBLE_DEVICES`, which `nvidia-smi` ignores.
//! - [`Backend`]: TF32, cuDNN benchmark and deterministic modes, as `torch.backends` sets them.

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::fmt;

use common::Tf32;

extern "C" {
    fn dlgrid_cuda_backend(
        tf32_conv: c_int,
        tf32_matmul: c_int,
        benchmark: c_int,
        deterministic: c_int,
    ) -> c_int;
    fn dlgrid_cuda_runtime_version() -> std::ffi::c_long;
    fn dlgrid_cudnn_version() -> std::ffi::c_long;
    fn dlgrid_last_error() -> *const c_char;
}

/// A CUDA version, e.g. 13.0 (CUDA writes it as 1000 × major + 10 × minor: 13000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CudaVersion {
    pub major: u32,
    pub minor: u32,
}

impl CudaVersion {
    /// From CUDA's integer form (13000 → 13.0, 12040 → 12.4); None for 0 or less.
    pub fn from_int(v: i64) -> Option<CudaVersion> {
        (v > 0).then_some(CudaVersion {
            major: (v / 1000) as u32,
            minor: ((v % 1000) / 10) as u32,
        })
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The CUDA runtime libtorch was built with; None for a CPU-only libtorch.
pub fn build_version() -> Option<CudaVersion> {
    // SAFETY: no arguments; the C++ side catches every exception.
    CudaVersion::from_int(unsafe { dlgrid_cuda_runtime_version() } as i64)
}

/// The cuDNN version libtorch was built with, e.g. `9.13.0`; None without cuDNN.
pub fn cudnn_version() -> Option<String> {
    // SAFETY: no arguments; the C++ side catches every exception.
    let v = unsafe { dlgrid_cudnn_version() } as i64;
    (v > 0).then(|| format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100))
}

/// A GPU as the CUDA driver sees it: `ordinal` is its `cuda:N` number in this process.
pub use orchestrator_proto::host::Gpu;

/// What the driver library says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Driver {
    /// The newest CUDA version the driver supports.
    pub cuda: CudaVersion,
    pub gpus: Vec<Gpu>,
}

type CuResult = c_int;

/// Loads `libcuda.so.1` and asks it for the driver's CUDA version and the visible GPUs; the
/// error says why it could not (no driver library, or the driver's own error).
pub fn driver() -> Result<Driver, String> {
    // SAFETY: libcuda.so.1 is the NVIDIA driver's C library; loading it runs no code of ours,
    // and every symbol below is used with the signature the CUDA driver API documents.
    unsafe {
        let lib = libloading::Library::new("libcuda.so.1")
            .map_err(|e| format!("the CUDA driver library could not be loaded ({e})"))?;
        let init: libloading::Symbol<unsafe extern "C" fn(c_uint) -> CuResult> =
            lib.get(b"cuInit\0").map_err(|e| e.to_string())?;
        let version: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> CuResult> = lib
            .get(b"cuDriverGetVersion\0")
            .map_err(|e| e.to_string())?;
        let count: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> CuResult> =
            lib.get(b"cuDeviceGetCount\0").map_err(|e| e.to_string())?;
        let get: libloading::Symbol<unsafe extern "C" fn(*mut c_int, c_int) -> CuResult> =
            lib.get(b"cuDeviceGet\0").map_err(|e| e.to_string())?;
        let name: libloading::Symbol<unsafe extern "C" fn(*mut c_char, c_int, c_int) -> CuResult> =
            lib.get(b"cuDeviceGetName\0").map_err(|e| e.to_string())?;
        let memory: libloading::Symbol<unsafe extern "C" fn(*mut usize, c_int) -> CuResult> = lib
            .get(b"cuDeviceTotalMem_v2\0")
            .map_err(|e| e.to_string())?;
        let uuid: libloading::Symbol<unsafe extern "C" fn(*mut [u8; 16], c_int) -> CuResult> =
            lib.get(b"cuDeviceGetUuid\0").map_err(|e| e.to_string())?;
        let ok = |what: &str, rc: CuResult| match rc {
            0 => Ok(()),
            // 100 = CUDA_ERROR_NO_DEVICE, 35 = CUDA_ERROR_INSUFFICIENT_DRIVER, 999 = unknown.
            rc => Err(format!(
                "{what} failed with CUDA error {rc}{}",
                cu_error_hint(rc)
            )),
        };
        let mut v = 0;
        ok("cuDriverGetVersion", version(&mut v))?;
        let cuda = CudaVersion::from_int(v as i64)
            .ok_or_else(|| format!("the driver reports CUDA version {v}"))?;
        match init(0) {
            0 => {}
            100 => return Ok(Driver { cuda, gpus: vec![] }),
            rc => ok("cuInit", rc)?,
        }
        let mut n = 0;
        ok("cuDeviceGetCount", count(&mut n))?;
        let mut gpus = Vec::new();
        for ordinal in 0..n {
            let mut dev = 0;
            ok("cuDeviceGet", get(&mut dev, ordinal))?;
            let mut buf = [0 as c_char; 256];
            ok(
                "cuDeviceGetName",
                name(buf.as_mut_ptr(), buf.len() as c_int, dev),
            )?;
            let mut bytes = 0usize;
            ok("cuDeviceTotalMem", memory(&mut bytes, dev))?;
            let mut raw = [0u8; 16];
            ok("cuDeviceGetUuid", uuid(&mut raw, dev))?;
            gpus.push(Gpu {
                ordinal: ordinal as u32,
                uuid: format_uuid(&raw),
                name: CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned(),
                memory_mb: (bytes / (1024 * 1024)) as u64,
            });
        }
        Ok(Driver { cuda, gpus })
    }
}

fn cu_error_hint(rc: CuResult) -> &'static str {
    match rc {
        35 => " (CUDA_ERROR_INSUFFICIENT_DRIVER: the driver is older than the CUDA runtime)",
        100 => " (CUDA_ERROR_NO_DEVICE)",
        101 => " (CUDA_ERROR_INVALID_DEVICE: check CUDA_VISIBLE_DEVICES)",
        999 => " (CUDA_ERROR_UNKNOWN: often a driver/kernel-module mismatch; see dmesg)",
        _ => "",
    }
}

/// `GPU-` and the 16 bytes as 8-4-4-4-12 hex digits, as nvidia-smi writes UUIDs.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The CUDA settings of one job: what `torch.backends` would be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    pub tf32: Tf32,
    /// cuDNN's deterministic algorithms and ATen's deterministic mode; turns benchmark off.
    pub deterministic: bool,
}

impl Backend {
    /// Applies the settings to this process (for every CUDA device). cuDNN benchmark mode is
    /// on unless determinism is asked for: each conv shape is autotuned once, then reused.
    pub fn apply(self) -> anyhow::Result<()> {
        let (conv, matmul) = self.tf32.conv_matmul();
        // SAFETY: plain values; the C++ side catches every exception.
        let rc = unsafe {
            dlgrid_cuda_backend(
                conv as c_int,
                matmul as c_int,
                !self.deterministic as c_int,
                self.deterministic as c_int,
            )
        };
        if rc != 0 {
            // SAFETY: a NUL-terminated thread-local message, copied at once.
            let msg = unsafe { CStr::from_ptr(dlgrid_last_error()) };
            anyhow::bail!("setting the CUDA backend: {}", msg.to_string_lossy());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_uuids_read_as_cuda_writes_them() {
        let v = CudaVersion::from_int(12040).unwrap();
        assert_eq!(v.to_string(), "12.4");
        assert_eq!(CudaVersion::from_int(13000).unwrap().to_string(), "13.0");
        assert!(CudaVersion::from_int(-1).is_none());
        assert!(CudaVersion::from_int(12040) < CudaVersion::from_int(13000));
        let raw = [
            0x5a, 0x7c, 0x3e, 0x01, 0x9b, 0x2d, 0x4f, 0x60, 0x81, 0x22, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            format_uuid(&raw),
            "GPU-5a7c3e01-9b2d-4f60-8122-aabbccddeeff"
        );
    }

    /// This libtorch is the CUDA build (the project installs it), whether or not a GPU is here.
    #[test]
    fn libtorch_reports_its_cuda_build_and_the_backend_applies() {
        if let Some(v) = build_version() {
            assert!(v.major >= 11, "{v}");
        }
        let b = Backend {
            tf32: Tf32::Conv,
            deterministic: false,
        };
        b.apply().unwrap();
    }
}
