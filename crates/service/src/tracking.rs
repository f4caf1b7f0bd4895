//! Ingestion: events (PutEvents and the original `/data`), items (PutItems)
//! and users (PutUsers) are validated, appended to the durable event log
//! (acknowledged after fsync, group-committed), applied to the real-time
//! state at once, and written to the store, the archive and the analytics by
//! the log's consumers (see [`crate::consumers`]).

use crate::Service;
use crate::error::{ErrorKind, Result, ServiceError};
use crate::import::validate_fields;
use crate::realtime::RecentEvent;
use crate::schema::DatasetSchema;
use chrono::NaiveDate;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use travelrec_store::{
    Dataset, DatasetType, EventPosition, InteractionRow, ItemRow, LocalEventRow, RowBatch, Schema, TrackedEvent, UserRow,
};
use travelrec_stream::{EventLog, LogError};

/// One event to track for a user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewEvent {
    /// The caller's id for the event; a repeated id is stored once. Made up when absent.
    pub event_id: Option<String>,
    pub item_id: String,
    pub event_type: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub event_value: Option<f32>,
    pub session_id: Option<String>,
    /// Context and other fields (`properties`), by name; validated against the interactions schema.
    pub fields: Vec<(String, String)>,
    pub recommendation_id: Option<String>,
    pub impression: Vec<String>,
}

/// The `Data` of the original API's `/data` record, with the record's stream name.
#[derive(Debug, Clone, PartialEq)]
pub struct DataRecord {
    pub stream_name: String,
    pub partition_key: Option<String>,
    pub user_id: String,
    pub item_id: String,
    pub tracking_id: String,
    pub event_type: String,
    pub interactions: i64,
    pub date_from: String,
    pub date_to: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PutDataResult {
    pub sequence_number: String,
    pub shard_id: String,
    pub events: usize,
}

/// What tracking did with a batch of events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrackResult {
    /// Where the newly stored events sit in the log.
    pub positions: Vec<EventPosition>,
    /// Events skipped because their `eventId` was already stored.
    pub duplicates: usize,
}

/// What goes into the event log, one record per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum LogRecord {
    Events {
        dataset_group_arn: String,
        user_id: String,
        events: Vec<TrackedEvent>,
    },
    /// Items, users or local events for a dataset.
    Rows {
        dataset_group_arn: String,
        dataset_arn: String,
        rows: RowBatch,
    },
    /// What was left of a record after erasing a user from it: nothing
    /// (written over the record in place, the rest of it zeroes).
    Erased,
}

impl LogRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("serialising to a Vec cannot fail")
    }

    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<LogRecord, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }
}

/// Most interactions one `/data` record may expand into.
pub const MAX_INTERACTIONS_PER_RECORD: i64 = 1_000;
/// Most events, items or users in one PutEvents, PutItems or PutUsers call (as the managed service).
pub const MAX_PER_CALL: usize = 10;

fn check_id(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().count() > 256 {
        return Err(ServiceError::invalid(format!("{what} must be 1 to 256 characters, got {} characters", value.chars().count())));
    }
    Ok(())
}

fn parse_day(field: &str, value: &str) -> Result<i64> {
    let date = NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
        .map_err(|_| ServiceError::invalid(format!("{field} `{value}` is not a date; use YYYY-MM-DD, e.g. 2022-01-01")))?;
    Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis())
}

/// The log's refusal, as a 429 that says when to come back.
pub(crate) fn log_error(e: LogError) -> ServiceError {
    match e {
        LogError::Backpressure { retry_after, .. } => ServiceError::new(
            ErrorKind::LimitExceeded,
            "events are arriving faster than they can be written durably; retry after the delay in Retry-After",
        )
        .with_retry_after(retry_after),
        LogError::TooLarge { .. } => ServiceError::invalid(format!("the request is too large to log: {e}")),
        other => ServiceError::new(ErrorKind::Unavailable, format!("the event log refused the write: {other}")),
    }
}

