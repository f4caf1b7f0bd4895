//! What recommendations did, for the dashboard: each campaign's requests and
//! their latency, the lists it served, and the tracked events that came of
//! them.
//!
//! An event is *attributed* to a campaign when its `recommendationId` names a
//! list this process served and its item was on that list. The newest
//! lists are remembered (at most [`SERVED_KEPT`] lists and [`ITEMS_KEPT`]
//! items), as hashes of their id and items (never user ids), so attribution
//! covers what was served since the process started; events naming older
//! lists still count in their dataset group's `attributed`, without a campaign.

use crate::consumers::{count_minute, last_minutes};
use dashmap::DashMap;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Duration;
use travelrec_store::TrackedEvent;

/// Served lists remembered for attribution.
pub const SERVED_KEPT: usize = 50_000;
/// Item hashes remembered over all lists (8 bytes each): long lists make
/// fewer lists remembered.
pub const ITEMS_KEPT: usize = 1_250_000;
/// List positions counted apart; clicks further down share one last count.
pub const RANKS: usize = 25;
/// Minutes of per-minute counts kept.
const MINUTES_KEPT: i64 = 60;

#[derive(Default)]
pub(crate) struct Feedback {
    campaigns: DashMap<String, Mutex<CampaignFeedback>>,
    served: Mutex<ServedLog>,
}

/// One served list: its campaign and the hashes of its items, in order.
struct Served {
    campaign_arn: Arc<str>,
    items: Box<[u64]>,
    /// An attributed event already counted this list as converted.
    converted: bool,
}

/// Served lists by the hash of their recommendation id (64 bits: a
/// collision among 50,000 ids is a one-in-10^10 event, and costs one
/// misattributed click).
#[derive(Default)]
struct ServedLog {
    by_id: HashMap<u64, Served>,
    /// Id hashes in serving order, oldest first, to forget the oldest.
    order: VecDeque<u64>,
    /// Item hashes held over all lists.
    items: usize,
}

struct CampaignFeedback {
    /// Service-side time of successful calls, in microseconds.
    latency: Histogram<u64>,
    failed: u64,
    items_served: u64,
    requests_by_minute: BTreeMap<i64, u64>,
    converted: u64,
    attributed_by_event_type: BTreeMap<String, u64>,
    /// Positions 1 to [`RANKS`], then one count for every position below.
    attributed_by_rank: [u64; RANKS + 1],
    attributed_by_minute: BTreeMap<i64, u64>,
}

impl Default for CampaignFeedback {
    fn default() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            failed: 0,
            items_served: 0,
            requests_by_minute: BTreeMap::new(),
            converted: 0,
            attributed_by_event_type: BTreeMap::new(),
            attributed_by_rank: [0; RANKS + 1],
            attributed_by_minute: BTreeMap::new(),
        }
    }
}

/// A campaign's activity since the process started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignActivity {
    /// Successful getRecommendations and personalized-ranking calls.
    pub requests: u64,
    /// Calls refused or failed (bad input included).
    pub failed_requests: u64,
    pub latency_micros: LatencySummary,
    /// Unix minute and calls in it, the last hour.
    pub requests_per_minute: Vec<(i64, u64)>,
    pub items_served: u64,
    /// Lists with at least one attributed event.
    pub converted_recommendations: u64,
    /// Converted lists over served lists.
    pub click_through_rate: f64,
    pub attributed_events: BTreeMap<String, u64>,
    /// Attributed events by the item's position on its list: positions 1 to
    /// 25, then one count for positions 26 and below.
    pub attributed_by_rank: Vec<u64>,
    /// Unix minute and attributed events in it, the last hour.
    pub attributed_per_minute: Vec<(i64, u64)>,
}

/// Quantiles of the service-side time of a call, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: f64,
}

