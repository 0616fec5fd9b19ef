fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc, so a fresh machine needs no system package to build.
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    println!("cargo:rerun-if-changed=orchestrator/v1/orchestrator.proto");
    // The descriptor set lets the coordinator answer gRPC reflection (grpcurl list/describe).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("orchestrator_descriptor.bin"))
        .compile_protos(&["orchestrator/v1/orchestrator.proto"], &["."])?;
    Ok(())
}