impl Service {
    /// Durably records `events` for `user_id` through the tracker with
    /// `tracking_id`, and makes them count for the user's next
    /// recommendations before returning. All events are checked first:
    /// nothing is written when one is invalid. An event whose `eventId` the
    /// dataset group already has is skipped (stored once).
    pub async fn track_events(
        &self,
        tracking_id: &str,
        user_id: &str,
        partition_key: Option<&str>,
        events: Vec<NewEvent>,
    ) -> Result<TrackResult> {
        let Some((_, group_arn)) = self.inner.trackers.get(tracking_id).map(|t| t.clone()) else {
            return Err(ServiceError::not_found(format!(
                "trackingId `{tracking_id}` does not belong to an ACTIVE event tracker (it may have been deleted); create one with POST /eventTracker and use its trackingId"
            )));
        };
        check_id("userId", user_id)?;
        let schema = self.schema_of(&group_arn, DatasetType::Interactions).await?;
        let received_at = chrono::Utc::now().timestamp();
        let mut tracked = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            check_id(&format!("eventList[{i}].itemId"), &e.item_id)?;
            check_id(&format!("eventList[{i}].eventType"), &e.event_type)?;
            if let Some(id) = &e.event_id {
                check_id(&format!("eventList[{i}].eventId"), id)?;
            }
            if e.timestamp < 0 {
                return Err(ServiceError::invalid(format!("eventList[{i}].sentAt: {} is before 1970", e.timestamp)));
            }
            if e.event_value.is_some_and(|v| !v.is_finite()) {
                return Err(ServiceError::invalid(format!("eventList[{i}].eventValue must be a finite number")));
            }
            let fields = match &schema {
                Some(schema) => validate_fields(
                    schema,
                    &e.fields,
                    &["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE", "SESSION_ID"],
                    &format!("eventList[{i}].properties"),
                )
                .map_err(ServiceError::invalid)?,
                None => e.fields.clone(),
            };
            tracked.push(TrackedEvent {
                interaction: InteractionRow {
                    user_id: user_id.to_string(),
                    item_id: e.item_id,
                    timestamp: e.timestamp,
                    event_type: e.event_type,
                    event_value: e.event_value,
                    session_id: e.session_id,
                    fields,
                },
                received_at,
                event_id: e.event_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                recommendation_id: e.recommendation_id,
                impression: e.impression,
            });
        }