/// A process-stable hash of an item or recommendation id.
fn id_hash(id: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

fn minute_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(60_000)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Feedback {
    /// Records a successful call that served `items` under `recommendation_id`.
    pub(crate) fn served<'a>(
        &self,
        campaign_arn: &str,
        recommendation_id: &str,
        items: impl ExactSizeIterator<Item = &'a str>,
        took: Duration,
    ) {
        let served = items.len() as u64;
        let hashes: Box<[u64]> = items.map(id_hash).collect();
        self.with_campaign(campaign_arn, |stats| {
            stats.latency.saturating_record((took.as_micros() as u64).max(1));
            stats.items_served += served;
            count_minute(&mut stats.requests_by_minute, minute_of(now_ms()), MINUTES_KEPT);
        });
        let campaign: Arc<str> = Arc::from(campaign_arn);
        let mut log = self.served.lock();
        while log.order.len() >= SERVED_KEPT || (log.items + hashes.len() > ITEMS_KEPT && !log.order.is_empty()) {
            let oldest = log.order.pop_front().expect("not empty");
            if let Some(forgotten) = log.by_id.remove(&oldest) {
                log.items -= forgotten.items.len();
            }
        }
        let id = id_hash(recommendation_id);
        log.order.push_back(id);
        log.items += hashes.len();
        if let Some(replaced) = log.by_id.insert(id, Served { campaign_arn: campaign, items: hashes, converted: false }) {
            log.items -= replaced.items.len();
        }
    }

    /// Records a call to a deployed campaign that failed.
    pub(crate) fn failed(&self, campaign_arn: &str) {
        self.with_campaign(campaign_arn, |stats| stats.failed += 1);
    }

    /// Runs `update` on the campaign's counts, created on first use (without
    /// allocating the key on every call after).
    fn with_campaign(&self, campaign_arn: &str, update: impl FnOnce(&mut CampaignFeedback)) {
        match self.campaigns.get(campaign_arn) {
            Some(stats) => update(&mut stats.lock()),
            None => update(&mut self.campaigns.entry(campaign_arn.to_string()).or_default().lock()),
        }
    }

    /// Attributes tracked events to the lists they name.
    pub(crate) fn attribute(&self, appended_at_ms: i64, events: &[TrackedEvent]) {
        let minute = minute_of(appended_at_ms);
        for event in events {
            let Some(id) = &event.recommendation_id else { continue };
            let (campaign, rank, first) = {
                let mut log = self.served.lock();
                let Some(served) = log.by_id.get_mut(&id_hash(id)) else { continue };
                let hash = id_hash(&event.interaction.item_id);
                let Some(rank) = served.items.iter().position(|h| *h == hash) else { continue };
                let first = !std::mem::replace(&mut served.converted, true);
                (served.campaign_arn.clone(), rank, first)
            };
            let Some(stats) = self.campaigns.get(&*campaign) else { continue };
            let mut stats = stats.lock();
            *stats.attributed_by_event_type.entry(event.interaction.event_type.clone()).or_default() += 1;
            stats.attributed_by_rank[rank.min(RANKS)] += 1;
            count_minute(&mut stats.attributed_by_minute, minute, MINUTES_KEPT);
            if first {
                stats.converted += 1;
            }
        }
    }

    /// A campaign's activity (all zero when it served nothing yet).
    pub(crate) fn activity(&self, campaign_arn: &str) -> CampaignActivity {
        let Some(stats) = self.campaigns.get(campaign_arn) else { return CampaignActivity::default() };
        let stats = stats.lock();
        let requests = stats.latency.len();
        let now = minute_of(now_ms());
        let recent = |by_minute: &BTreeMap<i64, u64>| last_minutes(by_minute, now, MINUTES_KEPT);
        CampaignActivity {
            requests,
            failed_requests: stats.failed,
            latency_micros: LatencySummary {
                p50: stats.latency.value_at_quantile(0.5),
                p90: stats.latency.value_at_quantile(0.9),
                p99: stats.latency.value_at_quantile(0.99),
                max: stats.latency.max(),
                mean: stats.latency.mean(),
            },
            requests_per_minute: recent(&stats.requests_by_minute),
            items_served: stats.items_served,
            converted_recommendations: stats.converted,
            click_through_rate: if requests == 0 { 0.0 } else { stats.converted as f64 / requests as f64 },
            attributed_events: stats.attributed_by_event_type.clone(),
            attributed_by_rank: stats.attributed_by_rank.to_vec(),
            attributed_per_minute: recent(&stats.attributed_by_minute),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use travelrec_store::InteractionRow;

    fn event(item: &str, event_type: &str, recommendation: Option<&str>) -> TrackedEvent {
        TrackedEvent {
            interaction: InteractionRow {
                user_id: "u".into(),
                item_id: item.into(),
                event_type: event_type.into(),
                timestamp: 0,
                event_value: None,
                session_id: None,
                fields: vec![],
            },
            received_at: 0,
            event_id: "e".into(),
            recommendation_id: recommendation.map(str::to_string),
            impression: vec![],
        }
    }

    #[test]
    fn events_are_attributed_to_the_list_and_rank_they_name() {
        let feedback = Feedback::default();
        feedback.served("c1", "r1", ["a", "b", "c"].into_iter(), Duration::from_micros(300));
        feedback.served("c1", "r2", ["c", "d"].into_iter(), Duration::from_micros(900));
        feedback.served("c2", "r3", ["a"].into_iter(), Duration::from_micros(50));
        feedback.failed("c1");
        feedback.attribute(
            0,
            &[
                event("c", "click", Some("r1")),
                event("c", "booking", Some("r1")),
                event("d", "click", Some("r2")),
                // Not on its list, an unknown list, and no list at all: not attributed.
                event("a", "click", Some("r2")),
                event("a", "click", Some("r-unknown")),
                event("a", "click", None),
            ],
        );
        let c1 = feedback.activity("c1");
        assert_eq!((c1.requests, c1.failed_requests, c1.items_served), (2, 1, 5));
        assert_eq!(c1.converted_recommendations, 2);
        assert_eq!(c1.click_through_rate, 1.0);
        assert_eq!(c1.attributed_events, BTreeMap::from([("booking".to_string(), 1), ("click".to_string(), 2)]));
        assert_eq!(&c1.attributed_by_rank[..3], &[0, 1, 2]);
        // Three significant digits: quantiles within 0.1 %.
        let latency = &c1.latency_micros;
        assert!((900..=901).contains(&latency.max) && (300..=301).contains(&latency.p50), "{latency:?}");
        assert_eq!(c1.requests_per_minute.iter().map(|(_, n)| n).sum::<u64>(), 2);
        let c2 = feedback.activity("c2");
        assert_eq!((c2.requests, c2.converted_recommendations, c2.click_through_rate), (1, 0, 0.0));
        assert_eq!(feedback.activity("never-called"), CampaignActivity::default());
    }

    #[test]
    fn clicks_below_the_counted_positions_are_attributed_together() {
        let feedback = Feedback::default();
        let items: Vec<String> = (0..40).map(|i| format!("i{i}")).collect();
        feedback.served("c", "r", items.iter().map(String::as_str), Duration::from_micros(10));
        feedback.attribute(0, &[event("i24", "click", Some("r")), event("i25", "click", Some("r")), event("i39", "view", Some("r"))]);
        let ranks = feedback.activity("c").attributed_by_rank;
        assert_eq!(ranks.len(), RANKS + 1);
        assert_eq!((ranks[RANKS - 1], ranks[RANKS]), (1, 2));
    }

    #[test]
    fn long_lists_make_fewer_lists_remembered() {
        let feedback = Feedback::default();
        let items: Vec<String> = (0..500).map(|i| format!("i{i}")).collect();
        for i in 0..ITEMS_KEPT / 500 + 1 {
            feedback.served("c", &format!("r{i}"), items.iter().map(String::as_str), Duration::from_micros(10));
        }
        let log = feedback.served.lock();
        assert_eq!((log.by_id.len(), log.items), (ITEMS_KEPT / 500, ITEMS_KEPT));
        assert!(!log.by_id.contains_key(&id_hash("r0")) && log.by_id.contains_key(&id_hash("r1")));
    }

    #[test]
    fn only_the_newest_lists_are_remembered() {
        let feedback = Feedback::default();
        for i in 0..SERVED_KEPT + 1 {
            feedback.served("c", &format!("r{i}"), ["a"].into_iter(), Duration::from_micros(10));
        }
        feedback.attribute(0, &[event("a", "click", Some("r0")), event("a", "click", Some("r1"))]);
        let activity = feedback.activity("c");
        assert_eq!(activity.converted_recommendations, 1, "r0 is forgotten, r1 is not");
        assert_eq!(feedback.served.lock().by_id.len(), SERVED_KEPT);
    }
}
