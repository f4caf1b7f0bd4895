//! The managed service's resources, with its field names and lifecycle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lifecycle status, spelled as the managed service spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "CREATE PENDING")]
    CreatePending,
    #[serde(rename = "CREATE IN_PROGRESS")]
    CreateInProgress,
    #[serde(rename = "ACTIVE")]
    Active,
    #[serde(rename = "CREATE FAILED")]
    CreateFailed,
    #[serde(rename = "CREATE STOPPING")]
    CreateStopping,
    #[serde(rename = "CREATE STOPPED")]
    CreateStopped,
    #[serde(rename = "DELETE PENDING")]
    DeletePending,
    #[serde(rename = "DELETE IN_PROGRESS")]
    DeleteInProgress,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::CreatePending => "CREATE PENDING",
            Status::CreateInProgress => "CREATE IN_PROGRESS",
            Status::Active => "ACTIVE",
            Status::CreateFailed => "CREATE FAILED",
            Status::CreateStopping => "CREATE STOPPING",
            Status::CreateStopped => "CREATE STOPPED",
            Status::DeletePending => "DELETE PENDING",
            Status::DeleteInProgress => "DELETE IN_PROGRESS",
        }
    }

    /// Still being created: a job may move it forward.
    pub fn is_creating(self) -> bool {
        matches!(self, Status::CreatePending | Status::CreateInProgress)
    }

    pub fn is_deleting(self) -> bool {
        matches!(self, Status::DeletePending | Status::DeleteInProgress)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Status and timestamps every resource carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lifecycle {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub creation_date_time: DateTime<Utc>,
    pub last_updated_date_time: DateTime<Utc>,
}

impl Lifecycle {
    pub fn new(status: Status) -> Self {
        let now = Utc::now();
        Self { status, failure_reason: None, creation_date_time: now, last_updated_date_time: now }
    }

    pub fn set(&mut self, status: Status) {
        self.status = status;
        self.last_updated_date_time = Utc::now();
    }

    pub fn fail(&mut self, reason: impl Into<String>) {
        self.failure_reason = Some(reason.into());
        self.set(Status::CreateFailed);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DatasetType {
    Interactions,
    Items,
    Users,
    /// Festivals, markets and other dated happenings at an item or a place
    /// (travelrec's own, beside the managed service's three).
    LocalEvents,
}

impl DatasetType {
    pub const ALL: [DatasetType; 4] = [DatasetType::Interactions, DatasetType::Items, DatasetType::Users, DatasetType::LocalEvents];

    pub fn as_str(self) -> &'static str {
        match self {
            DatasetType::Interactions => "INTERACTIONS",
            DatasetType::Items => "ITEMS",
            DatasetType::Users => "USERS",
            DatasetType::LocalEvents => "LOCAL_EVENTS",
        }
    }

    /// Case-insensitive: `Interactions`, `INTERACTIONS` and `interactions` all parse.
    pub fn parse(value: &str) -> Option<DatasetType> {
        DatasetType::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(value))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ImportMode {
    /// Replace the dataset's imported rows.
    #[default]
    Full,
    /// Add to them.
    Incremental,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetGroup {
    pub name: String,
    pub dataset_group_arn: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub name: String,
    pub schema_arn: String,
    /// The Avro record schema, as JSON text.
    pub schema: String,
    pub creation_date_time: DateTime<Utc>,
    pub last_updated_date_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub name: String,
    pub dataset_arn: String,
    pub dataset_group_arn: String,
    pub dataset_type: DatasetType,
    pub schema_arn: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    pub data_location: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetImportJob {
    pub job_name: String,
    pub dataset_import_job_arn: String,
    pub dataset_arn: String,
    pub data_source: DataSource,
    pub import_mode: ImportMode,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
    /// Rows written so far (final once ACTIVE).
    #[serde(default)]
    pub rows_imported: u64,
    /// Share of the input read, 0–100.
    #[serde(default)]
    pub percent_complete: f32,
    /// Things worth knowing that did not stop the import (ignored columns, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolutionConfig {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub algorithm_hyper_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Solution {
    pub name: String,
    pub solution_arn: String,
    pub dataset_group_arn: String,
    pub recipe_arn: String,
    #[serde(default)]
    pub solution_config: SolutionConfig,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SolutionVersion {
    pub name: String,
    pub solution_version_arn: String,
    pub solution_arn: String,
    pub dataset_group_arn: String,
    pub recipe_arn: String,
    pub training_mode: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
    /// Share of training done, 0–100.
    #[serde(default)]
    pub percent_complete: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_hours: Option<f64>,
    /// What the model was trained on (users, items, interactions, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_summary: Option<serde_json::Value>,
    /// Offline metrics: the newest slice of interactions held out, the
    /// recipe trained on the rest (`coverage`, `mean_reciprocal_rank_at_25`,
    /// `normalized_discounted_cumulative_gain_at_5/10/25`, `precision_at_…`, `recall_at_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<std::collections::BTreeMap<String, f64>>,
    /// What hyperparameter search and blend learning chose, as the managed
    /// service reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned_hpo_params: Option<TunedHpoParams>,
    /// Tracked events inside the model: per event-log partition, the last
    /// sequence number included; newer ones are folded in at query time.
    /// (A struct with a flattened field reads maps through strings, so the
    /// partition keys go through [`partition_keys`].)
    #[serde(default, with = "partition_keys")]
    pub events_through: std::collections::BTreeMap<u32, u64>,
}

/// A `partition → sequence` map as a JSON object (`{"0": 41}`), read back
/// from string keys: serde cannot read integer keys inside a struct that has
/// a `#[serde(flatten)]` field.
mod partition_keys {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(map: &BTreeMap<u32, u64>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(partition, sequence)| (partition.to_string(), sequence)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<u32, u64>, D::Error> {
        BTreeMap::<String, u64>::deserialize(deserializer)?
            .into_iter()
            .map(|(key, sequence)| {
                key.parse()
                    .map(|partition| (partition, sequence))
                    .map_err(|_| D::Error::custom(format!("partition `{key}` is not a number")))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunedHpoParams {
    pub algorithm_hyper_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Campaign {
    pub name: String,
    pub campaign_arn: String,
    pub solution_version_arn: String,
    #[serde(default = "one")]
    pub min_provisioned_tps: u32,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
    /// The newest change of model (UpdateCampaign), as the managed service
    /// reports it; the campaign serves its current model until one is ACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_campaign_update: Option<CampaignUpdate>,
}

impl Campaign {
    /// The move to another model still under way, if any.
    pub fn update_in_progress(&self) -> Option<&CampaignUpdate> {
        self.latest_campaign_update.as_ref().filter(|u| u.lifecycle.status.is_creating())
    }
}

/// A campaign's move to another solution version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CampaignUpdate {
    pub solution_version_arn: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTracker {
    pub name: String,
    pub event_tracker_arn: String,
    pub dataset_group_arn: String,
    pub tracking_id: String,
    pub account_id: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

/// A saved filter expression (see the engine's filter language), applied per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub name: String,
    pub filter_arn: String,
    pub dataset_group_arn: String,
    pub filter_expression: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

/// What an API key may do; `admin` includes every other scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiScope {
    /// getRecommendations and personalized ranking.
    Recommend,
    /// Events, items, users and local events (PutEvents, /data, ...).
    Track,
    /// Describing and listing resources, metrics, the dashboard.
    Read,
    /// Everything: creating and deleting resources, API keys, users' stored events.
    Admin,
}

impl ApiScope {
    pub const ALL: [ApiScope; 4] = [ApiScope::Recommend, ApiScope::Track, ApiScope::Read, ApiScope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::Recommend => "recommend",
            ApiScope::Track => "track",
            ApiScope::Read => "read",
            ApiScope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<ApiScope> {
        ApiScope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for ApiScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An API key. Its secret is returned once, when the key is created; only
/// the secret's SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub name: String,
    pub api_key_arn: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub scopes: Vec<ApiScope>,
    /// The secret's first characters, to tell keys apart.
    pub prefix: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    #[serde(flatten)]
    pub lifecycle: Lifecycle,
}

/// Every stored resource, tagged with its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    DatasetGroup(DatasetGroup),
    Schema(Schema),
    Dataset(Dataset),
    DatasetImportJob(DatasetImportJob),
    Solution(Solution),
    SolutionVersion(SolutionVersion),
    Campaign(Campaign),
    EventTracker(EventTracker),
    Filter(Filter),
    ApiKey(ApiKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    DatasetGroup,
    Schema,
    Dataset,
    DatasetImportJob,
    Solution,
    SolutionVersion,
    Campaign,
    EventTracker,
    Filter,
    ApiKey,
}

impl ResourceKind {
    /// The resource-type segment of its ARN.
    pub fn arn_segment(self) -> &'static str {
        match self {
            ResourceKind::DatasetGroup => "dataset-group",
            ResourceKind::Schema => "schema",
            ResourceKind::Dataset => "dataset",
            ResourceKind::DatasetImportJob => "dataset-import-job",
            ResourceKind::Solution => "solution",
            ResourceKind::SolutionVersion => "solution",
            ResourceKind::Campaign => "campaign",
            ResourceKind::EventTracker => "event-tracker",
            ResourceKind::Filter => "filter",
            ResourceKind::ApiKey => "api-key",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::DatasetGroup => "dataset group",
            ResourceKind::Schema => "schema",
            ResourceKind::Dataset => "dataset",
            ResourceKind::DatasetImportJob => "dataset import job",
            ResourceKind::Solution => "solution",
            ResourceKind::SolutionVersion => "solution version",
            ResourceKind::Campaign => "campaign",
            ResourceKind::EventTracker => "event tracker",
            ResourceKind::Filter => "filter",
            ResourceKind::ApiKey => "API key",
        }
    }
}

impl Resource {
    pub fn arn(&self) -> &str {
        match self {
            Resource::DatasetGroup(r) => &r.dataset_group_arn,
            Resource::Schema(r) => &r.schema_arn,
            Resource::Dataset(r) => &r.dataset_arn,
            Resource::DatasetImportJob(r) => &r.dataset_import_job_arn,
            Resource::Solution(r) => &r.solution_arn,
            Resource::SolutionVersion(r) => &r.solution_version_arn,
            Resource::Campaign(r) => &r.campaign_arn,
            Resource::EventTracker(r) => &r.event_tracker_arn,
            Resource::Filter(r) => &r.filter_arn,
            Resource::ApiKey(r) => &r.api_key_arn,
        }
    }

    pub fn kind(&self) -> ResourceKind {
        match self {
            Resource::DatasetGroup(_) => ResourceKind::DatasetGroup,
            Resource::Schema(_) => ResourceKind::Schema,
            Resource::Dataset(_) => ResourceKind::Dataset,
            Resource::DatasetImportJob(_) => ResourceKind::DatasetImportJob,
            Resource::Solution(_) => ResourceKind::Solution,
            Resource::SolutionVersion(_) => ResourceKind::SolutionVersion,
            Resource::Campaign(_) => ResourceKind::Campaign,
            Resource::EventTracker(_) => ResourceKind::EventTracker,
            Resource::Filter(_) => ResourceKind::Filter,
            Resource::ApiKey(_) => ResourceKind::ApiKey,
        }
    }
}

/// Conversions between [`Resource`] and the concrete types, so callers can
/// write `store.get::<Campaign>(arn)`.
pub trait ResourceType: Sized + Clone {
    const KIND: ResourceKind;
    fn from_resource(resource: Resource) -> Option<Self>;
    fn into_resource(self) -> Resource;
}

macro_rules! resource_type {
    ($($ty:ident),*) => {$(
        impl ResourceType for $ty {
            const KIND: ResourceKind = ResourceKind::$ty;
            fn from_resource(resource: Resource) -> Option<Self> {
                match resource {
                    Resource::$ty(r) => Some(r),
                    _ => None,
                }
            }
            fn into_resource(self) -> Resource {
                Resource::$ty(self)
            }
        }
    )*};
}

resource_type!(DatasetGroup, Schema, Dataset, DatasetImportJob, Solution, SolutionVersion, Campaign, EventTracker, Filter, ApiKey);

/// Builds ARN-shaped identifiers, e.g.
/// `arn:aws:personalize:local:000000000000:campaign/my-campaign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnBuilder {
    pub region: String,
    pub account: String,
}

impl Default for ArnBuilder {
    fn default() -> Self {
        Self { region: "local".into(), account: "000000000000".into() }
    }
}

impl ArnBuilder {
    pub fn arn(&self, kind: ResourceKind, name: &str) -> String {
        format!("arn:aws:personalize:{}:{}:{}/{}", self.region, self.account, kind.arn_segment(), name)
    }

    /// `…:solution/<solution>/<version>`, as the managed service names versions.
    pub fn solution_version_arn(&self, solution_arn: &str, version: &str) -> String {
        format!("{solution_arn}/{version}")
    }
}

/// A resource name as the managed service accepts it: 1–63 characters of
/// letters, digits, `-` and `_`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid name: use 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialise_as_the_managed_service_spells_them() {
        assert_eq!(serde_json::to_string(&Status::CreateInProgress).unwrap(), "\"CREATE IN_PROGRESS\"");
        assert_eq!(serde_json::to_string(&Status::DeletePending).unwrap(), "\"DELETE PENDING\"");
    }

    #[test]
    fn resources_round_trip_through_json_with_camel_case_fields() {
        let campaign = Campaign {
            name: "c".into(),
            campaign_arn: ArnBuilder::default().arn(ResourceKind::Campaign, "c"),
            solution_version_arn: "arn:sv".into(),
            min_provisioned_tps: 1,
            lifecycle: Lifecycle::new(Status::Active),
            latest_campaign_update: None,
        };
        let json = serde_json::to_value(campaign.clone().into_resource()).unwrap();
        assert_eq!(json["campaignArn"], "arn:aws:personalize:local:000000000000:campaign/c");
        assert_eq!(json["status"], "ACTIVE");
        assert_eq!(json["resourceType"], "Campaign");
        let back: Resource = serde_json::from_value(json).unwrap();
        assert_eq!(Campaign::from_resource(back), Some(campaign));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("my-campaign_1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"a".repeat(64)).is_err());
    }
}
