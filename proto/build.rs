fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc, so a fresh machine needs no system package to build.
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    println!("cargo:rerun-if-changed=orchestrator/v1/orchestrator.proto");
    tonic_prost_build::configure()
        .compile_protos(&["orchestrator/v1/orchestrator.proto"], &["."])?;
    Ok(())
}
