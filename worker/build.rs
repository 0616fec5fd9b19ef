//! Compiles the C++ operations of `csrc/` (see `csrc/ops.h`) against libtorch, and sets link settings that
//! make the worker binary self-contained and CUDA-capable.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    // rustc links with --as-needed, which drops libtorch_cuda.so because no symbol of it is
    // referenced directly; CUDA then silently reports as unavailable. Keep it when it exists.
    let version = torch_version().unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LIBTORCH_VERSION={version}");
    // DLGRID_WORKER_CUDA=off builds a CPU-only worker that does not load libtorch_cuda.so (and
    // the 3 GB of CUDA libraries it needs): the CPU image's (scripts/image.sh cpu).
    println!("cargo:rerun-if-env-changed=DLGRID_WORKER_CUDA");
    let cuda = std::env::var("DLGRID_WORKER_CUDA").as_deref() != Ok("off");
    println!(
        "cargo:rustc-env=DLGRID_WORKER_CUDA={}",
        if cuda { "on" } else { "off" }
    );
    let lib = libtorch_lib_dir();
    if let Some(dir) = &lib {
        if cuda && dir.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        // So the binaries (and unit-test executables) run without LD_LIBRARY_PATH.
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
    println!(
        "cargo:rustc-env=DLGRID_KERNELS_SOURCE={}",
        kernels_source_hash()
    );
    compile_ops();
}

/// The C++ sources of our operations and kernels.
/// Every C++ source the worker compiles: the operations against libtorch, and the kernels of
/// `csrc/kernels/` (which include no libtorch header).
const CSRC: [&str; 18] = [
    "ops.h",
    "dispatch.cpp",
    "pool_op.cpp",
    "conv_op.cpp",
    "glue.cpp",
    "winograd.cpp",
    "winograd.h",
    "kernels/kernels.h",
    "kernels/common.h",
    "kernels/pool.h",
    "kernels/conv1.h",
    "kernels/rgb_conv.h",
    "kernels/winograd_tiles.h",
    "kernels/table.h",
    "kernels/vec_avx2.h",
    "kernels/vec_avx512.h",
    "kernels/table_avx2.cpp",
    "kernels/table_avx512.cpp",
];

/// A hash (FNV-1a, 64 bits) of the C++ sources: the engine cache keys its measurements with it,
/// so a worker whose kernels changed measures again instead of trusting an older one's choice.
fn kernels_source_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in CSRC {
        let text = std::fs::read(Path::new("csrc").join(f)).unwrap_or_default();
        for b in text {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The operations of `csrc/` (see `csrc/ops.h`), built with the include folders and C++ ABI of
/// the libtorch that torch-sys found (torch-sys hands its lib folder to direct dependents as
/// DEP_TCH_LIBTORCH_LIB), and on x86-64 the kernel tables of `csrc/kernels/table_<isa>.cpp`,
/// each compiled with its own instruction set's flags and linked into the same archive
/// (`dispatch.cpp` picks one at run time).
fn compile_ops() {
    for f in CSRC {
        println!("cargo:rerun-if-changed=csrc/{f}");
    }
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .expect("torch-sys reports the libtorch lib folder");
    let root = lib.parent().unwrap_or(Path::new("/"));
    let include = root.join("include");
    let mut ops = cc_build();
    ops.include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is OpenMP in libtorch's build (ATen/Config.h): without this flag its
        // `#pragma omp parallel` is ignored and the kernels run on one thread.
        .flag("-fopenmp")
        .file("csrc/dispatch.cpp")
        .file("csrc/pool_op.cpp")
        .file("csrc/conv_op.cpp")
        .file("csrc/glue.cpp")
        .file("csrc/winograd.cpp");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        let isas: [(&str, &[&str]); 2] = [
            ("avx2", &["-mavx2", "-mfma"]),
            (
                "avx512",
                &["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl"],
            ),
        ];
        for (isa, flags) in isas {
            let mut b = cc_build();
            for f in flags {
                b.flag(f);
            }
            for obj in b
                .file(format!("csrc/kernels/table_{isa}.cpp"))
                .compile_intermediates()
            {
                ops.object(obj);
            }
        }
    }
    ops.compile("dlgrid_ops");
}

/// The settings every C++ file shares.
fn cc_build() -> cc::Build {
    let mut b = cc::Build::new();
    b.cpp(true)
        .pic(true)
        .warnings(false)
        // The kernels are meant to be fast even in debug builds (tests train real epochs).
        .opt_level(3)
        .flag("-std=c++17")
        // Lets GCC keep the kernels' arrays of accumulator vectors (up to 25 x 64 bytes) in
        // registers instead of storing them to the stack on every iteration.
        .flag_if_supported("--param=sra-max-scalarization-size-Ospeed=2048");
    b
}

/// The C++ ABI libtorch was built with, asked the same way torch-sys asks.
fn cxx11_abi() -> String {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
        if let Ok(out) = Command::new(python)
            .args([
                "-c",
                "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))",
            ])
            .output()
        {
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if v == "0" || v == "1" {
                return v;
            }
        }
    }
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
}

fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    std::env::var_os("LIBTORCH_USE_PYTORCH")?;
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn torch_version() -> Option<String> {
    if let Some(root) = std::env::var_os("LIBTORCH") {
        let v = std::fs::read_to_string(PathBuf::from(root).join("build-version")).ok()?;
        return Some(v.trim().to_string());
    }
    let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .ok()?;
    let v = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!v.is_empty()).then_some(v)
}
