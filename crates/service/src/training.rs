//! The background jobs that move data: CSV imports and training runs.

use crate::Service;
use crate::error::{Result, ServiceError};
use crate::import::{ReadProgress, read_csv};
use crate::schema::DatasetSchema;
use std::path::{Path, PathBuf};
use std::time::Instant;
use travelrec_engine::split::Holdout;
use travelrec_engine::tuning::offline_metrics;
use travelrec_engine::{Hyperparameters, ItemMeta, Recipe, TrainingData, TrainingDataBuilder, train};
use travelrec_store::{
    Dataset, DatasetImportJob, DatasetType, RowBatch, RowCursor, Schema, Solution, SolutionVersion, Status, TunedHpoParams,
};

/// A data location as a local path: a plain path or a `file://` URL.
pub(crate) fn local_path(location: &str) -> Result<PathBuf> {
    if let Some(path) = location.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if let Some((scheme, _)) = location.split_once("://") {
        return Err(ServiceError::invalid(format!(
            "data location `{location}` uses {scheme}://, which travelrec cannot read; copy the file to the server and give its path"
        )));
    }
    Ok(PathBuf::from(location))
}

/// What the engine uses of an item's fields: GENRE (multi-valued with `|`),
/// CITY, LATITUDE/LONGITUDE, SEASONS (months `6|7|8`) and CREATION_TIMESTAMP.
pub(crate) fn item_meta(fields: &[(String, String)]) -> ItemMeta {
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let number = |name: &str| field(name).and_then(|v| v.parse::<f64>().ok());
    ItemMeta {
        location: number("LATITUDE").zip(number("LONGITUDE")),
        categories: field("GENRE").map(|g| g.split('|').map(str::to_string).collect()).unwrap_or_default(),
        city: field("CITY").map(str::to_string),
        season_months: field("SEASONS")
            .map(|s| {
                s.split('|')
                    .filter_map(|m| m.trim().parse::<u32>().ok())
                    .filter(|m| (1..=12).contains(m))
                    .fold(0u16, |bits, m| bits | 1 << (m - 1))
            })
            .unwrap_or(0),
        created: field("CREATION_TIMESTAMP").and_then(|v| v.parse().ok()),
    }
}

/// An event archive: a folder of `.jsonl.zst` files, or one such file.
pub(crate) fn is_archive(path: &Path) -> bool {
    path.is_dir() || path.to_string_lossy().ends_with(".jsonl.zst")
}

/// Reads archived events back as interactions, in batches.
fn read_archive(path: &Path, mut on_batch: impl FnMut(RowBatch, ReadProgress) -> bool) -> Result<crate::import::ImportSummary, String> {
    let files = crate::archive::archive_files(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if files.is_empty() {
        return Err(format!("{} holds no archive files (*.jsonl.zst)", path.display()));
    }
    let mut rows = Vec::new();
    let mut total = 0u64;
    for (index, file) in files.iter().enumerate() {
        crate::archive::read_file(file, |event| rows.push(event.interaction()))?;
        if rows.len() >= crate::import::BATCH_ROWS || index + 1 == files.len() {
            total += rows.len() as u64;
            let progress = ReadProgress { bytes_read: index as u64 + 1, total_bytes: files.len() as u64, rows: total };
            if !on_batch(RowBatch::Interactions(std::mem::take(&mut rows)), progress) {
                return Err("the import was cancelled".into());
            }
        }
    }
    Ok(crate::import::ImportSummary { rows: total, warnings: Vec::new() })
}

/// An event's LOCATION in the engine's precision.
fn located(fields: &[(String, String)]) -> Option<(f32, f32)> {
    crate::realtime::event_location(fields).map(|(a, b)| (a as f32, b as f32))
}

/// What a training run produced besides the model snapshot.
struct Trained {
    summary: serde_json::Value,
    metrics: std::collections::BTreeMap<String, f64>,
    tuned: std::collections::BTreeMap<String, String>,
    events_through: crate::realtime::Cutoff,
}

/// The hyperparameters a model ended up with (after search) and its blend
/// weights, as strings.
fn tuned_parameters(model: &travelrec_engine::Model) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(report) = &model.tuning {
        out.extend(report.trials[report.chosen].settings.clone());
        out.insert("validation_ndcg_at_10".into(), format!("{:.4}", report.trials[report.chosen].ndcg_at_10));
    }
    let blends = std::iter::once(("blend", &model.blend)).chain(model.moved_on_blend.as_ref().map(|moved_on| ("moved_on_blend", moved_on)));
    for (prefix, blend) in blends {
        for (name, weight) in travelrec_engine::FEATURE_NAMES.iter().zip(blend.weights) {
            out.insert(format!("{prefix}.{name}"), weight.to_string());
        }
    }
    out
}

