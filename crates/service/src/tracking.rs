//! Event tracking: events for a tracker's dataset group are written durably,
//! then folded into the user's real-time state, then acknowledged.

use crate::Service;
use crate::error::{ErrorKind, Result, ServiceError};
use crate::realtime::RecentEvent;
use chrono::NaiveDate;
use rand::RngExt;
use travelrec_store::{InteractionRow, TrackedEvent};

/// One event to track for a user.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub item_id: String,
    pub event_type: String,
    /// Unix seconds.
    pub timestamp: i64,
    pub event_value: Option<f32>,
    pub session_id: Option<String>,
    /// Context and other fields, by name.
    pub fields: Vec<(String, String)>,
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

/// Most interactions one `/data` record may expand into.
pub const MAX_INTERACTIONS_PER_RECORD: i64 = 1_000;

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

impl Service {
    /// Durably records `events` for `user_id` through the tracker with
    /// `tracking_id`, then makes them count for the user's next
    /// recommendations. Returns their sequence numbers.
    pub async fn track_events(&self, tracking_id: &str, user_id: &str, events: Vec<NewEvent>) -> Result<Vec<u64>> {
        let Some((_, group_arn)) = self.inner.trackers.get(tracking_id).map(|t| t.clone()) else {
            return Err(ServiceError::new(
                ErrorKind::NotFound,
                format!(
                    "trackingId `{tracking_id}` does not belong to an ACTIVE event tracker; create one with POST /eventTracker and use its trackingId"
                ),
            ));
        };
        check_id("userId", user_id)?;
        for (i, e) in events.iter().enumerate() {
            check_id(&format!("event {i}: itemId"), &e.item_id)?;
            check_id(&format!("event {i}: eventType"), &e.event_type)?;
            if e.timestamp < 0 {
                return Err(ServiceError::invalid(format!("event {i}: the time {} is before 1970", e.timestamp)));
            }
        }
        let received_at = chrono::Utc::now().timestamp();
        let rows: Vec<TrackedEvent> = events
            .iter()
            .map(|e| TrackedEvent {
                interaction: InteractionRow {
                    user_id: user_id.to_string(),
                    item_id: e.item_id.clone(),
                    timestamp: e.timestamp,
                    event_type: e.event_type.clone(),
                    event_value: e.event_value,
                    session_id: e.session_id.clone(),
                    fields: e.fields.clone(),
                },
                received_at,
            })
            .collect();
        let sequences = self.store_dyn().append_events(&group_arn, rows).await?;
        let recent = events.into_iter().zip(&sequences).map(|(e, &sequence)| RecentEvent {
            sequence,
            item_id: e.item_id.into(),
            event_type: e.event_type.into(),
            timestamp: e.timestamp,
            value: e.event_value,
            received_at,
        });
        self.inner.realtime.group(&group_arn).record(user_id, recent);
        Ok(sequences)
    }

    /// The original API's `/data`: one stream record expanding into
    /// `interactions` events of `eventType` for the user and item, at times
    /// drawn uniformly (in milliseconds) from `[dateFrom, dateTo)`, both UTC midnight.
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
                event_value: None,
                session_id: None,
                fields: Vec::new(),
            })
            .collect();
        let sequences = self.track_events(&record.tracking_id, &record.user_id, events).await?;
        Ok(PutDataResult {
            sequence_number: sequences.last().copied().unwrap_or_default().to_string(),
            shard_id: "shardId-000000000000".to_string(),
            events: sequences.len(),
        })
    }
}