        // Idempotency: ids that are logged and on their way to the store are
        // reserved in memory, ids the store has are skipped. Reserving first
        // and asking the store second closes the window where the store
        // writer stores an id and drops its reservation between the two looks.
        let mut reserved = Vec::with_capacity(tracked.len());
        let mut duplicates = 0;
        for event in tracked {
            if self.inner.pending_event_ids.insert(pending_key(&group_arn, &event.event_id), ()).is_some() {
                duplicates += 1;
            } else {
                reserved.push(event);
            }
        }
        let release = |events: &[TrackedEvent]| {
            for event in events {
                self.inner.pending_event_ids.remove(&pending_key(&group_arn, &event.event_id));
            }
        };
        let stored = match self.store_dyn().known_event_ids(&group_arn, reserved.iter().map(|e| e.event_id.clone()).collect()).await {
            Ok(stored) => stored,
            Err(e) => {
                release(&reserved);
                return Err(e.into());
            }
        };
        let (already, fresh): (Vec<_>, Vec<_>) = reserved.into_iter().partition(|e| stored.contains(&e.event_id));
        duplicates += already.len();
        release(&already);
        if fresh.is_empty() {
            return Ok(TrackResult { positions: Vec::new(), duplicates });
        }
        let record = LogRecord::Events { dataset_group_arn: group_arn.clone(), user_id: user_id.to_string(), events: fresh.clone() };
        let key = partition_key.unwrap_or(user_id);
        let id = match self.log().append(key.as_bytes(), record.encode()).await {
            Ok(id) => id,
            Err(e) => {
                release(&fresh);
                return Err(log_error(e));
            }
        };
        let positions: Vec<EventPosition> =
            (0..fresh.len()).map(|index| EventPosition { partition: id.partition, sequence: id.sequence, index: index as u32 }).collect();
        self.apply_events(&group_arn, user_id, &positions, &fresh);
        Ok(TrackResult { positions, duplicates })
    }

    /// Makes logged events count in the user's real-time state.
    pub(crate) fn apply_events(&self, group_arn: &str, user_id: &str, positions: &[EventPosition], events: &[TrackedEvent]) {
        let recent = events.iter().zip(positions).map(|(e, &position)| RecentEvent {
            position,
            item_id: e.interaction.item_id.as_str().into(),
            event_type: e.interaction.event_type.as_str().into(),
            timestamp: e.interaction.timestamp,
            value: e.interaction.event_value,
            location: crate::realtime::event_location(&e.interaction.fields),
            received_at: e.received_at,
        });
        self.inner.realtime.group(group_arn).record(user_id, recent);
    }

    /// The original API's `/data`: one stream record expanding into
    /// `interactions` events of `eventType` for the user and item, at times
    /// drawn uniformly (in milliseconds) from `[dateFrom, dateTo)`, both UTC
    /// midnight, logged under the record's PartitionKey.
    pub async fn put_data(&self, record: DataRecord) -> Result<PutDataResult> {
        let stream = &self.config().names.stream;
        if record.stream_name != *stream {
            return Err(ServiceError::not_found(format!(
                "stream `{}` does not exist; this server's stream is `{stream}`",
                record.stream_name
            )));
        }
        if !(1..=MAX_INTERACTIONS_PER_RECORD).contains(&record.interactions) {
            return Err(ServiceError::invalid(format!(
                "interactions must be between 1 and {MAX_INTERACTIONS_PER_RECORD}, got {}",
                record.interactions
            )));
        }
        let from = parse_day("dateFrom", &record.date_from)?;
        let to = parse_day("dateTo", &record.date_to)?;
        if from > to {
            return Err(ServiceError::invalid(format!("dateFrom {} is after dateTo {}", record.date_from, record.date_to)));
        }
        let mut times: Vec<i64> = {
            let mut rng = rand::rng();
            (0..record.interactions).map(|_| if from == to { from } else { rng.random_range(from..to) } / 1000).collect()
        };
        times.sort_unstable();
        let events = times
            .into_iter()
            .map(|timestamp| NewEvent {
                item_id: record.item_id.clone(),
                event_type: record.event_type.clone(),
                timestamp,
                ..NewEvent::default()
            })
            .collect();
        let result = self.track_events(&record.tracking_id, &record.user_id, record.partition_key.as_deref(), events).await?;
        let last = result.positions.last().copied().unwrap_or_default();
        Ok(PutDataResult {
            sequence_number: sequence_number(last),
            shard_id: EventLog::shard_id(last.partition),
            events: result.positions.len(),
        })
    }

    /// PutItems: new or changed items of an ITEMS dataset, validated against
    /// its schema. A new item is recommendable (explored by content) at
    /// once, before any retraining.
    pub async fn put_items(&self, dataset_arn: &str, items: Vec<(String, Vec<(String, String)>)>) -> Result<()> {
        self.put_rows(dataset_arn, DatasetType::Items, items).await
    }

    /// PutUsers: new or changed users of a USERS dataset, validated against its schema.
    pub async fn put_users(&self, dataset_arn: &str, users: Vec<(String, Vec<(String, String)>)>) -> Result<()> {
        self.put_rows(dataset_arn, DatasetType::Users, users).await
    }

    /// New or changed local events of a LOCAL_EVENTS dataset (festivals,
    /// markets…): they count in recommendations for their dates at once.
    pub async fn put_local_events(&self, dataset_arn: &str, events: Vec<(String, Vec<(String, String)>)>) -> Result<()> {
        self.put_rows(dataset_arn, DatasetType::LocalEvents, events).await
    }

    async fn put_rows(&self, dataset_arn: &str, dataset_type: DatasetType, entries: Vec<(String, Vec<(String, String)>)>) -> Result<()> {
        let (dataset, schema) = self.dataset_for_put(dataset_arn, dataset_type, entries.len()).await?;
        let (list, id_field, id_name) = match dataset_type {
            DatasetType::Items => ("items", "ITEM_ID", "itemId"),
            DatasetType::Users => ("users", "USER_ID", "userId"),
            DatasetType::LocalEvents => ("localEvents", "LOCAL_EVENT_ID", "localEventId"),
            DatasetType::Interactions => return Err(ServiceError::invalid("interactions arrive through PutEvents (POST /events)")),
        };
        let mut checked = Vec::with_capacity(entries.len());
        for (i, (id, fields)) in entries.into_iter().enumerate() {
            check_id(&format!("{list}[{i}].{id_name}"), &id)?;
            let fields =
                validate_fields(&schema, &fields, &[id_field], &format!("{list}[{i}].properties")).map_err(ServiceError::invalid)?;
            checked.push((id, fields));
        }
        let key = checked[0].0.clone();
        let rows = match dataset_type {
            DatasetType::Items => RowBatch::Items(checked.into_iter().map(|(item_id, fields)| ItemRow { item_id, fields }).collect()),
            DatasetType::Users => RowBatch::Users(checked.into_iter().map(|(user_id, fields)| UserRow { user_id, fields }).collect()),
            _ => RowBatch::LocalEvents(
                checked.into_iter().map(|(local_event_id, fields)| LocalEventRow { local_event_id, fields }).collect(),
            ),
        };
        let record =
            LogRecord::Rows { dataset_group_arn: dataset.dataset_group_arn.clone(), dataset_arn: dataset.dataset_arn, rows: rows.clone() };
        self.log().append(key.as_bytes(), record.encode()).await.map_err(log_error)?;
        self.add_to_catalogue(&dataset.dataset_group_arn, rows).await
    }

    async fn dataset_for_put(&self, dataset_arn: &str, expected: DatasetType, count: usize) -> Result<(Dataset, DatasetSchema)> {
        let dataset: Dataset = self.describe(dataset_arn).await?;
        if dataset.dataset_type != expected {
            return Err(ServiceError::invalid(format!(
                "dataset {dataset_arn} is an {} dataset, not {}",
                dataset.dataset_type.as_str(),
                expected.as_str()
            )));
        }
        if count == 0 || count > MAX_PER_CALL {
            return Err(ServiceError::invalid(format!(
                "send 1 to {MAX_PER_CALL} {} per call, got {count}",
                expected.as_str().to_lowercase()
            )));
        }
        let schema: Schema = self.describe(&dataset.schema_arn).await?;
        Ok((dataset, DatasetSchema::parse(&schema.schema)?))
    }

    /// The schema of a dataset group's dataset of one type, if it has one.
    /// Cached: a dataset's schema cannot change (deleting a dataset clears the cache).
    async fn schema_of(&self, group_arn: &str, dataset_type: DatasetType) -> Result<Option<std::sync::Arc<DatasetSchema>>> {
        let key = (group_arn.to_string(), dataset_type);
        if let Some(schema) = self.inner.schemas.get(&key) {
            return Ok(Some(schema.clone()));
        }
        match self.dataset_of(group_arn, dataset_type).await? {
            Some(dataset) => {
                let schema: Schema = self.describe(&dataset.schema_arn).await?;
                let schema = std::sync::Arc::new(DatasetSchema::parse(&schema.schema)?);
                self.inner.schemas.insert(key, schema.clone());
                Ok(Some(schema))
            }
            None => Ok(None),
        }
    }
}