/// Tracked events are read back for training in pages of this size.
const EVENT_PAGE: usize = 10_000;

impl Service {
    pub(crate) async fn run_import(&self, mut job: DatasetImportJob, dataset: Dataset, path: PathBuf) {
        let arn = job.dataset_import_job_arn.clone();
        job.lifecycle.set(Status::CreateInProgress);
        if let Err(e) = self.store_dyn().put(job.clone()).await {
            tracing::error!("import job could not start: {e}");
            return;
        }
        let started = Instant::now();
        match self.import_file(&job, &dataset, &path).await {
            Ok(summary) => {
                job.rows_imported = summary.rows;
                job.warnings = summary.warnings;
                job.percent_complete = 100.0;
                job.lifecycle.set(Status::Active);
                tracing::info!(rows = summary.rows, seconds = started.elapsed().as_secs_f64(), dataset = %dataset.dataset_type.as_str(), "import finished");
            }
            Err(reason) => {
                tracing::warn!(dataset = %dataset.dataset_type.as_str(), "import failed: {reason}");
                job.lifecycle.fail(reason);
            }
        }
        self.inner.progress.remove(&arn);
        if let Err(e) = self.store_dyn().put(job).await {
            tracing::error!("recording the import job's outcome failed: {e}");
        }
    }

