//! Writes every output file of `--out` from [`Results`].

use std::path::Path;

use anyhow::Context;
use report::dawnbench::dawnbench_files;
use report::Results;

/// Writes `path` atomically (temp file + rename), so readers never see half a file.
fn write_atomic(path: &Path, content: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// `results.json`, `results.csv`, `report.md`, `report.html` and `dawnbench/<job id>/` in `out`.
pub fn write_all(results: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    write_atomic(&out.join("results.json"), &results.to_json())?;
    write_atomic(&out.join("results.csv"), &results.to_csv())?;
    write_atomic(&out.join("report.md"), &results.to_markdown())?;
    write_atomic(&out.join("report.html"), &results.to_html())?;
    for job in &results.jobs {
        if !job.status.is_terminal() {
            continue;
        }
        let dir = out.join("dawnbench").join(job.id.as_str());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, content) in dawnbench_files(job, &results.grid, &results.environment) {
            write_atomic(&dir.join(name), &content)?;
        }
    }
    Ok(())
}
