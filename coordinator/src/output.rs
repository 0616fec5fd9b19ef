//! Writes every output file of `--out` from [`Results`]: the report (`results.json`,
//! `results.csv`, `report.md`, `report.html`) and each finished job in the formats other tools
//! read (`dawnbench/<job id>/`, `mllog/<job id>.log`, `tensorboard/<job id>/`).

use std::path::Path;

use anyhow::Context;
use common::JobStatus;
use report::dawnbench::dawnbench_files;
use report::Results;

/// Writes `path` atomically (temp file + rename), so readers never see half a file.
fn write_atomic(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Every file in `out`.
pub fn write_all(results: &Results, out: &Path) -> anyhow::Result<()> {
    create_dir(out)?;
    write_atomic(&out.join("results.json"), results.to_json().as_bytes())?;
    write_atomic(&out.join("results.csv"), results.to_csv().as_bytes())?;
    write_atomic(&out.join("report.md"), results.to_markdown().as_bytes())?;
    write_atomic(&out.join("report.html"), results.to_html().as_bytes())?;
    let env = &results.environment;
    for job in results.jobs.iter().filter(|j| j.status.is_terminal()) {
        // A DAWNBench entry is a run that trained to the end; an earlier render's entry of a
        // job that has since run again and failed goes.
        let dir = out.join("dawnbench").join(job.id.as_str());
        if job.status == JobStatus::Succeeded {
            create_dir(&dir)?;
            for (name, content) in dawnbench_files(job, &results.grid, env) {
                write_atomic(&dir.join(name), content.as_bytes())?;
            }
        } else if dir.is_dir() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        if let Some(log) = report::mllog::mllog(job, &results.grid, env) {
            create_dir(&out.join("mllog"))?;
            write_atomic(
                &out.join("mllog").join(format!("{}.log", job.id)),
                log.as_bytes(),
            )?;
        }
        let dir = out.join("tensorboard").join(job.id.as_str());
        create_dir(&dir)?;
        let (name, events) = report::tensorboard::event_file(job);
        write_atomic(&dir.join(&name), &events)?;
        // A job run again starts a new file; the old run's would show beside it.
        for old in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let old = old?.file_name();
            if old != name.as_str() && old.to_string_lossy().starts_with("events.out.tfevents.") {
                let _ = std::fs::remove_file(dir.join(old));
            }
        }
    }
    Ok(())
}
