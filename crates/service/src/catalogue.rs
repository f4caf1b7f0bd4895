//! What a dataset group knows besides interactions — items' fields, users'
//! fields, local events — kept in memory for serving (filters, context, new
//! items). Loaded from the store on first use, updated by PutItems,
//! PutUsers and PutLocalEvents as they arrive.

use crate::Service;
use crate::error::Result;
use chrono::NaiveDate;
use std::collections::HashMap;
use std::sync::Arc;
use travelrec_store::{DatasetType, RowBatch, RowCursor};

pub type Fields = Arc<Vec<(String, String)>>;

/// A local event as stored: at an item (by id) and/or a place, between two dates.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalEventRecord {
    pub id: String,
    pub item_id: Option<String>,
    pub location: Option<(f64, f64)>,
    /// Unix seconds: the start of the first day and the end of the last.
    pub start: i64,
    pub end: i64,
}

impl LocalEventRecord {
    /// From a row's fields; rows without valid dates are skipped (the importer refuses them).
    pub fn from_fields(id: &str, fields: &[(String, String)]) -> Option<Self> {
        let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let day = |name: &str| field(name).and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        let number = |name: &str| field(name).and_then(|v| v.parse::<f64>().ok());
        let (start, end) = (day("START_DATE")?, day("END_DATE")?);
        Some(Self {
            id: id.to_string(),
            item_id: field("ITEM_ID").map(str::to_string),
            location: number("LATITUDE").zip(number("LONGITUDE")),
            start: start.and_hms_opt(0, 0, 0)?.and_utc().timestamp(),
            end: end.and_hms_opt(23, 59, 59)?.and_utc().timestamp(),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub items: HashMap<String, Fields>,
    pub users: HashMap<String, Fields>,
    pub local_events: Vec<LocalEventRecord>,
}

impl Service {
    /// The group's catalogue, loading it from the store the first time.
    pub(crate) async fn catalogue(&self, group_arn: &str) -> Result<Arc<Catalogue>> {
        if let Some(catalogue) = self.inner.catalogues.get(group_arn) {
            return Ok(catalogue.clone());
        }
        let mut catalogue = Catalogue::default();
        for dataset_type in [DatasetType::Items, DatasetType::Users, DatasetType::LocalEvents] {
            let Some(dataset) = self.dataset_of(group_arn, dataset_type).await? else { continue };
            let mut cursor = RowCursor::default();
            while let Some((batch, next)) = self.store_dyn().read_rows(&dataset.dataset_arn, cursor).await? {
                add_rows(&mut catalogue, batch);
                cursor = next;
            }
        }
        let catalogue = Arc::new(catalogue);
        // A concurrent loader may have won; keep the first.
        Ok(self.inner.catalogues.entry(group_arn.to_string()).or_insert(catalogue).clone())
    }

    /// Adds rows that arrived by a Put* call (copy on write: readers keep their snapshot).
    pub(crate) async fn add_to_catalogue(&self, group_arn: &str, rows: RowBatch) -> Result<()> {
        let current = self.catalogue(group_arn).await?;
        let mut updated = (*current).clone();
        add_rows(&mut updated, rows);
        self.inner.catalogues.insert(group_arn.to_string(), Arc::new(updated));
        Ok(())
    }
}

fn add_rows(catalogue: &mut Catalogue, batch: RowBatch) {
    match batch {
        RowBatch::Items(rows) => rows.into_iter().for_each(|r| {
            catalogue.items.insert(r.item_id, Arc::new(r.fields));
        }),
        RowBatch::Users(rows) => rows.into_iter().for_each(|r| {
            catalogue.users.insert(r.user_id, Arc::new(r.fields));
        }),
        RowBatch::LocalEvents(rows) => {
            for row in rows {
                if let Some(event) = LocalEventRecord::from_fields(&row.local_event_id, &row.fields) {
                    catalogue.local_events.retain(|e| e.id != event.id);
                    catalogue.local_events.push(event);
                }
            }
        }
        RowBatch::Interactions(_) => {}
    }
}
