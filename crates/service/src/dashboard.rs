//! The dashboard's data in one snapshot: per dataset group what users did
//! (events by type, minute and item), per campaign how it serves (calls,
//! latency, attributed events) and how its model scored offline. Item ids
//! appear; user ids never do.

use crate::Service;
use crate::consumers::last_minutes;
use crate::error::Result;
use crate::feedback::CampaignActivity;
use crate::realtime::RealtimeMemory;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use travelrec_store::{Campaign, DatasetGroup, SolutionVersion};

/// Items listed as the most interacted with.
const TOP_ITEMS: usize = 10;
/// Minutes of per-minute counts shown.
const MINUTES_SHOWN: i64 = 60;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    /// Unix milliseconds.
    pub generated_at: i64,
    pub dataset_groups: Vec<DatasetGroupPanel>,
    pub campaigns: Vec<CampaignPanel>,
}

/// What the users of a dataset group did since the event log's oldest retained record.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetGroupPanel {
    pub name: String,
    pub dataset_group_arn: String,
    pub events: u64,
    pub users: u64,
    /// Events naming a recommendation they came from.
    pub attributed_events: u64,
    pub events_by_type: BTreeMap<String, u64>,
    /// Unix minute and events received in it, the last hour.
    pub events_per_minute: Vec<(i64, u64)>,
    /// Item id and events, most first.
    pub top_items: Vec<(String, u64)>,
    /// Tracked events held in memory for real-time fold-in.
    pub realtime: RealtimeMemory,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignPanel {
    pub name: String,
    pub campaign_arn: String,
    pub status: String,
    pub solution_version_arn: String,
    pub dataset_group_arn: String,
    pub recipe_arn: String,
    /// The solution version's offline metrics (held-out newest interactions).
    pub offline_metrics: BTreeMap<String, f64>,
    pub activity: CampaignActivity,
}

impl Service {
    /// Everything the dashboard shows, as of now.
    pub async fn dashboard(&self) -> Result<Dashboard> {
        let now = chrono::Utc::now().timestamp_millis();
        let groups: Vec<DatasetGroup> = self.list().await?;
        let versions: HashMap<String, SolutionVersion> =
            self.list::<SolutionVersion>().await?.into_iter().map(|v| (v.solution_version_arn.clone(), v)).collect();
        let mut campaigns: Vec<Campaign> = self.list().await?;
        campaigns.sort_by(|a, b| a.name.cmp(&b.name));
        let now_minute = now.div_euclid(60_000);

        let dataset_groups = groups
            .into_iter()
            .map(|group| {
                let arn = group.dataset_group_arn;
                let analytics = self.analytics(&arn);
                let mut top_items: Vec<(String, u64)> = analytics.by_item.into_iter().collect();
                top_items.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                top_items.truncate(TOP_ITEMS);
                DatasetGroupPanel {
                    name: group.name,
                    realtime: self.realtime_memory(&arn),
                    dataset_group_arn: arn,
                    events: analytics.events,
                    users: analytics.users,
                    attributed_events: analytics.attributed,
                    events_by_type: analytics.by_event_type,
                    events_per_minute: last_minutes(&analytics.by_minute, now_minute, MINUTES_SHOWN),
                    top_items,
                }
            })
            .collect();

        let campaigns = campaigns
            .into_iter()
            .map(|campaign| {
                let version = versions.get(&campaign.solution_version_arn);
                CampaignPanel {
                    activity: self.inner.feedback.activity(&campaign.campaign_arn),
                    name: campaign.name,
                    campaign_arn: campaign.campaign_arn,
                    status: campaign.lifecycle.status.to_string(),
                    dataset_group_arn: version.map(|v| v.dataset_group_arn.clone()).unwrap_or_default(),
                    recipe_arn: version.map(|v| v.recipe_arn.clone()).unwrap_or_default(),
                    offline_metrics: version.and_then(|v| v.metrics.clone()).unwrap_or_default(),
                    solution_version_arn: campaign.solution_version_arn,
                }
            })
            .collect();
        Ok(Dashboard { generated_at: now, dataset_groups, campaigns })
    }
}