impl Service {
    /// The events the store holds for a user of a dataset group, in log order
    /// (what training sees; the store writer may trail the log by moments).
    pub async fn stored_events(&self, dataset_group_arn: &str, user_id: &str) -> Result<Vec<(EventPosition, TrackedEvent)>> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store_dyn().read_events(dataset_group_arn, cursor, 10_000).await?;
            let Some((last, _)) = page.last() else { return Ok(out) };
            cursor = Some(*last);
            out.extend(page.into_iter().filter(|(_, e)| e.interaction.user_id == user_id));
        }
    }

    /// The user's events in the real-time state (what getRecommendations folds in, among others).
    pub fn realtime_events(&self, dataset_group_arn: &str, user_id: &str) -> Vec<RecentEvent> {
        self.inner.realtime.group(dataset_group_arn).recent(user_id, &crate::realtime::Cutoff::new())
    }
}

pub(crate) fn pending_key(group_arn: &str, event_id: &str) -> String {
    format!("{group_arn}\u{1f}{event_id}")
}

/// A Kinesis-style sequence number: the record's sequence, its partition and
/// the event's index, as digits that sort like the positions.
pub fn sequence_number(position: EventPosition) -> String {
    format!("{:020}{:04}{:06}", position.sequence, position.partition, position.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_log_asks_clients_to_retry_later() {
        let e =
            log_error(LogError::Backpressure { retry_after: std::time::Duration::from_millis(300), pending_bytes: 10, limit_bytes: 10 });
        assert_eq!(e.kind, ErrorKind::LimitExceeded);
        assert_eq!(e.retry_after, Some(std::time::Duration::from_millis(300)));
    }

    #[test]
    fn sequence_numbers_sort_like_positions() {
        let a = sequence_number(EventPosition { partition: 3, sequence: 9, index: 2 });
        let b = sequence_number(EventPosition { partition: 0, sequence: 10, index: 0 });
        assert_eq!(a, "000000000000000000090003000002");
        assert!(a < b);
    }
}