    async fn import_file(&self, job: &DatasetImportJob, dataset: &Dataset, path: &Path) -> Result<crate::import::ImportSummary, String> {
        let schema: Schema = self.describe(&dataset.schema_arn).await.map_err(|e| e.to_string())?;
        let schema = DatasetSchema::parse(&schema.schema).map_err(|e| e.to_string())?;
        let mut import = self.store_dyn().begin_import(&dataset.dataset_arn, job.import_mode).await.map_err(|e| e.to_string())?;

        // The parser runs on a blocking thread and hands batches over a small
        // bounded channel, so memory stays flat whatever the file size.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<(RowBatch, ReadProgress)>(2);
        let label = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| path.display().to_string());
        let (path, dataset_type) = (path.to_path_buf(), dataset.dataset_type);
        let parser = tokio::task::spawn_blocking(move || {
            if is_archive(&path) {
                read_archive(&path, |batch, progress| sender.blocking_send((batch, progress)).is_ok())
            } else {
                read_csv(&path, &label, &schema, dataset_type, |batch, progress| sender.blocking_send((batch, progress)).is_ok())
            }
        });
        let arn = job.dataset_import_job_arn.clone();
        let mut write_error = None;
        while let Some((batch, progress)) = receiver.recv().await {
            if let Err(e) = import.write(batch).await {
                write_error = Some(format!("writing rows failed: {e}"));
                break;
            }
            if progress.total_bytes > 0 {
                self.inner.progress.insert(arn.clone(), 100.0 * progress.bytes_read as f32 / progress.total_bytes as f32);
            }
        }
        drop(receiver);
        let parsed = parser.await.map_err(|e| format!("the CSV reader crashed: {e}"))?;
        match (parsed, write_error) {
            (Ok(summary), None) => {
                let rows = import.commit().await.map_err(|e| format!("committing the import failed: {e}"))?;
                debug_assert_eq!(rows, summary.rows);
                Ok(summary)
            }
            (Err(reason), _) | (Ok(_), Some(reason)) => {
                if let Err(e) = import.abort().await {
                    tracing::warn!("discarding a failed import's rows failed (they are removed at the next start): {e}");
                }
                Err(reason)
            }
        }
    }

    pub(crate) async fn run_training(&self, mut version: SolutionVersion, solution: Solution) {
        let arn = version.solution_version_arn.clone();
        let _slot = self.inner.training_slot.acquire().await.expect("the training semaphore is never closed");
        version.lifecycle.set(Status::CreateInProgress);
        if let Err(e) = self.store_dyn().put(version.clone()).await {
            tracing::error!("training could not start: {e}");
            return;
        }
        let started = Instant::now();
        match self.train_version(&version, &solution).await {
            Ok(trained) => {
                version.training_summary = Some(trained.summary);
                version.metrics = Some(trained.metrics);
                version.tuned_hpo_params = Some(TunedHpoParams { algorithm_hyper_parameters: trained.tuned });
                version.events_through = trained.events_through;
                version.training_hours = Some(started.elapsed().as_secs_f64() / 3600.0);
                version.percent_complete = 100.0;
                version.lifecycle.set(Status::Active);
                tracing::info!(seconds = started.elapsed().as_secs_f64(), "training finished");
            }
            Err(e) => {
                tracing::warn!("training failed: {e}");
                version.lifecycle.fail(e.message);
            }
        }
        self.inner.progress.remove(&arn);
        if let Err(e) = self.store_dyn().put(version).await {
            tracing::error!("recording the training outcome failed: {e}");
        }
    }

    async fn train_version(&self, version: &SolutionVersion, solution: &Solution) -> Result<Trained> {
        let recipe = Recipe::parse(&solution.recipe_arn).map_err(|e| ServiceError::invalid(e.to_string()))?;
        let hyperparameters = Hyperparameters::from_map(&solution.solution_config.algorithm_hyper_parameters)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let (data, events_through) = self.load_training_data(&solution.dataset_group_arn).await?;
        let progress_map = self.inner.clone();
        let arn = version.solution_version_arn.clone();
        let (model, metrics) = tokio::task::spawn_blocking(move || {
            let report = |share: f32, offset: f32| {
                let progress_map = progress_map.clone();
                let arn = arn.clone();
                move |fraction: f32, _stage: &str| {
                    progress_map.progress.insert(arn.clone(), offset + share * fraction);
                }
            };
            let model = train(&data, recipe, &hyperparameters, &report(60.0, 10.0))?;
            // As the managed service does: hold out the newest interactions,
            // train on the rest, measure.
            let metrics = offline_metrics(&data, recipe, &hyperparameters, Holdout::NewestFraction { fraction: 0.1 }, &report(25.0, 70.0))?;
            Ok::<_, travelrec_engine::RecipeError>((model, metrics))
        })
        .await
        .map_err(|e| ServiceError::internal(format!("training crashed: {e}")))?
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let summary = serde_json::to_value(&model.summary).map_err(|e| ServiceError::internal(e.to_string()))?;
        let tuned = tuned_parameters(&model);
        let bytes = tokio::task::spawn_blocking(move || model.to_bytes()).await.map_err(|e| ServiceError::internal(e.to_string()))?;
        self.store_dyn().put_model(&version.solution_version_arn, bytes).await?;
        Ok(Trained { summary, metrics: metrics.values, tuned, events_through })
    }

    /// Everything a dataset group knows, as training data: the items catalogue,
    /// imported interactions and tracked events. Returns the newest tracked
    /// event's sequence number as well.
    pub(crate) async fn load_training_data(&self, dataset_group_arn: &str) -> Result<(TrainingData, crate::realtime::Cutoff)> {
        let mut builder = TrainingDataBuilder::new();
        if let Some(items) = self.dataset_of(dataset_group_arn, DatasetType::Items).await? {
            let mut cursor = RowCursor::default();
            while let Some((batch, next)) = self.store_dyn().read_rows(&items.dataset_arn, cursor).await? {
                if let RowBatch::Items(rows) = batch {
                    rows.iter().for_each(|r| builder.add_item_with_meta(&r.item_id, item_meta(&r.fields)));
                }
                cursor = next;
            }
        }
        if let Some(interactions) = self.dataset_of(dataset_group_arn, DatasetType::Interactions).await? {
            let mut cursor = RowCursor::default();
            while let Some((batch, next)) = self.store_dyn().read_rows(&interactions.dataset_arn, cursor).await? {
                if let RowBatch::Interactions(rows) = batch {
                    for r in &rows {
                        builder.add_located_interaction(
                            &r.user_id,
                            &r.item_id,
                            r.timestamp,
                            &r.event_type,
                            r.event_value,
                            located(&r.fields),
                        );
                    }
                }
                cursor = next;
                tokio::task::yield_now().await;
            }
        }
        for event in &self.catalogue(dataset_group_arn).await?.local_events {
            builder.add_local_event(event.item_id.as_deref(), event.location, event.start, event.end);
        }
        // Events reach the store through the log's store writer; whatever it
        // has not written yet is newer than this cutoff and folded in at query time.
        let mut events_through = crate::realtime::Cutoff::new();
        let mut cursor = None;
        loop {
            let page = self.store_dyn().read_events(dataset_group_arn, cursor, EVENT_PAGE).await?;
            let Some((last, _)) = page.last() else { break };
            cursor = Some(*last);
            for (position, tracked) in &page {
                let through = events_through.entry(position.partition).or_insert(0);
                *through = (*through).max(position.sequence);
                let r = &tracked.interaction;
                builder.add_located_interaction(&r.user_id, &r.item_id, r.timestamp, &r.event_type, r.event_value, located(&r.fields));
            }
        }
        Ok((builder.build(), events_through))
    }
}
