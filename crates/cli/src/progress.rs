//! Running a job and watching it: progress bars on a terminal, a line of
//! outcome either way.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Duration;
use travelrec_service::Service;
use travelrec_store::{Campaign, DatasetImportJob, ImportMode, SolutionVersion};

fn bar(message: String) -> ProgressBar {
    let bar = ProgressBar::new(100);
    bar.set_style(ProgressStyle::with_template("{msg:40} [{bar:30}] {pos:>3}% {elapsed}").expect("valid template").progress_chars("=> "));
    bar.set_message(message);
    bar
}

pub async fn import_file(service: &Service, dataset_arn: &str, file: &Path, mode: ImportMode) -> Result<DatasetImportJob> {
    let path = std::fs::canonicalize(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let stem: String = file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    let slug: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let job_name = format!("{}-{}", slug.trim_matches('-'), chrono_like_stamp());
    let job = service.create_import_job(&job_name, dataset_arn, &path.to_string_lossy(), mode).await?;
    let bar = bar(format!("importing {}", crate::display_path(file)));
    let job = loop {
        let job: DatasetImportJob = service.describe(&job.dataset_import_job_arn).await?;
        bar.set_position(job.percent_complete as u64);
        if !job.lifecycle.status.is_creating() {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    match &job.lifecycle.failure_reason {
        Some(reason) => bail!("importing {} failed: {reason}", file.display()),
        None => {
            println!("imported {} rows from {}", job.rows_imported, crate::display_path(file));
            for warning in &job.warnings {
                println!("  note: {warning}");
            }
        }
    }
    Ok(job)
}

/// Unique enough for job names: seconds and nanoseconds since the epoch.
fn chrono_like_stamp() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}{:09}", now.as_secs(), now.subsec_nanos())
}

pub async fn train_version(service: &Service, solution_arn: &str, version: &str) -> Result<SolutionVersion> {
    let created = service.create_solution_version(solution_arn, version).await?;
    let bar = bar(format!("training {version}"));
    let trained = loop {
        let v: SolutionVersion = service.describe(&created.solution_version_arn).await?;
        bar.set_position(v.percent_complete as u64);
        if !v.lifecycle.status.is_creating() {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    if let Some(reason) = &trained.lifecycle.failure_reason {
        bail!("training {version} failed: {reason}");
    }
    let summary = trained.training_summary.clone().unwrap_or_default();
    println!(
        "trained {} on {} interactions of {} users and {} items in {:.1}s",
        trained.solution_version_arn,
        summary["interactions"],
        summary["users"],
        summary["items"],
        summary["training_seconds"].as_f64().unwrap_or_default()
    );
    Ok(trained)
}

pub async fn deploy(service: &Service, name: &str, solution_version_arn: &str) -> Result<Campaign> {
    let created = service.create_campaign(name, solution_version_arn).await?;
    loop {
        let c: Campaign = service.describe(&created.campaign_arn).await?;
        if !c.lifecycle.status.is_creating() {
            if let Some(reason) = &c.lifecycle.failure_reason {
                bail!("deploying campaign {name} failed: {reason}");
            }
            return Ok(c);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
