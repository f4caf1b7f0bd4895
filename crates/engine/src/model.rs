//! A trained model: immutable once built, serialisable, and cheap to score.

use crate::als::AlsModel;
use crate::context::{Context, TimeProfile};
use crate::ease::EaseModel;
use crate::kernels::{exp_nonpositive, gather, summarise_finite};
use crate::sparse::ItemLinks;
use crate::topk::{Softmax, softmax_in_place, top_k};
use crate::training_data::ItemMeta;
use crate::tuning::TuningReport;
use crate::{Hyperparameters, IdIndex, Recipe, TrainingData};
use multiversion::multiversion;
use serde::{Deserialize, Serialize};

/// One event in a user's history, as the model scores it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub item: u32,
    /// Index into [`Model::event_types`]; [`HistoryEvent::UNKNOWN_TYPE`] for a type
    /// the model has not seen (it gets the default weight).
    pub event_type: u16,
    pub timestamp: i64,
    /// `EVENT_VALUE` (e.g. a rating); NaN when the event has none.
    pub value: f32,
}

impl HistoryEvent {
    pub const UNKNOWN_TYPE: u16 = u16::MAX;

    /// An event without a value.
    pub fn new(item: u32, event_type: u16, timestamp: i64) -> Self {
        Self { item, event_type, timestamp, value: f32::NAN }
    }
}

impl From<&crate::TrainingEvent> for HistoryEvent {
    fn from(e: &crate::TrainingEvent) -> Self {
        Self { item: e.item, event_type: e.event_type, timestamp: e.timestamp, value: e.value.unwrap_or(f32::NAN) }
    }
}

/// Every user's newest events at training time, in time order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histories {
    users: IdIndex,
    offsets: Vec<u32>,
    events: Vec<HistoryEvent>,
}

impl Histories {
    pub(crate) fn build(data: &TrainingData, order: &[u32], offsets: &[usize], max_history: usize) -> Self {
        let mut histories = Histories { users: data.users.clone(), offsets: Vec::with_capacity(data.users.len() + 1), events: Vec::new() };
        histories.offsets.push(0);
        for u in 0..data.users.len() {
            let (start, end) = (offsets[u], offsets[u + 1]);
            let start = start.max(end.saturating_sub(max_history));
            for &i in &order[start..end] {
                histories.events.push(HistoryEvent::from(&data.events[i as usize]));
            }
            histories.offsets.push(histories.events.len() as u32);
        }
        histories
    }

    /// The user's history at training time (empty for an unknown user).
    pub fn get(&self, user_id: &str) -> &[HistoryEvent] {
        match self.users.get(user_id) {
            Some(u) => &self.events[self.offsets[u as usize] as usize..self.offsets[u as usize + 1] as usize],
            None => &[],
        }
    }

    /// The history of the user with index `user` in the training data.
    pub fn get_index(&self, user: u32) -> &[HistoryEvent] {
        &self.events[self.offsets[user as usize] as usize..self.offsets[user as usize + 1] as usize]
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// These histories without `user_id`'s, the other users renumbered in
    /// order; `None` when the user has none.
    pub fn without_user(&self, user_id: &str) -> Option<Histories> {
        let gone = self.users.get(user_id)?;
        let mut kept = Histories { users: IdIndex::new(), offsets: vec![0], events: Vec::with_capacity(self.events.len()) };
        for user in (0..self.users.len() as u32).filter(|u| *u != gone) {
            kept.users.intern(self.users.id(user));
            kept.events.extend_from_slice(self.get_index(user));
            kept.offsets.push(kept.events.len() as u32);
        }
        Some(kept)
    }

    /// The id of the user with index `user`.
    pub fn user_id(&self, user: u32) -> &str {
        self.users.id(user)
    }
}

/// How the collaborative part of a model scores a user's profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Collaborative {
    /// No collaborative signal (popularity-style recipes).
    None,
    Ease(EaseModel),
    Als(AlsModel),
    /// Item-kNN: the sum of cosine similarities to the profile's items.
    Neighbours(ItemLinks),
}

/// The signals a user-personalization score blends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Feature {
    /// Collaborative score, in standard deviations over the catalogue.
    Collaborative,
    /// Probability of being next after the user's last items (this session).
    Sequence,
    /// Log popularity, scaled to 0..1.
    Popularity,
    /// Recent growth of interactions (see `popularity::trending`), 0..1.
    Trending,
    /// Nearness to where the user is: their last located item, or the
    /// request's LOCATION or CITY when that is far from it (and `use_location` is on).
    Proximity,
    /// How much the user already has the item (its profile weight over the
    /// largest); for places often negative: few go back to where they just were.
    Repeat,
    /// Nearness to where the user is now (the request's LOCATION or CITY, or
    /// the newest located event).
    Nearby,
    /// How much more the item is visited in the request's month (or whether
    /// it is in season, when its seasons are known).
    Season,
    /// How much more the item is visited at the request's hour of day.
    TimeOfDay,
    /// The item hosts, or is near, a local event running at the request's moment.
    LocalEvent,
    /// How much of the user's profile lies in the item's categories (GENRE),
    /// on a log scale (`taste_smoothing`): a taste that carries over to
    /// places the user has never been.
    Taste,
}

/// Profile weights below this share of the user's largest are dropped: under
/// f32's precision for any score they would add to.
const NEGLIGIBLE_PROFILE_WEIGHT: f32 = 1e-6;

/// A request this far from the user's last located item means they have
/// moved on (another city, another trip): proximity then counts from the request.
pub(crate) const MOVED_ON_KM: f64 = 30.0;

/// The Earth's mean radius, for distances from radians.
const EARTH_KM: f32 = 6_371.0;

/// Number of blended signals.
pub const FEATURES: usize = 11;

impl Feature {
    pub const ALL: [Feature; FEATURES] = [
        Feature::Collaborative,
        Feature::Sequence,
        Feature::Popularity,
        Feature::Trending,
        Feature::Proximity,
        Feature::Repeat,
        Feature::Nearby,
        Feature::Season,
        Feature::TimeOfDay,
        Feature::LocalEvent,
        Feature::Taste,
    ];

    pub fn name(self) -> &'static str {
        FEATURE_NAMES[self as usize]
    }

    /// Signals that are zero but at a few items (the user's own, what
    /// follows their last ones, the attractions around a place): a query
    /// writes and blends them at those items only, after the dense signals,
    /// instead of a pass over the catalogue each.
    pub fn sparse(self) -> bool {
        matches!(self, Feature::Sequence | Feature::Repeat | Feature::Proximity | Feature::Nearby)
    }

    /// Signals that depend on the request's context.
    pub fn contextual(self) -> bool {
        matches!(self, Feature::Nearby | Feature::Season | Feature::TimeOfDay | Feature::LocalEvent)
    }
}

/// Feature names, in blend order.
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "collaborative",
    "sequence",
    "popularity",
    "trending",
    "proximity",
    "repeat",
    "nearby",
    "season",
    "time_of_day",
    "local_event",
    "taste",
];

/// Weights of the blended signals, learned on a validation split (see [`crate::tuning`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Blend {
    pub weights: [f32; FEATURES],
}

impl Default for Blend {
    fn default() -> Self {
        Self::zero().with(Feature::Collaborative, 1.0).with(Feature::Popularity, 0.05)
    }
}

impl Blend {
    pub fn zero() -> Self {
        Self { weights: [0.0; FEATURES] }
    }

    pub fn with(mut self, feature: Feature, weight: f32) -> Self {
        self.weights[feature as usize] = weight;
        self
    }

    pub fn get(&self, feature: Feature) -> f32 {
        self.weights[feature as usize]
    }

    /// Every signal on (to compute them all, e.g. for learning the weights).
    pub fn all() -> Self {
        Self { weights: [1.0; FEATURES] }
    }

    /// The same blend with every contextual signal off.
    pub fn without_context(mut self) -> Self {
        for f in Feature::ALL.into_iter().filter(|f| f.contextual()) {
            self.weights[f as usize] = 0.0;
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Newest interaction time in the training data (Unix seconds).
    pub max_timestamp: i64,
    pub training_seconds: f64,
}

/// An item and its probability under the catalogue-wide softmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredItem {
    pub item: u32,
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("not a travelrec model snapshot (bad magic bytes)")]
    BadMagic,
    #[error("model snapshot format {found} is not supported by this build (expects {expected}); retrain the solution version")]
    UnsupportedVersion { found: u32, expected: u32 },
    #[error("model snapshot is corrupt: {0}")]
    Corrupt(String),
}

/// The learned parts of a model, trainable on any split of the data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Components {
    pub collaborative: Collaborative,
    pub transitions: Option<ItemLinks>,
    /// Cosine neighbours, for similar-items.
    pub neighbours: Option<ItemLinks>,
    /// Interaction count per item.
    pub popularity: Vec<f32>,
    /// How much faster each item is being interacted with lately.
    pub trending: Vec<f32>,
    /// The largest event value in the data (0 without values); values are read relative to it.
    pub value_scale: f32,
    /// Catalogue items without a single interaction (explored by content).
    pub cold_items: Vec<u32>,
    /// When in the year each item is visited, relative to everything.
    pub monthly: TimeProfile,
    /// When in the day each item is visited, relative to everything.
    pub hourly: TimeProfile,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format_version: u32,
    pub recipe: Recipe,
    pub hyperparameters: Hyperparameters,
    pub items: IdIndex,
    pub event_types: Vec<String>,
    pub item_meta: Vec<ItemMeta>,
    pub components: Components,
    pub blend: Blend,
    /// The blend for a user who has moved on ([`Model::moved_on`]): a
    /// request that places them far from everything in their history (more
    /// than [`MOVED_ON_KM`] from their last located item), or comes hours
    /// after their newest event. A traveller who has arrived somewhere new,
    /// or set out again, is not where their history says or in the middle of
    /// what they did last, so the signals weigh differently; learned on
    /// validation cases of that kind. `None` when the validation split held
    /// too few cases of either kind (then `blend` serves).
    pub moved_on_blend: Option<Blend>,
    pub histories: Histories,
    pub summary: TrainingSummary,
    /// What hyperparameter search and blend learning tried and chose.
    pub tuning: Option<TuningReport>,
    /// Per-item values every query needs, derived once on first use.
    #[serde(skip)]
    pub(crate) derived: std::sync::OnceLock<Derived>,
}

/// What queries reuse: the popularity signal and the items' positions in a
/// form that makes nearness cheap (no trigonometry per item and query, and
/// only the items around a place looked at).
#[derive(Debug, Clone, Default)]
pub(crate) struct Derived {
    popularity: Vec<f32>,
    /// The weight of each of the model's event types.
    event_type_weights: Vec<f32>,
    /// The located items in strips of latitude (what nearness scans).
    places: PlaceGrid,
    /// The located items' own places ([`place_key`]): nearness counts from
    /// these exactly, so an item is nearest its own place.
    item_places: std::collections::HashSet<(u64, u64)>,
    /// Every item's city and categories as numbers, for exploration.
    traits: TraitIds,
    /// Cold items by city number, and those without a city, for exploration.
    cold_by_city: Vec<Vec<u32>>,
    cold_without_city: Vec<u32>,
    /// Around each place nearness has counted from (an item's own place, or
    /// the centre of a cell a request's LOCATION rounds to, see
    /// [`Model::nearness_origin`]), the squared distance to the K-th nearest
    /// located item, what the nearness scale derives from.
    nearness_scales: Kept<(u64, u64), f32>,
    /// Per month, every item's season signal; per hour, its time-of-day
    /// signal. Each built the first time a request asks for that month or
    /// hour, then read in place like popularity (no per-query pass).
    seasons: [std::sync::OnceLock<Vec<f32>>; 12],
    hours: [std::sync::OnceLock<Vec<f32>>; 24],
    /// Per set of local events running at a request's moment, every item's
    /// local-event signal: the same for every user on that day.
    local_events: Kept<EventsKey, std::sync::Arc<[f32]>>,
    /// Per request place and scale, the nearby signal at the items in
    /// reach: the same for every user asking from there (a CITY's centre, a
    /// venue's LOCATION), and at a wide `nearby_scale` it reaches most of a
    /// continent's items.
    nearby: KeptNearness,
    /// The same for proximity from a request's place (one scale), kept
    /// apart: its cells are small, and a stream of new places must not
    /// evict the wide nearby signals, which cost far more to find again.
    proximity: KeptNearness,
}

/// Nearness signals from request places, kept per [`NearnessOrigin::key`]
/// from a place's second request on. A place asked about once may never be
/// again: storing a signal for every new place (travellers all over a city,
/// each somewhere new) costs more than building it, and pushes the kept
/// signals out of the caches.
#[derive(Debug, Clone, Default)]
struct KeptNearness {
    signals: Kept<((u64, u64), u32), std::sync::Arc<NearSignal>>,
    /// Places asked about once.
    asked: Kept<((u64, u64), u32), ()>,
}

impl KeptNearness {
    /// Room for `signals` signals.
    fn new(signals: usize) -> Self {
        Self { signals: Kept::new(signals), asked: Kept::new(REQUEST_PLACES) }
    }
}

/// A nearness signal at the items in reach (the others are 0), or at every
/// item when the box around its reach holds half the catalogue or more (from
/// a place far from the items, whose scale is wide): that one takes no more
/// room than the box's items would (and no more than the 8 bytes per
/// located item [`nearby_places`] counts), and is blended with the
/// catalogue-wide signals, a vectorised pass, instead of item by item
/// (several times faster per item).
#[derive(Debug)]
enum NearSignal {
    Sparse { items: Vec<u32>, values: Vec<f32> },
    Dense(Vec<f32>),
}

impl NearSignal {
    /// `out[i] = value` at each item the signal holds.
    fn write_into(&self, out: &mut [f32]) {
        match self {
            Self::Sparse { items, values } => items.iter().zip(values).for_each(|(&i, &v)| out[i as usize] = v),
            Self::Dense(values) => out.copy_from_slice(values),
        }
    }
}

/// Bytes of nearby signals kept, and as many of proximity's (at most 8
/// bytes per located item each): room for the cells of a city or two
/// however large the catalogue.
const NEARBY_BYTES: usize = 32 << 20;

/// Places whose nearby signal is kept, for `located` items: as many as
/// [`NEARBY_BYTES`] holds, 64 to 4096.
fn nearby_places(located: usize) -> usize {
    (NEARBY_BYTES / (8 * located.max(1))).clamp(64, 4096)
}

/// A set of running events as a key: each one's host (or `u32::MAX`) and place (as bits).
type EventsKey = Vec<(u32, u64, u64)>;

thread_local! {
    /// Feature buffers reused across the queries a thread serves.
    static FEATURE_BUFFERS: std::cell::RefCell<Option<FeatureBuffers>> = const { std::cell::RefCell::new(None) };
}

/// A user as the model sees them at query time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Per item: event-type weight × recency decay, summed and log-damped
    /// (items under a millionth of the largest left out: they move no score).
    pub weighted: Vec<(u32, f32)>,
    /// The newest distinct items, newest first, with a position decay.
    pub last: Vec<(u32, f32)>,
    /// Where the user last was, from the newest located item.
    pub location: Option<(f64, f64)>,
    /// Every item in the history.
    pub seen: Vec<u32>,
    /// The moment of the newest event (Unix seconds), if there is one.
    pub newest: Option<i64>,
}

/// How many of the newest distinct items drive the sequence signal.
const LAST_ITEMS: usize = 3;

const MAGIC: &[u8; 8] = b"TRECMDL\0";

impl Model {
    pub const FORMAT_VERSION: u32 = 9;

    /// Removes what the model holds of one user: their history (what a
    /// query for them starts from). The item-to-item weights and counts keep
    /// their share of aggregates until the next training. Returns whether
    /// the model knew the user.
    pub fn forget_user(&mut self, user_id: &str) -> bool {
        match self.histories.without_user(user_id) {
            Some(kept) => {
                self.histories = kept;
                true
            }
            None => false,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&Self::FORMAT_VERSION.to_le_bytes());
        postcard::to_extend(self, bytes).expect("serialising to a Vec cannot fail")
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        Self::check_snapshot_format(bytes)?;
        postcard::from_bytes(&bytes[12..]).map_err(|e| ModelError::Corrupt(e.to_string()))
    }

    /// Whether `bytes` start as a snapshot this build reads (its magic bytes
    /// and format version), without decoding the rest: a snapshot written
    /// by another version of travelrec is found before it is deployed.
    pub fn check_snapshot_format(bytes: &[u8]) -> Result<(), ModelError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("four bytes"));
        if found != Self::FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion { found, expected: Self::FORMAT_VERSION });
        }
        Ok(())
    }

    pub fn item_index(&self, item_id: &str) -> Option<u32> {
        self.items.get(item_id)
    }

    pub fn item_id(&self, item: u32) -> &str {
        self.items.id(item)
    }

    pub fn event_type_index(&self, event_type: &str) -> u16 {
        self.event_types.iter().position(|t| t == event_type).map_or(HistoryEvent::UNKNOWN_TYPE, |i| i as u16)
    }

    /// The `k` best items for a user whose history is `history` (training
    /// time) followed by `recent` (events that arrived since), with their
    /// probabilities under a softmax over the whole catalogue.
    pub fn recommend(&self, history: &[HistoryEvent], recent: &[HistoryEvent], k: usize) -> Vec<ScoredItem> {
        self.recommend_with(history, recent, k, false)
    }

    /// As [`Model::recommend`]; with `exclude_seen`, items in the history are never returned.
    pub fn recommend_with(&self, history: &[HistoryEvent], recent: &[HistoryEvent], k: usize, exclude_seen: bool) -> Vec<ScoredItem> {
        self.query(&Query { history, recent, k, exclude_seen, ..Query::default() })
            .into_iter()
            .filter_map(|r| match r.candidate {
                Candidate::Known(item) => Some(ScoredItem { item, score: r.score }),
                Candidate::Extra(_) => None,
            })
            .collect()
    }

    /// Orders `candidates` for the user in `context`, best first, with
    /// probabilities under a softmax over the candidates.
    pub fn rank(&self, history: &[HistoryEvent], recent: &[HistoryEvent], candidates: &[u32], context: &Context) -> Vec<ScoredItem> {
        let profile = self.profile(history, recent);
        let mut all = vec![0f32; self.items.len()];
        self.score_profile(&profile, context, self.blend_for(&profile, context), &mut all);
        let mut scores: Vec<f32> = candidates.iter().map(|&i| all[i as usize]).collect();
        softmax_in_place(&mut scores, self.hyperparameters.softmax_temperature);
        top_k(&scores, candidates.len())
            .into_iter()
            .map(|k| ScoredItem { item: candidates[k as usize], score: scores[k as usize] })
            .collect()
    }

    /// Items most like `item` (people who interacted with it also
    /// interacted with these), by cosine similarity.
    ///
    /// Similar-items models use cosine neighbours; others use what they have:
    /// EASE's item-to-item weights or the cosine of ALS item vectors.
    pub fn similar_items(&self, item: u32, k: usize) -> Vec<ScoredItem> {
        self.similar_items_filtered(item, k, None)
    }

    /// As [`Model::similar_items`], without the items `filter` rejects.
    pub fn similar_items_filtered(&self, item: u32, k: usize, filter: Option<ScoreFilter>) -> Vec<ScoredItem> {
        let mut scores = vec![0f32; self.items.len()];
        match (&self.components.neighbours, &self.components.collaborative) {
            (Some(links), _) | (None, Collaborative::Neighbours(links)) => links.accumulate(&[(item, 1.0)], &mut scores),
            (None, Collaborative::Ease(ease)) => ease.score(&[(item, 1.0)], &mut scores),
            (None, Collaborative::Als(als)) => {
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
                let target = als.item_vector(item);
                let target_norm = norm(target);
                for (j, s) in scores.iter_mut().enumerate() {
                    let other = als.item_vector(j as u32);
                    *s = target.iter().zip(other).map(|(a, b)| a * b).sum::<f32>() / (target_norm * norm(other));
                }
            }
            (None, Collaborative::None) => {}
        }
        let popularity = popularity_feature(&self.components.popularity);
        for (s, p) in scores.iter_mut().zip(&popularity) {
            *s += 1e-4 * p;
        }
        scores[item as usize] = f32::NEG_INFINITY;
        softmax_in_place(&mut scores, self.hyperparameters.softmax_temperature);
        if let Some(filter) = filter {
            filter(&mut scores);
        }
        top_k(&scores, k).into_iter().map(|i| ScoredItem { item: i, score: scores[i as usize] }).collect()
    }

    /// Unnormalised scores for every item (higher is better).
    pub fn raw_scores(&self, history: &[HistoryEvent], recent: &[HistoryEvent], context: &Context, out: &mut [f32]) {
        let profile = self.profile(history, recent);
        self.score_profile(&profile, context, self.blend_for(&profile, context), out);
    }

    /// Whether the request places the user somewhere their history is not:
    /// more than [`MOVED_ON_KM`] from their last located item (with
    /// `use_location` on). Proximity then counts from the request.
    pub fn moved_away(&self, profile: &Profile, context: &Context) -> bool {
        match (profile.location, context.location) {
            (Some(last), Some(now)) => self.hyperparameters.use_location && distance_km(last.0, last.1, now.0, now.1) > MOVED_ON_KM,
            _ => false,
        }
    }

    /// Whether the request comes more than
    /// [`new_outing_after_hours`](crate::Hyperparameters::new_outing_after_hours)
    /// after the user's newest event (0 hours: never): their last outing is
    /// over, and what they did last says less about what comes next.
    pub fn on_a_new_outing(&self, profile: &Profile, context: &Context) -> bool {
        let after_hours = self.hyperparameters.new_outing_after_hours;
        match (profile.newest, context.time) {
            (Some(newest), Some(now)) if after_hours > 0.0 => (now - newest) as f64 > after_hours as f64 * 3600.0,
            _ => false,
        }
    }

    /// Whether the user has moved on from their history, in place
    /// ([`Model::moved_away`]) or in time ([`Model::on_a_new_outing`]):
    /// [`Model::moved_on_blend`] then weighs the signals.
    pub fn moved_on(&self, profile: &Profile, context: &Context) -> bool {
        self.moved_away(profile, context) || self.on_a_new_outing(profile, context)
    }

    /// The blend that scores `profile` in `context`.
    pub fn blend_for(&self, profile: &Profile, context: &Context) -> &Blend {
        match &self.moved_on_blend {
            Some(moved) if self.moved_on(profile, context) => moved,
            _ => &self.blend,
        }
    }

    /// The blended score of every item for `profile` in `context`.
    pub fn score_profile(&self, profile: &Profile, context: &Context, blend: &Blend, out: &mut [f32]) {
        FEATURE_BUFFERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let n = self.items.len();
            let features = match cell.as_mut() {
                Some(buffers) if buffers.values[0].len() == n => buffers,
                _ => cell.insert(FeatureBuffers::new(n)),
            };
            let collaborative_scale = self.fill_features(profile, context, blend, features, false);
            // Model-wide signals are read where they live, not copied per query.
            let derived = self.derived();
            let local_events = if blend.get(Feature::LocalEvent) != 0.0 { self.local_events(context) } else { None };
            let sources: Vec<(f32, &[f32])> = Feature::ALL
                .into_iter()
                .filter(|&feature| blend.get(feature) != 0.0)
                .filter_map(|feature| {
                    let weight = blend.get(feature);
                    Some(match feature {
                        Feature::Collaborative => (weight * collaborative_scale, features.written(feature)?),
                        Feature::Popularity => (weight, derived.popularity.as_slice()),
                        Feature::Trending => (weight, self.components.trending.as_slice()),
                        // Without a moment in the context these signals are 0.
                        Feature::Season => (weight, self.season(crate::context::month_of(context.time?))),
                        Feature::TimeOfDay => (weight, self.time_of_day(context.hour?)),
                        Feature::LocalEvent => (weight, local_events.as_deref()?),
                        // Added at their items below.
                        _ if feature.sparse() => return None,
                        // Signals nothing wrote are zero for this query.
                        _ => (weight, features.written(feature)?),
                    })
                })
                // Nearness signals kept dense are blended with them.
                .chain(features.kept.iter().filter_map(|(feature, kept)| match &**kept {
                    NearSignal::Dense(values) => Some((blend.get(*feature), values.as_slice())),
                    NearSignal::Sparse { .. } => None,
                }))
                .collect();
            blend_sources(&sources, out);
            for feature in Feature::ALL.into_iter().filter(|f| f.sparse() && blend.get(*f) != 0.0) {
                let weight = blend.get(feature);
                if let Some((values, items)) = features.sparse_written(feature) {
                    items.iter().for_each(|&i| out[i as usize] += weight * values[i as usize]);
                }
                for (_, kept) in features.kept.iter().filter(|(kept_feature, _)| *kept_feature == feature) {
                    if let NearSignal::Sparse { items, values } = &**kept {
                        items.iter().zip(values).for_each(|(&i, &v)| out[i as usize] += weight * v);
                    }
                }
            }
        })
    }

    /// Replaces the hour-of-day profile (forgetting what was derived from
    /// the old one) and returns the old one.
    pub(crate) fn replace_hourly(&mut self, hourly: TimeProfile) -> TimeProfile {
        self.derived = std::sync::OnceLock::new();
        std::mem::replace(&mut self.components.hourly, hourly)
    }

    fn derived(&self) -> &Derived {
        self.derived.get_or_init(|| {
            let traits = TraitIds::new(&self.item_meta);
            let mut cold_by_city = vec![Vec::new(); traits.cities.len()];
            let mut cold_without_city = Vec::new();
            for &item in &self.components.cold_items {
                match traits.item_city.get(item as usize).copied().flatten() {
                    Some(city) => cold_by_city[city as usize].push(item),
                    None => cold_without_city.push(item),
                }
            }
            let places = PlaceGrid::new(&self.item_meta);
            Derived {
                popularity: popularity_feature(&self.components.popularity),
                event_type_weights: self.hyperparameters.weights_for(&self.event_types),
                // Room for every item's place, and as many from requests.
                nearness_scales: Kept::new(places.items.len() + REQUEST_PLACES),
                nearby: KeptNearness::new(nearby_places(places.items.len())),
                proximity: KeptNearness::new(nearby_places(places.items.len())),
                item_places: self.item_meta.iter().filter_map(|meta| meta.location.map(place_key)).collect(),
                places,
                traits,
                cold_by_city,
                cold_without_city,
                ..Derived::default()
            }
        })
    }

    /// Every item's season signal in `month` (0 = January): how much more it
    /// is visited then, or ±1 in or out of season where its seasons are known.
    fn season(&self, month: usize) -> &[f32] {
        let month = month % 12;
        self.derived().seasons[month].get_or_init(|| {
            let mut out = vec![0f32; self.items.len()];
            self.components.monthly.fill(month, &mut out);
            for (value, meta) in out.iter_mut().zip(&self.item_meta) {
                if meta.season_months != 0 {
                    *value = if meta.season_months & (1 << month) != 0 { 1.0 } else { -1.0 };
                }
            }
            out
        })
    }

    /// Every item's time-of-day signal at `hour` (UTC, 0–23).
    fn time_of_day(&self, hour: usize) -> &[f32] {
        let hour = hour.min(23);
        self.derived().hours[hour].get_or_init(|| {
            let mut out = vec![0f32; self.items.len()];
            self.components.hourly.fill(hour, &mut out);
            out
        })
    }

    /// The full query: the user's history and recent events, the request's
    /// context, a filter, promotions, and `extra` items the model has never
    /// seen (attractions added after training).
    ///
    /// Items without interactions — the model's cold items and the extras —
    /// have no collaborative signal, so they are explored: up to
    /// `exploration_weight × k` of the `k` slots (every `1 / weight`-th
    /// position) go to those that resemble the user's items most (category,
    /// city, distance; at least half alike). A user without history resembles
    /// everything by half, so new items reach everyone a little.
    ///
    /// Each promotion takes `share × k` slots (evenly spread) for the best
    /// items its own filter allows; the query's filter applies to the other
    /// slots (as the managed service does).
    pub fn query(&self, query: &Query) -> Vec<RankedCandidate> {
        let k = query.k;
        let profile = self.profile(query.history, query.recent);
        let n = self.items.len();
        let mut scores = vec![0f32; n + query.extra.len()];
        self.score_profile(&profile, &query.context, self.blend_for(&profile, &query.context), &mut scores[..n]);
        // Extras not explored rank below every known item.
        if !query.extra.is_empty() {
            let lowest = scores[..n].iter().copied().filter(|s| s.is_finite()).fold(0f32, f32::min);
            scores[n..].iter_mut().for_each(|s| *s = lowest - 1.0);
        }
        if query.exclude_seen {
            profile.seen.iter().for_each(|&i| scores[i as usize] = f32::NEG_INFINITY);
        }
        // Scores before the filter, for promotions and the softmax; copied
        // only when a filter or a promotion will change `scores`.
        let unfiltered = (query.filter.is_some() || !query.promotions.is_empty()).then(|| scores.clone());
        if let Some(filter) = query.filter {
            filter(&mut scores[..n]);
        }

        let mut taken: Vec<(usize, Option<usize>)> = Vec::new();
        for (index, promotion) in query.promotions.iter().enumerate() {
            let slots =
                ((promotion.share * k as f32).round() as usize).max(usize::from(promotion.share > 0.0)).min(k.saturating_sub(taken.len()));
            let unfiltered = unfiltered.as_deref().expect("copied when there are promotions");
            let best: Vec<usize> = match promotion.items {
                PromotedItems::Filter(filter) => {
                    let mut allowed = unfiltered.to_vec();
                    allowed[n..].iter_mut().for_each(|s| *s = f32::NEG_INFINITY);
                    filter(&mut allowed[..n]);
                    taken.iter().for_each(|&(i, _)| allowed[i] = f32::NEG_INFINITY);
                    top_k(&allowed, slots).into_iter().map(|i| i as usize).collect()
                }
                PromotedItems::Mask(mask) => {
                    let items: Vec<usize> =
                        mask.allowed_items().map(|i| i as usize).filter(|&i| i < n && !taken.iter().any(|t| t.0 == i)).collect();
                    let allowed: Vec<f32> = items.iter().map(|&i| unfiltered[i]).collect();
                    top_k(&allowed, slots).into_iter().map(|at| items[at as usize]).collect()
                }
            };
            taken.extend(best.into_iter().map(|i| (i, Some(index))));
        }
        let cold: Vec<usize> = self.components.cold_items.iter().map(|&i| i as usize).chain(n..n + query.extra.len()).collect();
        let explore_slots = k.saturating_sub(taken.len());
        let explored: Vec<usize> = self
            .explored(&profile, &cold, query.extra, &scores, explore_slots)
            .into_iter()
            .filter(|c| !taken.iter().any(|t| t.0 == *c))
            .collect();

        let mut rest = scores;
        taken.iter().map(|t| t.0).chain(explored.iter().copied()).for_each(|i| rest[i] = f32::NEG_INFINITY);
        let mut ranked: Vec<(usize, Option<usize>)> =
            top_k(&rest, k.saturating_sub(taken.len() + explored.len())).into_iter().map(|i| (i as usize, None)).collect();
        // Explored, then promoted, items take evenly spread slots and a score
        // just under the item before them. Without a filter `rest` differs
        // from the scores only at those items, which get their score below.
        let mut final_scores = unfiltered.unwrap_or(rest);
        let mut insert = |ranked: &mut Vec<(usize, Option<usize>)>, items: &[(usize, Option<usize>)], share: f32| {
            let every = (1.0 / share.max(1e-3)).round().max(1.0) as usize;
            for (j, &(item, promotion)) in items.iter().enumerate() {
                let at = ((j + 1) * every - 1).min(ranked.len());
                let above = if at == 0 { None } else { Some(final_scores[ranked[at - 1].0]) };
                final_scores[item] = above.map_or(final_scores[item], |s| s - 1e-6 * s.abs().max(1.0));
                ranked.insert(at, (item, promotion));
            }
        };
        let explored: Vec<(usize, Option<usize>)> = explored.into_iter().map(|i| (i, None)).collect();
        insert(&mut ranked, &explored, self.hyperparameters.exploration_weight);
        let promoted_share = taken.len() as f32 / k.max(1) as f32;
        insert(&mut ranked, &taken, promoted_share);
        // Only the returned items need their probability: one pass for the
        // softmax's normaliser, not a probability per catalogue item.
        let softmax = Softmax::over(&final_scores, self.hyperparameters.softmax_temperature);
        ranked
            .into_iter()
            .take(k)
            .map(|(i, promotion)| RankedCandidate {
                candidate: if i < n { Candidate::Known(i as u32) } else { Candidate::Extra(i - n) },
                score: softmax.map_or(final_scores[i], |s| s.probability(final_scores[i])),
                promotion,
            })
            .collect()
    }

    /// The cold items (indices into the scores: model items, then extras)
    /// that get exploration slots, best match first.
    fn explored(&self, profile: &Profile, cold: &[usize], extra: &[ItemMeta], scores: &[f32], k: usize) -> Vec<usize> {
        let weight = self.hyperparameters.exploration_weight;
        let slots = ((weight * k as f32).round() as usize).min(cold.len());
        if slots == 0 || k < 2 {
            return Vec::new();
        }
        let n = self.items.len();
        let total: f32 = profile.weighted.iter().map(|(_, w)| w).sum();
        // The user's items, prepared once: each cold item is compared with
        // all of them, by positions in the user's own cities and categories
        // (numbers per model, so no string is compared per request).
        let derived = self.derived();
        let mut traits = Traits::default();
        let anchors: Vec<Anchor> = profile
            .weighted
            .iter()
            .filter_map(|&(other, weight)| {
                let meta = self.item_meta.get(other as usize)?;
                let (city, categories) = derived.traits.of_item(other);
                Some(Anchor::new(meta, city, categories, weight, &mut traits))
            })
            .collect();
        // When every one of the user's items has a city, a cold item in
        // another city shares neither city nor (but across a city's edge)
        // nearness with them, so it cannot reach the 0.5 a slot needs: only
        // the user's cities, cold items without a city and extras are compared.
        let in_users_cities: Option<Vec<usize>> = (total > 0.0 && anchors.iter().all(|a| a.described.city.is_some())).then(|| {
            traits
                .cities
                .iter()
                .filter_map(|&city| derived.cold_by_city.get(city as usize))
                .chain([&derived.cold_without_city])
                .flatten()
                .map(|&i| i as usize)
                .chain(cold.iter().copied().filter(|&c| c >= n))
                .collect()
        });
        let cold = in_users_cities.as_deref().unwrap_or(cold);
        let resemblance = |c: usize| -> f32 {
            if total <= 0.0 {
                return 0.5;
            }
            let (meta, described) = if c < n {
                let (city, categories) = derived.traits.of_item(c as u32);
                (&self.item_meta[c], traits.describe(city, categories, categories.len()))
            } else {
                let meta = &extra[c - n];
                let (city, categories, count) = derived.traits.of_other(meta);
                (meta, traits.describe(city, &categories, count))
            };
            let place = meta.location.map(|(lat, lon)| (lat.to_radians(), lon.to_radians()));
            anchors.iter().map(|a| a.weight * a.similarity(&described, place)).sum::<f32>() / total
        };
        let mut candidates: Vec<(usize, f32)> =
            cold.iter().filter(|&&c| scores[c] > f32::NEG_INFINITY).map(|&c| (c, resemblance(c))).filter(|(_, r)| *r >= 0.5).collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        candidates.into_iter().take(slots).map(|(c, _)| c).collect()
    }

    /// The user's profile: per-item weights (event type × recency, relative to
    /// the newest event), the newest distinct items and the last known location.
    pub fn profile(&self, history: &[HistoryEvent], recent: &[HistoryEvent]) -> Profile {
        let hp = &self.hyperparameters;
        let total = history.len() + recent.len();
        let skip = total.saturating_sub(hp.max_history);
        let events: Vec<&HistoryEvent> = history.iter().chain(recent).skip(skip).filter(|e| (e.item as usize) < self.items.len()).collect();
        let newest = events.iter().map(|e| e.timestamp).max().unwrap_or(0);
        let half_life = hp.recency_half_life_days as f64 * 86_400.0;
        let type_weights = &self.derived().event_type_weights;
        let entries: Vec<(u32, f32, f32)> = events
            .iter()
            .map(|e| {
                let type_weight = type_weights.get(e.event_type as usize).copied().unwrap_or(hp.default_event_weight);
                let age = (newest - e.timestamp).max(0) as f64;
                let decay = (0.5f64).powf(age / half_life) as f32;
                (e.item, type_weight * decay, hp.value_factor(e.value, self.components.value_scale))
            })
            .collect();
        let mut seen: Vec<u32> = entries.iter().map(|e| e.0).collect();
        seen.sort_unstable();
        seen.dedup();
        let mut weighted = crate::recipe::item_weights(entries);
        // Items whose events have all decayed to nothing (a history of years
        // under a half-life of weeks) move no score, but multiplied into the
        // scores their weights fall below f32's normal range, and subnormal
        // arithmetic costs a CPU up to a hundred times a normal one: such a
        // user took 15 times as long as others to score.
        let largest = weighted.iter().fold(0f32, |m, &(_, w)| m.max(w.abs()));
        weighted.retain(|&(_, w)| w.abs() >= largest * NEGLIGIBLE_PROFILE_WEIGHT);

        // Newest distinct items by time (ties: later in the list is newer).
        let mut by_time: Vec<(usize, &HistoryEvent)> = events.iter().copied().enumerate().collect();
        by_time.sort_by_key(|(position, e)| (std::cmp::Reverse(e.timestamp), std::cmp::Reverse(*position)));
        // Only items of the current session (each step within the transition
        // gap of the next) say what comes next.
        let gap = (hp.transition_max_gap_hours as f64 * 3600.0) as i64;
        let mut last: Vec<(u32, f32)> = Vec::with_capacity(LAST_ITEMS);
        let mut session_open = true;
        let mut previous_time = newest;
        let mut location = None;
        for (_, e) in &by_time {
            if location.is_none() {
                location = self.item_meta.get(e.item as usize).and_then(|m| m.location);
            }
            session_open &= previous_time - e.timestamp <= gap;
            previous_time = e.timestamp;
            if session_open && last.len() < LAST_ITEMS && !last.iter().any(|(i, _)| *i == e.item) {
                last.push((e.item, 0.5f32.powi(last.len() as i32)));
            }
            if (last.len() == LAST_ITEMS || !session_open) && location.is_some() {
                break;
            }
        }
        Profile { weighted, last, location, seen, newest: (!events.is_empty()).then_some(newest) }
    }

    /// Every signal for every item, before blending. Signals whose weight in
    /// `blend` is zero are left at zero (not computed).
    pub fn features(&self, profile: &Profile, context: &Context, blend: &Blend, f: &mut FeatureBuffers) {
        self.fill_features(profile, context, blend, f, true);
    }

    /// As [`Model::features`]; unless `complete`, the signals that do not
    /// depend on the user (popularity, trending, season, time of day, local
    /// events: the same vector for every query in a given month, hour and
    /// day) are not copied
    /// (the query's blend reads them where they live), signals that are zero
    /// for this query are neither zeroed nor blended, and the collaborative
    /// signal is left unscaled: its standardising factor is returned instead
    /// (the blend applies it), saving passes over the catalogue per query.
    fn fill_features(&self, profile: &Profile, context: &Context, blend: &Blend, f: &mut FeatureBuffers, complete: bool) -> f32 {
        let on = |feature: Feature| blend.get(feature) != 0.0;
        // A complete set is read whole (training reads every signal); a
        // query blends only the signals written below, zeroed as they are.
        f.start(|feature| complete && on(feature));
        let mut collaborative_scale = 1.0;
        let c = &self.components;
        if on(Feature::Collaborative) && !profile.weighted.is_empty() {
            let out = f.signal(Feature::Collaborative);
            match &c.collaborative {
                Collaborative::None => {}
                Collaborative::Ease(ease) => ease.score(&profile.weighted, out),
                Collaborative::Als(als) if self.hyperparameters.als_half_precision => als.score_half_precision(&profile.weighted, out),
                Collaborative::Als(als) => als.score(&profile.weighted, out),
                Collaborative::Neighbours(links) => links.accumulate(&profile.weighted, out),
            }
            if complete {
                standardise_scale(out);
            } else {
                collaborative_scale = standardising_factor(out);
            }
        }
        if on(Feature::Taste) {
            self.taste(profile, f.signal(Feature::Taste));
        }
        if let (true, Some(transitions)) = (on(Feature::Sequence) && !profile.last.is_empty(), &c.transitions) {
            if complete {
                transitions.accumulate(&profile.last, f.signal(Feature::Sequence));
            } else {
                let (out, touched) = f.sparse_signal(Feature::Sequence);
                transitions.accumulate_recording(&profile.last, out, touched);
            }
        }
        if complete && on(Feature::Popularity) {
            f.signal(Feature::Popularity).copy_from_slice(&self.derived().popularity);
        }
        if complete && on(Feature::Trending) {
            f.signal(Feature::Trending).copy_from_slice(&c.trending);
        }
        // Where the user is: their last located item, unless the request
        // places them somewhere else altogether (a new trip) — then there.
        let moved_away = self.moved_away(profile, context);
        let here =
            if moved_away { context.location } else { profile.location.or(context.location.filter(|_| self.hyperparameters.use_location)) };
        // From the request's place, nearness is kept per place, as nearby's
        // is (the user's last item differs from user to user).
        let from_request = moved_away || profile.location.is_none();
        if let (true, Some(here)) = (on(Feature::Proximity), here) {
            if complete {
                let out = f.signal(Feature::Proximity);
                self.nearness(here, 1.0, |i, v| out[i as usize] = v);
            } else if let Some(origin) = self.nearness_origin(here, 1.0) {
                let signal = if from_request {
                    self.kept_nearness_from(&self.derived().proximity, origin)
                } else {
                    // From the user's last item: built for this query alone.
                    std::sync::Arc::new(self.near_signal(origin))
                };
                f.kept.push((Feature::Proximity, signal));
            }
        }
        if on(Feature::Repeat) {
            let strongest = profile.weighted.iter().fold(0f32, |m, &(_, w)| m.max(w));
            if strongest > 0.0 {
                if complete {
                    let out = f.signal(Feature::Repeat);
                    for &(item, weight) in &profile.weighted {
                        out[item as usize] = weight / strongest;
                    }
                } else {
                    // The profile's items are distinct.
                    let (out, touched) = f.sparse_signal(Feature::Repeat);
                    for &(item, weight) in &profile.weighted {
                        out[item as usize] = weight / strongest;
                        touched.push(item);
                    }
                }
            }
        }
        if let (true, Some(now)) = (on(Feature::Nearby), context.location) {
            let scales = self.hyperparameters.nearby_scale;
            // Proximity may already count from here, at the same scale.
            let as_proximity = on(Feature::Proximity) && here == Some(now) && scales == 1.0;
            let kept_proximity = f.kept.iter().find(|(feature, _)| *feature == Feature::Proximity).map(|(_, kept)| kept.clone());
            if let (true, Some(kept)) = (as_proximity, kept_proximity) {
                f.kept.push((Feature::Nearby, kept));
            } else if as_proximity {
                // A query keeps what proximity counted (above), so here
                // it counted nothing: no item is located.
                if complete {
                    f.copy_signal(Feature::Proximity, Feature::Nearby);
                }
            } else if let Some(origin) = self.nearness_origin(now, scales) {
                let kept = self.kept_nearness_from(&self.derived().nearby, origin);
                if complete {
                    kept.write_into(f.signal(Feature::Nearby));
                } else {
                    // Blended from where it is kept.
                    f.kept.push((Feature::Nearby, kept));
                }
            }
        }
        if let (true, true, Some(time)) = (complete, on(Feature::Season), context.time) {
            f.signal(Feature::Season).copy_from_slice(self.season(crate::context::month_of(time)));
        }
        if let (true, true, Some(hour)) = (complete, on(Feature::TimeOfDay), context.hour) {
            f.signal(Feature::TimeOfDay).copy_from_slice(self.time_of_day(hour));
        }
        if let (true, true, Some(events)) = (complete, on(Feature::LocalEvent), self.local_events(context)) {
            f.signal(Feature::LocalEvent).copy_from_slice(&events);
        }
        collaborative_scale
    }

    /// Every item's local-event signal for the events running at the
    /// request's moment (`None` without events): 1 for an event's host,
    /// decaying over walking distance around its place. The same for every
    /// user that day, so it is made once per set of events and kept.
    fn local_events(&self, context: &Context) -> Option<std::sync::Arc<[f32]>> {
        if context.events.is_empty() {
            return None;
        }
        let key = context
            .events
            .iter()
            .map(|e| {
                let (lat, lon) = e.location.unwrap_or((f64::NAN, f64::NAN));
                (e.item.unwrap_or(u32::MAX), lat.to_bits(), lon.to_bits())
            })
            .collect();
        Some(self.derived().local_events.get_or_insert_with(key, || {
            let mut out = vec![0f32; self.items.len()];
            for event in &context.events {
                if let Some(host) = event.item.filter(|&i| (i as usize) < out.len()) {
                    out[host as usize] = 1.0;
                }
                let place = event.location.or_else(|| event.item.and_then(|i| self.item_meta.get(i as usize)).and_then(|m| m.location));
                if let Some(place) = place {
                    // Walking distance: half-life-like decay over 0.5 km, nothing beyond 5 km.
                    let places = &self.derived().places;
                    for run in places.near(place, 5.0) {
                        for (at, squared) in run.clone().zip(places.squared_km_over(place, run)) {
                            if squared < 25.0 {
                                let value = &mut out[places.items[at] as usize];
                                *value = value.max(exp_nonpositive(-squared.sqrt() / 0.5));
                            }
                        }
                    }
                }
            }
            out.into()
        }))
    }

    /// `out[i]` = the share of the profile's weight in item i's categories
    /// (averaged over them; an item of several categories splits its weight
    /// among them on the user's side too), on the log scale of
    /// `taste_smoothing`. 0 for items without categories.
    fn taste(&self, profile: &Profile, out: &mut [f32]) {
        let traits = &self.derived().traits;
        if traits.categories.is_empty() {
            return;
        }
        // One slot more, always 0: the "only category" of items with none or several.
        let mut share = vec![0f32; traits.categories.len() + 1];
        let mut total = 0f32;
        for &(item, weight) in &profile.weighted {
            let categories = traits.categories_of(item as usize);
            for &category in categories {
                share[category as usize] += weight / categories.len() as f32;
            }
            total += if categories.is_empty() { 0.0 } else { weight };
        }
        if total <= 0.0 {
            return;
        }
        share.iter_mut().for_each(|s| *s /= total);
        let smoothing = self.hyperparameters.taste_smoothing;
        if smoothing > 0.0 {
            let unit = (1.0 / smoothing).ln_1p();
            share.iter_mut().for_each(|s| *s = (*s / smoothing).ln_1p() / unit);
        }
        // Most items have one category: a lookup each, in one pass.
        gather(&share, &traits.only_category, out);
        for &item in &traits.several_categories {
            let several = traits.categories_of(item as usize);
            out[item as usize] = several.iter().map(|&c| share[c as usize]).sum::<f32>() / several.len() as f32;
        }
    }

    /// Nearness from a request's place (the nearby signal, or proximity
    /// when the request places the user), where `kept` keeps it (see
    /// [`KeptNearness`]), or built now.
    fn kept_nearness_from(&self, kept: &KeptNearness, origin: NearnessOrigin) -> std::sync::Arc<NearSignal> {
        let key = origin.key();
        if let Some(signal) = kept.signals.get(&key) {
            return signal;
        }
        let signal = std::sync::Arc::new(self.near_signal(origin));
        if !kept.asked.insert_new(key) {
            kept.signals.insert(key, signal.clone());
        }
        signal
    }

    /// Nearness from the origin (see [`Model::nearness`]) as a signal of its
    /// own: dense when the box around the reach holds half the catalogue
    /// (written in place, with no item list to build first), else the items
    /// in reach and their values.
    fn near_signal(&self, origin: NearnessOrigin) -> NearSignal {
        let n = self.items.len();
        let runs = self.runs_in_reach(origin);
        let in_box: usize = runs.iter().map(|run| run.len()).sum();
        // Written without a branch per item: a share of a box's items are
        // out of reach (its corners, and the rest of each strip's band of
        // latitude), in no order a branch predictor could learn.
        if in_box * 2 >= n {
            let mut dense = vec![0f32; n];
            self.nearness_over(origin, runs, |items, nearness| {
                // Out of reach (-1) writes the 0 that is there.
                items.iter().zip(nearness).for_each(|(&i, &v)| dense[i as usize] = v.max(0.0));
            });
            NearSignal::Dense(dense)
        } else {
            let (mut items, mut values) = (vec![0u32; in_box], vec![0f32; in_box]);
            let mut len = 0;
            self.nearness_over(origin, runs, |run_items, nearness| {
                for (&i, &v) in run_items.iter().zip(nearness) {
                    // Written in any case, kept when in reach.
                    (items[len], values[len]) = (i, v);
                    len += usize::from(v >= 0.0);
                }
            });
            items.truncate(len);
            values.truncate(len);
            NearSignal::Sparse { items, values }
        }
    }

    /// `write(i, exp(-distance(here, item i) / scale))` for each located
    /// item within [`NEARNESS_REACH`] scales of `here`, once (the others'
    /// nearness would be below e⁻¹²: 0).
    /// The scale is `scales` times the distance to the K-th nearest located
    /// item, so "near" means the same in a theme park, a city and a country;
    /// `proximity_km` caps it from below.
    ///
    /// Only the items in a box around `here` are looked at ([`PlaceGrid`]):
    /// the items of here's city, not the whole catalogue.
    ///
    /// Nearness counts from `here` rounded to [`Model::nearness_origin`]:
    /// a traveller a few steps on shares the scale found, and the signal
    /// kept, for where they were.
    fn nearness(&self, here: (f64, f64), scales: f32, write: impl FnMut(u32, f32)) {
        if let Some(origin) = self.nearness_origin(here, scales) {
            self.nearness_from(origin, write);
        }
    }

    /// `here` rounded to the centre of a cell at most 1/64 of its nearness
    /// scale wide (a power of two in km), and the scale there; an item's
    /// own place as it is (the item there is at distance 0: the
    /// attraction the user is at comes first, not one a metre off). Nearness
    /// counted from the centre is within about e^±1.2 % of nearness counted
    /// from here, for every item: the centre is at most 1.1 % of the scale
    /// away (and the flat-earth distance's east-west scale, the cosine at
    /// the centre, adds a little far out).
    ///
    /// The scale (from the K-th nearest item, [`Model::kth_nearest_squared_km`])
    /// decides the cell and is found at the cell's centre, so the cell is
    /// found coarse to fine: a cell too wide for the scale at its centre
    /// gives way to the cell that scale asks for, until one fits. Scales are
    /// kept per centre, so each step after the first query there is a
    /// lookup. Everything found is a function of the centre alone: the same
    /// whichever query asked first. None without located items.
    fn nearness_origin(&self, here: (f64, f64), scales: f32) -> Option<NearnessOrigin> {
        let derived = self.derived();
        if derived.places.items.is_empty() {
            return None;
        }
        let floor_km = (self.hyperparameters.proximity_km * 0.01).max(1e-6);
        // The K-th nearest distance at a place, kept; searched from a box as
        // wide as `start_km` the first time.
        let kth_at = |place: (f64, f64), start_km: f32| {
            derived.nearness_scales.get_or_insert_with(place_key(place), || self.kth_nearest_squared_km(place, start_km)).sqrt()
        };
        let first_box_km = self.hyperparameters.proximity_km.max(0.1);
        if derived.item_places.contains(&place_key(here)) {
            return Some(NearnessOrigin { place: here, scale_km: kth_at(here, first_box_km).max(floor_km) * scales });
        }
        let mut level = COARSEST_CELL_LEVEL;
        let mut coarser: Option<((f64, f64), f32)> = None;
        loop {
            let centre = cell_centre(here, (level as f64).exp2());
            // The K-th nearest is at most as far from here as from the
            // coarser cell's centre plus the way between: the box to search
            // first (a hair wider for the flat-earth distance).
            let start_km = coarser.map_or(first_box_km, |(before, kth)| (kth + flat_km(before, centre)) * 1.01 + 1e-3);
            let kth = kth_at(centre, start_km);
            let scale_km = kth.max(floor_km) * scales;
            // The widest cell this scale allows: 2^fits km, at most scale / 64.
            let fits = ((scale_km / 64.0).log2().floor() as i32).min(COARSEST_CELL_LEVEL);
            if fits >= level {
                return Some(NearnessOrigin { place: centre, scale_km });
            }
            (level, coarser) = (fits, Some((centre, kth)));
        }
    }

    /// `write(i, exp(-distance(origin, item i) / scale))` for each located
    /// item within [`NEARNESS_REACH`] scales of the origin (see [`Model::nearness`]).
    fn nearness_from(&self, origin: NearnessOrigin, mut write: impl FnMut(u32, f32)) {
        self.nearness_over(origin, self.runs_in_reach(origin), |items, nearness| {
            for (&item, &value) in items.iter().zip(nearness) {
                if value >= 0.0 {
                    write(item, value);
                }
            }
        });
    }

    /// The [`PlaceGrid`] runs that hold every item within [`NEARNESS_REACH`]
    /// scales of the origin (the box around that reach).
    fn runs_in_reach(&self, origin: NearnessOrigin) -> Vec<std::ops::Range<usize>> {
        self.derived().places.near(origin.place, NEARNESS_REACH * origin.scale_km)
    }

    /// The nearness from the origin over `runs` (the origin's
    /// [`Model::runs_in_reach`]) a run at a time: `each(items, nearness)`
    /// with the run's items and their nearness, -1 for those out of reach.
    fn nearness_over(&self, origin: NearnessOrigin, runs: Vec<std::ops::Range<usize>>, mut each: impl FnMut(&[u32], &[f32])) {
        let places = &self.derived().places;
        let (here, scale) = (origin.place, origin.scale_km);
        let (inverse, reach_km) = (1.0 / scale, NEARNESS_REACH * scale);
        let reach_squared = reach_km * reach_km;
        let mut nearness = Vec::new();
        let (here_lat, here_lon) = (here.0.to_radians() as f32, here.1.to_radians() as f32);
        let decay = Decay { here_lat, here_lon, cos_here: here_lat.cos(), inverse, reach_squared };
        for run in runs {
            // Every item of the run in one branch-free pass (-1 marks those
            // beyond reach), then written to the items.
            nearness.resize(run.len(), 0.0);
            decay_by_distance(&places.latitudes[run.clone()], &places.longitudes[run.clone()], decay, &mut nearness);
            each(&places.items[run], &nearness);
        }
    }

    /// The squared distance in km² from `here` to the K-th nearest located
    /// item: "near" is relative to how dense attractions are around here
    /// (K ≈ √located, 3 to 30). Found in a box around here widened until K
    /// of its items lie within its half-width: no item outside the box is
    /// nearer than that. The box starts `start_km` wide: where the answer
    /// is about known, one pass.
    fn kth_nearest_squared_km(&self, here: (f64, f64), start_km: f32) -> f32 {
        let places = &self.derived().places;
        let k = ((places.items.len() as f32).sqrt().round() as usize).clamp(3, 30).min(places.items.len());
        let mut half_width_km = start_km.max(1e-3);
        let mut squared = Vec::new();
        loop {
            let runs = places.near(here, half_width_km);
            let everything = runs.iter().map(|run| run.len()).sum::<usize>() == places.items.len();
            squared.clear();
            runs.into_iter().for_each(|run| squared.extend(places.squared_km_over(here, run)));
            let kth = kth_smallest(&mut squared, k);
            if everything || kth <= half_width_km * half_width_km {
                return kth;
            }
            half_width_km *= 4.0;
        }
    }
}

/// Values found once and read by the queries that share their key, under a
/// shared lock: the K-th nearest distances of [`Derived::nearness_scales`]
/// per place, a day's local-event signal per set of running events. Bounded:
/// emptied when full (a value is cheap to find again). A model's copy starts
/// empty.
#[derive(Debug)]
struct Kept<K, V> {
    capacity: usize,
    values: std::sync::RwLock<std::collections::HashMap<K, V>>,
}

/// Places from requests kept beside the items' own.
const REQUEST_PLACES: usize = 4096;

/// A place's exact coordinates, as the key its values are kept by.
fn place_key((latitude, longitude): (f64, f64)) -> (u64, u64) {
    (latitude.to_bits(), longitude.to_bits())
}

impl<K, V> Kept<K, V> {
    fn new(capacity: usize) -> Self {
        Self { capacity, values: Default::default() }
    }
}

/// Room for a few keys: the days' sets of local events a model is asked about at once.
impl<K, V> Default for Kept<K, V> {
    fn default() -> Self {
        Self::new(16)
    }
}

impl<K, V> Clone for Kept<K, V> {
    fn clone(&self) -> Self {
        Self::new(self.capacity)
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Kept<K, V> {
    fn get(&self, key: &K) -> Option<V> {
        self.values.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(key).cloned()
    }

    /// Stores `value` under `key` (emptying the map first when it is
    /// full); the value it replaced.
    fn insert(&self, key: K, value: V) -> Option<V> {
        let mut values = self.values.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if values.len() >= self.capacity {
            values.clear();
        }
        values.insert(key, value)
    }

    fn get_or_insert_with(&self, key: K, find: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key) {
            return value;
        }
        // Found without the lock held: other queries go on meanwhile.
        let value = find();
        self.insert(key, value.clone());
        value
    }
}

impl<K: std::hash::Hash + Eq> Kept<K, ()> {
    /// Adds `key`; whether it was not there (it may have been emptied out since).
    fn insert_new(&self, key: K) -> bool {
        self.get(&key).is_none() && self.insert(key, ()).is_none()
    }
}

/// Where nearness counts from: a request's place rounded to a cell
/// ([`Model::nearness_origin`]), and the nearness scale there in km.
#[derive(Debug, Clone, Copy)]
struct NearnessOrigin {
    place: (f64, f64),
    scale_km: f32,
}

impl NearnessOrigin {
    /// What a nearness signal from here is kept by: the place and the
    /// scale (which tells apart the scales asked for at one place).
    fn key(&self) -> ((u64, u64), u32) {
        (place_key(self.place), self.scale_km.to_bits())
    }
}

/// The widest cell a place rounds to for nearness: 2^8 = 256 km (a scale
/// past 16,000 km would ask for wider; it is served by these, only shared less).
const COARSEST_CELL_LEVEL: i32 = 8;

/// Kilometres in a degree of latitude.
const KM_PER_DEGREE: f64 = EARTH_KM as f64 * std::f64::consts::PI / 180.0;

/// The flat-earth distance in km between two places in degrees ([`squared_km`]).
fn flat_km(here: (f64, f64), there: (f64, f64)) -> f32 {
    let radians = |(latitude, longitude): (f64, f64)| (latitude.to_radians() as f32, longitude.to_radians() as f32);
    let here = radians(here);
    squared_km(here, here.0.cos(), radians(there)).sqrt()
}

/// The centre of the cell about `cell_km` × `cell_km` that holds `(latitude,
/// longitude)` (degrees): rows `cell_km` of latitude high, each cut into
/// cells `cell_km` wide at the row's centre (so cells stay square-ish
/// towards the poles, where a degree of longitude shrinks).
fn cell_centre((latitude, longitude): (f64, f64), cell_km: f64) -> (f64, f64) {
    let row_degrees = cell_km / KM_PER_DEGREE;
    let row = (((latitude / row_degrees).floor() + 0.5) * row_degrees).clamp(-90.0, 90.0);
    let column_degrees = row_degrees / row.to_radians().cos().max(1e-3);
    (row, ((longitude / column_degrees).floor() + 0.5) * column_degrees)
}

/// How far, in nearness scales, an item still counts as near: beyond, its
/// nearness is under e^-12 ≈ 6e-6, a few thousandths of a score even at the
/// largest blend weights learned, where the ranking does not move (NDCG@10
/// was the same to four places on every data set and protocol at 30 scales).
/// Every scale less is fewer items to count from a place seen for the first
/// time (12 instead of 30 halved them in the serving bench's city).
const NEARNESS_REACH: f32 = 12.0;

/// Located items in strips of latitude ([`STRIP_RADIANS`] wide), each strip
/// sorted by longitude: the items within some distance of a place lie in a
/// few runs of positions, one per strip, found by binary search — the items
/// of the place's city, not every item at its latitude the world over.
#[derive(Debug, Clone, Default)]
struct PlaceGrid {
    /// Radians.
    latitudes: Vec<f32>,
    /// Radians, ascending within each strip.
    longitudes: Vec<f32>,
    /// Model item index at each position.
    items: Vec<u32>,
    /// Each strip that holds items: its number ([`strip_of`]) and its first
    /// position, in ascending order.
    strips: Vec<(i32, usize)>,
}

/// The width of a [`PlaceGrid`] strip: about 64 km.
const STRIP_RADIANS: f32 = 0.01;

fn strip_of(latitude_radians: f32) -> i32 {
    (latitude_radians / STRIP_RADIANS).floor() as i32
}

impl PlaceGrid {
    fn new(items: &[ItemMeta]) -> Self {
        let mut located: Vec<(u32, f32, f32)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, meta)| meta.location.map(|(lat, lon)| (i as u32, lat.to_radians() as f32, lon.to_radians() as f32)))
            .collect();
        located.sort_by(|a, b| strip_of(a.1).cmp(&strip_of(b.1)).then(a.2.total_cmp(&b.2)).then(a.0.cmp(&b.0)));
        let mut strips: Vec<(i32, usize)> = Vec::new();
        for (position, &(_, latitude, _)) in located.iter().enumerate() {
            if strips.last().is_none_or(|&(strip, _)| strip != strip_of(latitude)) {
                strips.push((strip_of(latitude), position));
            }
        }
        Self {
            latitudes: located.iter().map(|l| l.1).collect(),
            longitudes: located.iter().map(|l| l.2).collect(),
            items: located.iter().map(|l| l.0).collect(),
            strips,
        }
    }

    /// Runs of positions that hold every item within `half_width_km` of
    /// `(latitude, longitude)` (degrees) by [`PlaceGrid::squared_km_over`]'s
    /// distance, and some items a little beyond: the box around the place,
    /// strip by strip.
    fn near(&self, (latitude, longitude): (f64, f64), half_width_km: f32) -> Vec<std::ops::Range<usize>> {
        let (here_lat, here_lon) = (latitude.to_radians() as f32, longitude.to_radians() as f32);
        // A hair wider, so that rounding never leaves out an item at the edge.
        let half = half_width_km / EARTH_KM * 1.001 + 1e-7;
        // The distance's east-west part is the longitude difference times
        // the cosine at here: near a pole, every longitude is near.
        let half_lon = half / here_lat.cos().max(1e-9);
        let first = self.strips.partition_point(|&(strip, _)| strip < strip_of(here_lat - half));
        let last = self.strips.partition_point(|&(strip, _)| strip <= strip_of(here_lat + half));
        (first..last)
            .filter_map(|s| {
                let start = self.strips[s].1;
                let end = self.strips.get(s + 1).map_or(self.items.len(), |next| next.1);
                let longitudes = &self.longitudes[start..end];
                let from = longitudes.partition_point(|&l| l < here_lon - half_lon);
                let to = longitudes.partition_point(|&l| l <= here_lon + half_lon);
                (to > from).then(|| start + from..start + to)
            })
            .collect()
    }

    /// Squared distances in km² from `(latitude, longitude)` (degrees) to the
    /// items at the positions `range`, in order. Equirectangular around the
    /// place: exact enough for nearness (under 1 % off within a few hundred
    /// km), a multiply-add per item instead of a haversine's trigonometry.
    /// Read from two slices, so loops over it vectorise.
    fn squared_km_over(&self, (latitude, longitude): (f64, f64), range: std::ops::Range<usize>) -> impl Iterator<Item = f32> + '_ {
        let (here_lat, here_lon) = (latitude.to_radians() as f32, longitude.to_radians() as f32);
        let cos_here = here_lat.cos();
        self.latitudes[range.clone()]
            .iter()
            .zip(&self.longitudes[range])
            .map(move |(&lat, &lon)| squared_km((here_lat, here_lon), cos_here, (lat, lon)))
    }
}

/// The squared distance in km² between two places in radians, east-west
/// scaled by `cos_here`, the cosine of here's latitude (see
/// [`PlaceGrid::squared_km_over`]). Inlined, so the loops over it vectorise.
#[inline(always)]
fn squared_km((here_lat, here_lon): (f32, f32), cos_here: f32, (lat, lon): (f32, f32)) -> f32 {
    let (dx, dy) = ((lon - here_lon) * cos_here, lat - here_lat);
    EARTH_KM * EARTH_KM * (dx * dx + dy * dy)
}

/// Where nearness counts from and how it decays (see [`decay_by_distance`]).
#[derive(Debug, Clone, Copy)]
struct Decay {
    /// Radians.
    here_lat: f32,
    here_lon: f32,
    cos_here: f32,
    /// 1 / the scale in km.
    inverse: f32,
    /// Beyond this squared distance in km², an item is out of reach.
    reach_squared: f32,
}

/// `out[j] = exp(-distance_j · inverse)` for the item at `(latitudes[j],
/// longitudes[j])` (radians), or -1 when it is out of reach ([`squared_km`]
/// from here). Compiled for AVX2 where there
/// is one: eight items an instruction, square root and exponential included.
#[multiversion(targets("x86_64+avx2"))]
fn decay_by_distance(latitudes: &[f32], longitudes: &[f32], decay: Decay, out: &mut [f32]) {
    let Decay { here_lat, here_lon, cos_here, inverse, reach_squared } = decay;
    for ((o, &lat), &lon) in out.iter_mut().zip(latitudes).zip(longitudes) {
        let squared = squared_km((here_lat, here_lon), cos_here, (lat, lon));
        let value = exp_nonpositive(-squared.sqrt() * inverse);
        *o = if squared <= reach_squared { value } else { -1.0 };
    }
}

/// The `k`-th smallest of `values` (1-based; `+inf` when there are fewer
/// than `k`), found by selection, which reorders them: linear time in any
/// order. (Keeping the smallest `k` sorted while scanning cost four times
/// as much: the items come sorted by longitude, so nearer and nearer
/// values arrive and nearly every one is inserted.)
fn kth_smallest(values: &mut [f32], k: usize) -> f32 {
    if k == 0 || values.len() < k {
        return f32::INFINITY;
    }
    *values.select_nth_unstable_by(k - 1, f32::total_cmp).1
}

/// Per-signal score vectors over the catalogue, reused across queries.
pub struct FeatureBuffers {
    pub values: [Vec<f32>; FEATURES],
    /// Which signals hold this query's values; the others are stale (a
    /// query skips the signals that are zero for it, e.g. Nearby without a
    /// location, instead of zeroing and blending them).
    written: [bool; FEATURES],
    /// Per sparse signal ([`Feature::sparse`]) of a query: the items it
    /// wrote. Its buffer is zero elsewhere when `clean`, so the next query
    /// zeroes those items only, and the blend adds it at those items only.
    touched: [Vec<u32>; FEATURES],
    clean: [bool; FEATURES],
    /// This query's nearness signals (nearby, or proximity from the
    /// request's place) where they are kept, when they were not written in
    /// their buffers: blended at their items like sparse signals, or, kept
    /// dense, with the catalogue-wide signals.
    kept: Vec<(Feature, std::sync::Arc<NearSignal>)>,
}

impl FeatureBuffers {
    pub fn new(items: usize) -> Self {
        Self {
            values: std::array::from_fn(|_| vec![0f32; items]),
            written: [false; FEATURES],
            touched: Default::default(),
            clean: [true; FEATURES],
            kept: Vec::new(),
        }
    }

    /// Starts a query: the signals `zeroed` says are zeroed now (and count
    /// as written); every other one is stale until [`FeatureBuffers::signal`].
    fn start(&mut self, zeroed: impl Fn(Feature) -> bool) {
        self.kept.clear();
        for (((values, written), clean), feature) in self.values.iter_mut().zip(&mut self.written).zip(&mut self.clean).zip(Feature::ALL) {
            *written = zeroed(feature);
            if *written {
                values.fill(0.0);
                *clean = false;
            }
        }
    }

    /// The signal's buffer, zeroed the first time it is asked for in a query.
    fn signal(&mut self, feature: Feature) -> &mut [f32] {
        let values = &mut self.values[feature as usize];
        if !std::mem::replace(&mut self.written[feature as usize], true) {
            values.fill(0.0);
        }
        // Written anywhere from here on.
        self.clean[feature as usize] = false;
        values
    }

    /// A sparse signal's buffer, zero everywhere (only the items the last
    /// query touched are zeroed, not the catalogue), and the list of items
    /// this query writes, which the writer keeps (without duplicates).
    fn sparse_signal(&mut self, feature: Feature) -> (&mut [f32], &mut Vec<u32>) {
        let f = feature as usize;
        let (values, touched) = (&mut self.values[f], &mut self.touched[f]);
        if std::mem::replace(&mut self.clean[f], true) {
            touched.iter().for_each(|&i| values[i as usize] = 0.0);
        } else {
            values.fill(0.0);
        }
        touched.clear();
        self.written[f] = true;
        (values, touched)
    }

    /// A sparse signal's values and the items that hold them, `None` when
    /// this query did not write it sparsely.
    fn sparse_written(&self, feature: Feature) -> Option<(&[f32], &[u32])> {
        let f = feature as usize;
        (self.written[f] && self.clean[f]).then(|| (self.values[f].as_slice(), self.touched[f].as_slice()))
    }

    /// `to` becomes a copy of `from`, written earlier in this query (or
    /// zeroed) in its buffer: a query's nearness signals are kept apart
    /// ([`FeatureBuffers::kept`]) and shared, not copied.
    fn copy_signal(&mut self, from: Feature, to: Feature) {
        debug_assert!(self.written[from as usize], "{from:?} is not written in this query");
        debug_assert!(self.sparse_written(from).is_none(), "{from:?} is written sparsely");
        assert!((from as usize) < (to as usize), "a signal is copied to a later one");
        let (from, to) = (from as usize, to as usize);
        let (before, after) = self.values.split_at_mut(to);
        after[0].copy_from_slice(&before[from]);
        self.written[to] = true;
        self.clean[to] = false;
    }

    /// The signal's values in this query, `None` when nothing wrote them (all zero).
    fn written(&self, feature: Feature) -> Option<&[f32]> {
        self.written[feature as usize].then(|| self.values[feature as usize].as_slice())
    }

    pub fn blend(&self, blend: &Blend, out: &mut [f32]) {
        let sources: Vec<(f32, &[f32])> = Feature::ALL
            .into_iter()
            .filter(|&feature| blend.get(feature) != 0.0)
            .filter_map(|feature| Some((blend.get(feature), self.written(feature)?)))
            .collect();
        blend_sources(&sources, out);
    }
}

/// `out = Σ weight · source` over `(weight, source)` pairs, a block of items
/// at a time so `out` stays in cache while every source is added.
#[multiversion(targets("x86_64+avx2"))]
fn blend_sources(sources: &[(f32, &[f32])], out: &mut [f32]) {
    const BLOCK: usize = 512;
    for (b, block) in out.chunks_mut(BLOCK).enumerate() {
        let range = b * BLOCK..b * BLOCK + block.len();
        match sources.split_first() {
            None => block.fill(0.0),
            Some((&(weight, first), rest)) => {
                for (o, v) in block.iter_mut().zip(&first[range.clone()]) {
                    *o = weight * v;
                }
                for &(weight, values) in rest {
                    for (o, v) in block.iter_mut().zip(&values[range.clone()]) {
                        *o += weight * v;
                    }
                }
            }
        }
    }
}

/// Divides by the standard deviation over the catalogue, so the
/// collaborative signal has the same scale for every user and model.
fn standardise_scale(values: &mut [f32]) {
    let inverse = standardising_factor(values);
    if inverse != 1.0 {
        values.iter_mut().for_each(|v| *v *= inverse);
    }
}

/// `1 / standard deviation` of `values` (1 when they do not vary).
fn standardising_factor(values: &[f32]) -> f32 {
    match summarise_finite(values) {
        Some(summary) if summary.std > 1e-12 => 1.0 / summary.std,
        _ => 1.0,
    }
}

/// An item a query may return: one the model knows, or one of the extra
/// items given with the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Candidate {
    Known(u32),
    Extra(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankedCandidate {
    pub candidate: Candidate,
    pub score: f32,
    /// Index of the promotion that placed it, if one did.
    pub promotion: Option<usize>,
}

/// Rejects items: sets the score of every item it does not allow to `-inf`.
pub type ScoreFilter<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// Slots reserved for items a filter allows (partner attractions, …).
pub struct Promotion<'a> {
    /// Share of the slots, 0..1.
    pub share: f32,
    pub items: PromotedItems<'a>,
}

/// Which items a promotion may fill its slots with.
#[derive(Clone, Copy)]
pub enum PromotedItems<'a> {
    /// Those this filter leaves above `-inf` (it sees every item's score).
    Filter(ScoreFilter<'a>),
    /// Those the mask allows: ranked among themselves, without a pass over
    /// the whole catalogue.
    Mask(&'a crate::filter::ItemMask),
}

/// Everything a recommendation query can say.
#[derive(Default)]
pub struct Query<'a> {
    pub history: &'a [HistoryEvent],
    pub recent: &'a [HistoryEvent],
    pub k: usize,
    pub exclude_seen: bool,
    pub context: Context,
    pub extra: &'a [ItemMeta],
    pub filter: Option<ScoreFilter<'a>>,
    pub promotions: Vec<Promotion<'a>>,
}

/// Every item's city and categories as numbers (per model), so comparing
/// two items' traits is comparing integers, not strings.
#[derive(Debug, Clone, Default)]
struct TraitIds {
    cities: std::collections::HashMap<String, u32>,
    categories: std::collections::HashMap<String, u32>,
    /// Per item: its city's number.
    item_city: Vec<Option<u32>>,
    /// Every item's distinct categories' numbers, one after another (item
    /// `i`'s from `category_starts[i]` to `category_starts[i + 1]`): one
    /// contiguous pass reads them all.
    category_starts: Vec<u32>,
    category_list: Vec<u32>,
    /// Per item: its one category's number, or the number of categories
    /// (one past the last: "none of them") when it has none or several.
    only_category: Vec<u32>,
    /// The items with several categories.
    several_categories: Vec<u32>,
}

impl TraitIds {
    fn new(items: &[ItemMeta]) -> Self {
        let mut ids = TraitIds { category_starts: vec![0], ..TraitIds::default() };
        for meta in items {
            let next = ids.cities.len() as u32;
            let city = meta.city.as_ref().map(|city| *ids.cities.entry(city.clone()).or_insert(next));
            let mut categories: Vec<u32> = Vec::with_capacity(meta.categories.len());
            for category in &meta.categories {
                let next = ids.categories.len() as u32;
                let id = *ids.categories.entry(category.clone()).or_insert(next);
                if !categories.contains(&id) {
                    categories.push(id);
                }
            }
            ids.item_city.push(city);
            ids.category_list.extend(categories);
            ids.category_starts.push(ids.category_list.len() as u32);
        }
        let none = ids.categories.len() as u32;
        for item in 0..items.len() {
            ids.only_category.push(match ids.categories_of(item) {
                [] => none,
                [only] => *only,
                _ => {
                    ids.several_categories.push(item as u32);
                    none
                }
            });
        }
        ids
    }

    fn of_item(&self, item: u32) -> (Option<u32>, &[u32]) {
        (self.item_city[item as usize], self.categories_of(item as usize))
    }

    fn categories_of(&self, item: usize) -> &[u32] {
        &self.category_list[self.category_starts[item] as usize..self.category_starts[item + 1] as usize]
    }

    /// The numbers of an item outside the model (added since training), and
    /// how many distinct categories it has in all: a city or category the
    /// model has never seen has no number (no user's item shares it).
    fn of_other(&self, meta: &ItemMeta) -> (Option<u32>, Vec<u32>, usize) {
        let city = meta.city.as_ref().and_then(|city| self.cities.get(city).copied());
        let mut known = Vec::new();
        let mut count = 0;
        for (k, category) in meta.categories.iter().enumerate() {
            if meta.categories[..k].contains(category) {
                continue;
            }
            count += 1;
            if let Some(&id) = self.categories.get(category) {
                known.push(id);
            }
        }
        (city, known, count)
    }
}

/// The cities and categories of a user's items, in the order first met: an
/// item is then described by positions in them (anything else is "none of these").
#[derive(Default)]
struct Traits {
    cities: Vec<u32>,
    /// At most 128 (a bit each); further categories are not told apart.
    categories: Vec<u32>,
}

/// An item by the user's traits: its city's position, a bit per user
/// category it has, and how many categories it has in all.
struct Described {
    city: Option<usize>,
    categories: u128,
    category_count: usize,
}

impl Traits {
    fn add(&mut self, city: Option<u32>, categories: &[u32]) {
        if let Some(city) = city.filter(|c| !self.cities.contains(c)) {
            self.cities.push(city);
        }
        for &category in categories {
            if self.categories.len() < 128 && !self.categories.contains(&category) {
                self.categories.push(category);
            }
        }
    }

    /// `categories` distinct, `category_count` counting those without a number too.
    fn describe(&self, city: Option<u32>, categories: &[u32], category_count: usize) -> Described {
        let mut bits = 0u128;
        for category in categories {
            if let Some(bit) = self.categories.iter().position(|c| c == category) {
                bits |= 1 << bit;
            }
        }
        let city = city.and_then(|city| self.cities.iter().position(|&c| c == city));
        Described { city, categories: bits, category_count }
    }
}

/// One of the user's items, as cold items are compared with it.
struct Anchor {
    weight: f32,
    described: Described,
    /// Latitude and longitude in radians, and the cosine of the latitude.
    place: Option<(f64, f64, f64)>,
}

impl Anchor {
    fn new(meta: &ItemMeta, city: Option<u32>, categories: &[u32], weight: f32, traits: &mut Traits) -> Self {
        traits.add(city, categories);
        let place = meta.location.map(|(lat, lon)| (lat.to_radians(), lon.to_radians(), lat.to_radians().cos()));
        Self { weight, described: traits.describe(city, categories, categories.len()), place }
    }

    /// How alike an item is to this one by what is known about them: shared
    /// categories (Jaccard), the same city, nearness (5 km scale, nothing
    /// beyond 60 km). 0..1.
    fn similarity(&self, other: &Described, other_place: Option<(f64, f64)>) -> f32 {
        let a = &self.described;
        let shared = (a.categories & other.categories).count_ones() as f32;
        let union = (a.category_count + other.category_count) as f32 - shared;
        let categories = if union > 0.0 { shared / union } else { 0.0 };
        let city = match (a.city, other.city) {
            (Some(x), Some(y)) if x == y => 1.0,
            _ => 0.0,
        };
        let near = match (self.place, other_place) {
            (Some((lat, lon, cos_lat)), Some((other_lat, other_lon))) => {
                // Equirectangular around this item: no trigonometry per pair.
                let (dx, dy) = ((other_lon - lon) * cos_lat, other_lat - lat);
                let km = EARTH_KM as f64 * (dx * dx + dy * dy).sqrt();
                if km > 60.0 { 0.0 } else { (-km / 5.0).exp() as f32 }
            }
            _ => city,
        };
        0.4 * categories + 0.3 * city + 0.3 * near
    }
}

/// Log popularity scaled to 0..1.
pub fn popularity_feature(counts: &[f32]) -> Vec<f32> {
    let max = counts.iter().fold(0f32, |m, &c| m.max(c));
    let denominator = (1.0 + max).ln().max(1e-6);
    counts.iter().map(|&c| (1.0 + c).ln() / denominator).collect()
}

/// Great-circle distance in km (haversine).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ItemMeta, TrainingDataBuilder, train};

    /// postcard writes a snapshot's fields in order, without their names: a
    /// snapshot read with another layout is misread, not refused. A changed
    /// layout (a field added to the hyperparameters, say) must come with a
    /// new [`Model::FORMAT_VERSION`]; this fingerprint of a small model's
    /// bytes says when the bytes changed. If only values changed (a formula,
    /// not a field), update the fingerprint and keep the version. A
    /// popularity model covers the hyperparameters, the item metadata and the
    /// time profiles, not the collaborative models or a tuning report; its
    /// values go through `ln`, so another platform's maths library may need
    /// a fingerprint of its own.
    #[test]
    fn the_snapshot_layout_is_the_one_its_format_version_names() {
        let mut model =
            crate::train_fixed(&two_tastes(), Recipe::PopularityCount, &Hyperparameters::default(), Blend::default(), &crate::no_progress)
                .unwrap();
        model.summary.training_seconds = 0.0;
        // FNV-1a, stable across Rust releases (unlike the std hashers).
        let fingerprint = model.to_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        assert_eq!(
            (Model::FORMAT_VERSION, fingerprint),
            (9, 8_093_507_445_969_339_588),
            "the snapshot's bytes changed: if its layout did, bump Model::FORMAT_VERSION; then set the fingerprint"
        );
    }

    /// Users who like museums and users who like beaches; "m*" and "b*" items.
    fn two_tastes() -> TrainingData {
        let mut builder = TrainingDataBuilder::new();
        for u in 0..60 {
            let prefix = if u % 2 == 0 { "m" } else { "b" };
            for k in 0..4 {
                let item = format!("{prefix}{}", (u + k) % 6);
                builder.add_interaction(&format!("u{u}"), &item, 1_000 + k as i64, if k == 3 { "book" } else { "view" }, None);
            }
        }
        // "m0" is the most popular item overall.
        for u in 100..130 {
            builder.add_interaction(&format!("u{u}"), "m0", 5, "view", None);
        }
        builder.add_item("brand-new");
        builder.build()
    }

    fn ids(model: &Model, items: &[ScoredItem]) -> Vec<String> {
        items.iter().map(|s| model.item_id(s.item).to_string()).collect()
    }

    #[test]
    fn a_forgotten_user_is_served_as_a_stranger_and_the_others_as_before() {
        let data = two_tastes();
        let mut model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let (users, events) = (model.histories.users(), model.histories.events.len());
        let recommend = |model: &Model, user: &str| ids(model, &model.recommend(model.histories.get(user), &[], 5));
        let stranger = recommend(&model, "nobody");
        let (u0, u1) = (recommend(&model, "u0"), recommend(&model, "u1"));
        assert_ne!(u0, stranger);
        // (Values are NaN when an event has none: compare items and times.)
        let visits = |model: &Model, user: &str| model.histories.get(user).iter().map(|e| (e.item, e.timestamp)).collect::<Vec<_>>();
        let kept_u1 = visits(&model, "u1");

        assert!(model.forget_user("u0"));
        assert_eq!((model.histories.users(), model.histories.events.len()), (users - 1, events - 4));
        assert!(model.histories.get("u0").is_empty());
        assert_eq!(visits(&model, "u1"), kept_u1);
        assert_eq!(recommend(&model, "u0"), stranger);
        assert_eq!(recommend(&model, "u1"), u1);
        // What the snapshot holds after a round trip.
        let model = Model::from_bytes(&model.to_bytes()).unwrap();
        assert!(model.histories.get("u0").is_empty() && model.histories.get("u2").len() == 4);
        let mut model = model;
        assert!(!model.forget_user("u0"), "already forgotten");
    }

    /// Blend weights are learned on [`Model::features`] with
    /// [`FeatureBuffers::blend`]; serving blends without copies or a scaling
    /// pass. Both must give the same scores.
    #[test]
    fn serving_scores_equal_the_blend_of_the_learned_features() {
        let data = two_tastes();
        let mut model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        model.blend = Blend { weights: [1.0, 0.7, 0.3, 0.2, 0.5, -0.4, 0.6, 0.1, 0.1, 0.1, 0.4] };
        let n = model.items.len();
        for user in 0..model.histories.users() as u32 {
            let profile = model.profile(model.histories.get_index(user), &[]);
            let context = Context::default();
            let mut served = vec![0f32; n];
            model.score_profile(&profile, &context, &model.blend, &mut served);
            let mut buffers = FeatureBuffers::new(n);
            model.features(&profile, &context, &model.blend, &mut buffers);
            let mut learned = vec![0f32; n];
            buffers.blend(&model.blend, &mut learned);
            for (s, l) in served.iter().zip(&learned) {
                assert!((s - l).abs() <= 1e-5 * (1.0 + l.abs()), "user {user}: {s} vs {l}");
            }
        }
    }

    /// Serving blends only the signals a query wrote; buffers are reused
    /// across queries, so what one query wrote must not reach the next.
    #[test]
    fn a_query_is_not_touched_by_the_signals_of_the_one_before() {
        let mut builder = TrainingDataBuilder::new();
        for i in 0..40 {
            let location = (i % 4 != 3).then(|| (38.7 + 0.01 * i as f64, -9.2 + 0.01 * (i % 7) as f64));
            builder.add_item_with_meta(&format!("i{i}"), ItemMeta { location, ..ItemMeta::default() });
        }
        for u in 0..30 {
            for k in 0..5 {
                builder.add_interaction(&format!("u{u}"), &format!("i{}", (u * 3 + k * 7) % 40), 1_000 + k as i64, "view", None);
            }
        }
        let mut model = train(&builder.build(), Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        // Every signal on, context ones included.
        model.blend = Blend { weights: [1.0, 0.7, 0.3, 0.2, 0.5, -0.4, 0.6, 0.1, 0.1, 0.8, 0.4] };
        let plain = |user: &str| {
            let history = model.histories.get(user);
            model.query(&Query { history, k: 10, ..Query::default() })
        };
        let before: Vec<_> = ["u1", "u2", "nobody"].map(plain).into_iter().collect();
        // A query that writes Nearby and LocalEvent (and everything else).
        let context = Context {
            location: Some((38.9, -9.1)),
            time: Some(1_000),
            hour: Some(12),
            events: vec![crate::ActiveEvent { item: Some(5), location: None }],
        };
        let busy = model.query(&Query { history: model.histories.get("u3"), k: 10, context, ..Query::default() });
        assert!(!busy.is_empty());
        let after: Vec<_> = ["u1", "u2", "nobody"].map(plain).into_iter().collect();
        assert_eq!(before, after);
    }

    /// A query blends the sparse signals (repeat, sequence, proximity,
    /// nearby) at their items after the dense ones, and reads a day's local
    /// events where they are kept; training blends every signal over the
    /// catalogue. Both give the same scores, query after query, whatever the context.
    #[test]
    fn a_query_blends_sparse_and_kept_signals_as_training_does() {
        let mut builder = TrainingDataBuilder::new();
        // A grid about 10 km apart (so an event is near its host only), and unlocated items.
        for i in 0..50 {
            let location = (i % 5 != 4).then(|| (38.0 + 0.1 * (i % 10) as f64, -9.0 + 0.1 * (i / 10) as f64));
            builder.add_item_with_meta(&format!("i{i}"), ItemMeta { location, ..ItemMeta::default() });
        }
        for u in 0..40 {
            for k in 0..6 {
                builder.add_interaction(&format!("u{u}"), &format!("i{}", (u * 5 + k * 3) % 50), 1_000 + 60 * k as i64, "view", None);
            }
        }
        let mut model = train(&builder.build(), Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        model.blend = Blend { weights: [1.0, 0.7, 0.3, 0.2, 0.5, -0.4, 0.6, 0.5, -0.3, 0.8, 0.4] };
        let n = model.items.len();
        let mut complete = FeatureBuffers::new(n);
        let (mut expected, mut got) = (vec![0f32; n], vec![0f32; n]);
        // Nearby copied from proximity or its own pass (kept per place), at a wider scale too.
        for nearby_scale in [1.0, 16.0] {
            model.hyperparameters.nearby_scale = nearby_scale;
            for (u, user) in (0..40).map(|u| (u, format!("u{u}"))) {
                let profile = model.profile(model.histories.get(&user), &[]);
                assert!(!profile.last.is_empty() && !profile.weighted.is_empty());
                // Users ask without context, at a moment on a day with its own
                // events, from somewhere among the items, or from far away (moved on).
                let context = match u % 4 {
                    0 => Context::default(),
                    1 => Context {
                        time: Some(1_000 + u as i64 * 86_400 * 40),
                        hour: Some(u as usize % 24),
                        events: vec![crate::ActiveEvent { item: Some(u as u32 % 7), location: None }],
                        ..Context::default()
                    },
                    2 => Context { location: Some((38.0 + 0.02 * u as f64, -8.9)), ..Context::default() },
                    _ => Context { location: Some((34.7, 135.5)), ..Context::default() },
                };
                model.features(&profile, &context, &model.blend, &mut complete);
                // The day's events, not another day's kept signal (no item has a
                // place here, so only the host is near its event).
                let events = &complete.values[Feature::LocalEvent as usize];
                let hosts: Vec<usize> = (0..n).filter(|&i| events[i] != 0.0).collect();
                let host = context.events.first().and_then(|e| e.item).map(|i| i as usize);
                assert_eq!(hosts, host.into_iter().collect::<Vec<_>>(), "{user}");
                let near = complete.values[Feature::Nearby as usize].iter().filter(|&&v| v > 0.0).count();
                assert_eq!(near > 0, context.location.is_some(), "{user}");
                complete.blend(&model.blend, &mut expected);
                model.score_profile(&profile, &context, &model.blend, &mut got);
                for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
                    assert!((e - g).abs() <= 1e-4 * e.abs().max(1.0), "{user}, item {i}: {g} against {e}");
                }
            }
        }
    }

    /// A promotion ranked from its mask's allowed items picks what the same
    /// mask applied as a filter over every score picks, slot for slot.
    #[test]
    fn a_promotion_from_a_mask_equals_one_from_its_filter() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        for every in [1, 2, 3] {
            let mask = crate::filter::ItemMask::new(model.items.len(), |i| i % every == 0);
            let as_filter = |scores: &mut [f32]| mask.apply(scores);
            for user in 0..model.histories.users() as u32 {
                let ranked = |items: PromotedItems| {
                    let promotions = vec![Promotion { share: 0.5, items }];
                    let query = Query { history: model.histories.get_index(user), k: 6, promotions, ..Query::default() };
                    model.query(&query).into_iter().map(|r| (r.candidate, r.promotion, r.score)).collect::<Vec<_>>()
                };
                let from_mask = ranked(PromotedItems::Mask(&mask));
                assert_eq!(from_mask, ranked(PromotedItems::Filter(&as_filter)), "user {user}, every {every}");
                assert_eq!(from_mask.iter().filter(|r| r.1.is_some()).count(), 3, "{from_mask:?}");
            }
        }
    }

    #[test]
    fn items_whose_events_decayed_to_nothing_leave_the_profile_and_no_score_changes() {
        let mut b = TrainingDataBuilder::new();
        for u in 0..6 {
            for (k, item) in ["a", "b", "c", "d"].iter().enumerate() {
                if (u + k) % 3 != 0 {
                    b.add_interaction(&format!("u{u}"), item, k as i64, "view", None);
                }
            }
        }
        let data = b.build();
        let hp = crate::Hyperparameters { recency_half_life_days: 14.0, ..crate::Hyperparameters::default() };
        let model = train(&data, crate::Recipe::UserPersonalization, &hp, &crate::no_progress).unwrap();
        let index = |id: &str| model.item_index(id).unwrap();
        let day = 86_400;
        // "a" five years before the rest: 0.5^130 of a fresh event's weight,
        // under f32's normal range once multiplied into a score.
        let old = HistoryEvent::new(index("a"), 0, 0);
        let recent = [HistoryEvent::new(index("b"), 0, 5 * 365 * day), HistoryEvent::new(index("c"), 0, 5 * 365 * day + 60)];
        let with_old: Vec<HistoryEvent> = std::iter::once(old).chain(recent).collect();
        let profile = model.profile(&with_old, &[]);
        assert!(profile.weighted.iter().all(|&(item, _)| item != index("a")), "{:?}", profile.weighted);
        assert!(profile.weighted.iter().all(|&(_, w)| w.abs() >= f32::MIN_POSITIVE), "{:?}", profile.weighted);
        assert!(profile.seen.contains(&index("a")), "still seen: a filter or a repeat check needs it");
        // The scores are those of the history without it, to the bit.
        let mut with_scores = vec![0f32; model.items.len()];
        let mut without_scores = vec![0f32; model.items.len()];
        model.score_profile(&profile, &Context::default(), &model.blend, &mut with_scores);
        let without = model.profile(&recent, &[]);
        model.score_profile(&without, &Context::default(), &model.blend, &mut without_scores);
        let seen_apart = |scores: &[f32]| {
            scores.iter().enumerate().filter(|&(i, _)| i != index("a") as usize).map(|(_, s)| s.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(seen_apart(&with_scores), seen_apart(&without_scores));
    }

    #[test]
    fn taste_is_the_share_of_the_profile_in_an_items_categories() {
        let mut b = TrainingDataBuilder::new();
        let with = |categories: &[&str]| ItemMeta { categories: categories.iter().map(|c| c.to_string()).collect(), ..Default::default() };
        b.add_item_with_meta("museum-1", with(&["Museum"]));
        b.add_item_with_meta("museum-2", with(&["Museum"]));
        b.add_item_with_meta("beach-1", with(&["Beach"]));
        b.add_item_with_meta("museum-beach", with(&["Museum", "Beach"]));
        b.add_item_with_meta("park", with(&["Park"]));
        b.add_item_with_meta("unknown", ItemMeta::default());
        for u in 0..4 {
            for item in ["museum-1", "beach-1", "park", "unknown"] {
                b.add_interaction(&format!("u{u}"), item, 0, "view", None);
            }
        }
        let data = b.build();
        // The share itself (smoothing 0), and its smoothed logarithm.
        for smoothing in [0.0f32, 0.01, 0.5] {
            let scale = |share: f32| if smoothing == 0.0 { share } else { (1.0 + share / smoothing).ln() / (1.0 + 1.0 / smoothing).ln() };
            let hp = crate::Hyperparameters { taste_smoothing: smoothing, ..crate::Hyperparameters::default() };
            let model = train(&data, crate::Recipe::UserPersonalization, &hp, &crate::no_progress).unwrap();
            let index = |id: &str| model.item_index(id).unwrap();
            // Equal weights on two museums, a beach and an uncategorised item.
            let history: Vec<HistoryEvent> =
                ["museum-1", "museum-2", "beach-1", "unknown"].iter().map(|id| HistoryEvent::new(index(id), 0, 0)).collect();
            let profile = model.profile(&history, &[]);
            let mut buffers = FeatureBuffers::new(model.items.len());
            model.features(&profile, &Context::default(), &Blend::zero().with(Feature::Taste, 1.0), &mut buffers);
            let taste = |id: &str| buffers.values[Feature::Taste as usize][index(id) as usize];
            let close =
                |id: &str, expected: f32| assert!((taste(id) - expected).abs() < 1e-6, "{id} at {smoothing}: {} != {expected}", taste(id));
            close("museum-1", scale(2.0 / 3.0));
            close("beach-1", scale(1.0 / 3.0));
            close("museum-beach", (scale(2.0 / 3.0) + scale(1.0 / 3.0)) / 2.0);
            assert_eq!(taste("park"), 0.0);
            assert_eq!(taste("unknown"), 0.0);
        }
    }

    /// A repeatable stream of numbers in [0, 1) from `seed` (a linear congruential generator).
    fn uniform(mut state: u64) -> impl FnMut() -> f64 {
        move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        }
    }

    /// Nearness looks only at a box around the place it counts from (the
    /// request's place rounded to a cell); it must give what a scan of
    /// every item from there gives (the K-th nearest as the scale, or a
    /// multiple of it, 0 beyond the reach), at the poles and across the
    /// antimeridian too.
    #[test]
    fn nearness_from_the_place_grid_equals_a_scan_of_every_item() {
        let mut builder = TrainingDataBuilder::new();
        // Two clusters far apart (Lisbon, Osaka), a scattering, and unlocated items.
        let mut random = uniform(12345u64);
        for i in 0..900 {
            let location = match i % 4 {
                0 => Some((38.7 + 0.1 * random(), -9.2 + 0.1 * random())),
                1 => Some((34.6 + 0.2 * random(), 135.4 + 0.2 * random())),
                2 => Some((-60.0 + 120.0 * random(), -180.0 + 360.0 * random())),
                _ => None,
            };
            builder.add_item_with_meta(&format!("i{i}"), ItemMeta { location, ..ItemMeta::default() });
        }
        builder.add_interaction("u", "i0", 1, "view", None);
        builder.add_interaction("v", "i1", 1, "view", None);
        let model = train(&builder.build(), Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let n = model.items.len();
        let places =
            [(38.75, -9.15), (34.7, 135.5), (0.0, 0.0), (38.72, -9.1 + 40.0), (89.0, 10.0), (-89.5, 0.0), (-20.0, 179.99), (10.0, -179.99)];
        for (here, scales) in places.into_iter().flat_map(|here| [(here, 1.0f32), (here, 16.0)]) {
            let (mut banded, mut touched) = (vec![0f32; n], Vec::new());
            model.nearness(here, scales, |i, v| {
                banded[i as usize] = v;
                touched.push(i);
            });
            // Every located item, the straightforward way, from where nearness counts.
            let origin = model.nearness_origin(here, scales).unwrap();
            let (lat, lon) = (origin.place.0.to_radians() as f32, origin.place.1.to_radians() as f32);
            let squared: Vec<f32> = model
                .item_meta
                .iter()
                .map(|m| {
                    m.location.map_or(f32::NAN, |(a, b)| {
                        let (dx, dy) = ((b.to_radians() as f32 - lon) * lat.cos(), a.to_radians() as f32 - lat);
                        EARTH_KM * EARTH_KM * (dx * dx + dy * dy)
                    })
                })
                .collect();
            let mut sorted: Vec<f32> = squared.iter().copied().filter(|v| !v.is_nan()).collect();
            sorted.sort_by(f32::total_cmp);
            let k = ((sorted.len() as f32).sqrt().round() as usize).clamp(3, 30);
            let scale = sorted[k - 1].sqrt().max(model.hyperparameters.proximity_km * 0.01) * scales;
            assert!((origin.scale_km - scale).abs() <= 1e-6 * scale, "here {here:?} × {scales}: {} vs {scale}", origin.scale_km);
            for (item, (&b, &d)) in banded.iter().zip(&squared).enumerate() {
                let expected = if d.is_nan() || d.sqrt() > NEARNESS_REACH * scale { 0.0 } else { (-d.sqrt() / scale).exp() };
                assert!(
                    (b - expected).abs() <= 1e-6 * expected.max(1e-30) + 1e-12,
                    "here {here:?} × {scales}, item {item}: {b} vs {expected}"
                );
            }
            assert!(banded.iter().filter(|&&v| v > 0.0).count() >= k, "here {here:?}");
            // The items written are recorded, once each: those in reach.
            let in_reach: Vec<u32> = (0..n as u32).filter(|&i| squared[i as usize].sqrt() <= NEARNESS_REACH * scale).collect();
            touched.sort_unstable();
            assert_eq!(touched, in_reach, "here {here:?} × {scales}");
        }
        // A scale kept by place is what the search finds, the first time
        // (found and kept) and after (read).
        for item in (0..n as u32).step_by(7).filter(|&i| model.item_meta[i as usize].location.is_some()) {
            let here = model.item_meta[item as usize].location.unwrap();
            let mut first = vec![0f32; n];
            model.nearness(here, 1.0, |i, v| first[i as usize] = v);
            for _ in 0..2 {
                let mut again = vec![0f32; n];
                model.nearness(here, 1.0, |i, v| again[i as usize] = v);
                assert_eq!(again, first, "item {item}");
            }
            let origin = model.nearness_origin(here, 1.0).unwrap().place;
            assert_eq!((origin, first[item as usize]), (here, 1.0), "an item's own place counts as it is");
            let searched = model.kth_nearest_squared_km(origin, 1.0);
            for start_km in [1e-3, 0.3, 40.0, 5000.0] {
                assert_eq!(model.kth_nearest_squared_km(origin, start_km), searched, "item {item}, from a box {start_km} km wide");
            }
            assert_eq!(model.derived().nearness_scales.get_or_insert_with(place_key(origin), || f32::NAN), searched);
        }
    }

    /// Rounding a place to its cell moves nearness by at most about e^±1.2 %
    /// for every item (and the reach's edge by as much); a traveller a few
    /// metres on counts from the same centre.
    #[test]
    fn nearness_from_a_rounded_place_stays_within_its_bound() {
        let mut builder = TrainingDataBuilder::new();
        let mut random = uniform(99u64);
        for i in 0..600 {
            // A city (Lisbon), a theme park (a few hundred metres), and scattered places.
            let location = match i % 3 {
                0 => (38.7 + 0.1 * random(), -9.2 + 0.1 * random()),
                1 => (28.37 + 0.004 * random(), -81.55 + 0.004 * random()),
                _ => (-60.0 + 120.0 * random(), -170.0 + 340.0 * random()),
            };
            builder.add_item_with_meta(&format!("i{i}"), ItemMeta { location: Some(location), ..ItemMeta::default() });
        }
        builder.add_interaction("u", "i0", 1, "view", None);
        builder.add_interaction("v", "i1", 1, "view", None);
        let model = train(&builder.build(), Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let n = model.items.len();
        for step in 0..200 {
            let here = match step % 3 {
                0 => (38.7 + 0.1 * random(), -9.2 + 0.1 * random()),
                1 => (28.37 + 0.004 * random(), -81.55 + 0.004 * random()),
                _ => (-60.0 + 120.0 * random(), -170.0 + 340.0 * random()),
            };
            for scales in [1.0f32, 16.0] {
                let origin = model.nearness_origin(here, scales).unwrap();
                let km = |(a, b): (f64, f64), (c, d): (f64, f64)| {
                    let (dx, dy) = ((d - b).to_radians() * a.to_radians().cos(), (c - a).to_radians());
                    EARTH_KM as f64 * (dx * dx + dy * dy).sqrt()
                };
                let moved = km(here, origin.place) / origin.scale_km as f64;
                assert!(moved <= 0.0111, "here {here:?} × {scales}: the centre is {moved} scales away");
                // Every item's nearness, from the centre and from here exactly.
                let mut rounded = vec![0f32; n];
                model.nearness(here, scales, |i, v| rounded[i as usize] = v);
                for (item, meta) in model.item_meta.iter().enumerate() {
                    // Within reach, and where the flat-earth distance holds (a few hundred km).
                    let distance = km(here, meta.location.unwrap()) / origin.scale_km as f64;
                    if distance > NEARNESS_REACH as f64 - 0.02 || km(here, meta.location.unwrap()) > 500.0 {
                        continue;
                    }
                    let exact = (-distance).exp() as f32;
                    let ratio = rounded[item] / exact;
                    // 1.1 % from the move, a little more from the flat-earth distance's
                    // east-west scale (the cosine at the centre, not at here), and
                    // the f32 radians' metre or so, much of a theme park's scale.
                    let bound = 0.0125 + 0.0015 / origin.scale_km;
                    assert!(ratio.ln().abs() <= bound, "here {here:?} × {scales}, item {item}: {} vs {exact}", rounded[item]);
                }
                // A step of a metre or so east: the same centre, nothing found anew.
                let step_on = (here.0, here.1 + 1e-5);
                if cell_centre(step_on, origin.scale_km as f64 / 64.0) == cell_centre(here, origin.scale_km as f64 / 64.0) {
                    continue;
                }
                let again = model.nearness_origin(step_on, scales).unwrap();
                assert!(km(again.place, origin.place) <= origin.scale_km as f64 / 32.0, "here {here:?}: {again:?} vs {origin:?}");
            }
        }
    }

    #[test]
    fn a_traveller_walking_on_counts_from_a_few_centres() {
        let mut builder = TrainingDataBuilder::new();
        for i in 0..400 {
            let location = (51.3 + 0.4 * (i % 20) as f64 / 20.0, -0.5 + 0.8 * (i / 20) as f64 / 20.0);
            builder.add_item_with_meta(&format!("i{i}"), ItemMeta { location: Some(location), ..ItemMeta::default() });
        }
        builder.add_interaction("u", "i0", 1, "view", None);
        builder.add_interaction("v", "i1", 1, "view", None);
        let model = train(&builder.build(), Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        // A kilometre's walk in one-metre steps.
        let centres: std::collections::HashSet<(u64, u64)> =
            (0..1000).map(|step| place_key(model.nearness_origin((51.5 + step as f64 * 9e-6, -0.1), 16.0).unwrap().place)).collect();
        assert!(centres.len() <= 4, "{} centres", centres.len());
        let near: std::collections::HashSet<(u64, u64)> =
            (0..1000).map(|step| place_key(model.nearness_origin((51.5 + step as f64 * 9e-6, -0.1), 1.0).unwrap().place)).collect();
        assert!(near.len() > 4 && near.len() <= 1000 / 8, "{} centres at the local scale", near.len());
    }

    #[test]
    fn place_scales_are_found_once_per_place_and_bounded() {
        let scales = Kept::new(REQUEST_PLACES);
        let calls = std::cell::Cell::new(0);
        let find = |value: f32| {
            calls.set(calls.get() + 1);
            value
        };
        assert_eq!(scales.get_or_insert_with(place_key((38.7, -9.1)), || find(4.0)), 4.0);
        assert_eq!(scales.get_or_insert_with(place_key((38.7, -9.1)), || find(9.0)), 4.0, "kept");
        assert_eq!(scales.get_or_insert_with(place_key((38.7, -9.100001)), || find(9.0)), 9.0, "another place");
        assert_eq!(calls.get(), 2);
        for i in 0..REQUEST_PLACES + 10 {
            scales.get_or_insert_with(place_key((i as f64, 0.0)), || 1.0);
        }
        assert!(scales.values.read().unwrap().len() <= REQUEST_PLACES);
        let copy = scales.clone();
        assert_eq!((copy.values.read().unwrap().len(), copy.capacity), (0, REQUEST_PLACES), "a copy starts empty");
    }

    #[test]
    fn a_new_event_changes_the_next_recommendations_without_retraining() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        // A cold user gets popular items.
        let cold = model.recommend(&[], &[], 3);
        assert_eq!(model.item_id(cold[0].item), "m0");
        // After booking a beach, beaches lead.
        let beach = HistoryEvent::new(model.item_index("b2").unwrap(), model.event_type_index("book"), 2_000);
        let after = ids(&model, &model.recommend(&[], &[beach], 5));
        assert!(after.iter().take(4).all(|id| id.starts_with('b')), "{after:?}");
    }

    #[test]
    fn recent_events_outweigh_old_ones() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let event =
            |item: &str, days: i64| HistoryEvent::new(model.item_index(item).unwrap(), model.event_type_index("view"), days * 86_400);
        let history = [event("m1", 0), event("m2", 1), event("m3", 2)];
        let recent = [event("b1", 200)];
        let best = ids(&model, &model.recommend(&history, &recent, 3));
        assert!(best.iter().all(|id| id.starts_with('b')), "{best:?}");
    }

    #[test]
    fn scores_are_a_softmax_over_the_catalogue() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let all = model.recommend(model.histories.get("u1"), &[], model.items.len());
        assert_eq!(all.len(), model.items.len());
        let total: f32 = all.iter().map(|s| s.score).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn popularity_count_ranks_by_interactions() {
        let data = two_tastes();
        let model = train(&data, Recipe::PopularityCount, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let best = model.recommend(model.histories.get("u1"), &[], 1);
        assert_eq!(model.item_id(best[0].item), "m0");
    }

    #[test]
    fn snapshots_round_trip_and_reject_garbage() {
        let data = two_tastes();
        let model = train(&data, Recipe::UserPersonalization, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let back = Model::from_bytes(&model.to_bytes()).unwrap();
        let history = model.histories.get("u3");
        assert!(!history.is_empty());
        assert_eq!(model.recommend(history, &[], 5), back.recommend(back.histories.get("u3"), &[], 5));
        assert!(matches!(Model::from_bytes(b"not a model"), Err(ModelError::BadMagic)));
        let mut truncated = model.to_bytes();
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(Model::from_bytes(&truncated), Err(ModelError::Corrupt(_))));
    }

    #[test]
    fn similar_items_are_the_co_visited_ones_for_every_recipe() {
        let data = two_tastes();
        for recipe in [Recipe::SimilarItems, Recipe::UserPersonalization] {
            let model = train(&data, recipe, &Hyperparameters::default(), &crate::no_progress).unwrap();
            let similar = ids(&model, &model.similar_items(model.item_index("b1").unwrap(), 3));
            assert!(similar.iter().all(|id| id.starts_with('b') && id != "b1"), "{recipe:?}: {similar:?}");
        }
    }

    #[test]
    fn new_items_are_explored_when_they_resemble_the_users_items() {
        let mut b = TrainingDataBuilder::new();
        let meta = |category: &str, city: &str| ItemMeta {
            categories: vec![category.to_string()],
            city: Some(city.to_string()),
            ..ItemMeta::default()
        };
        for i in 0..6 {
            b.add_item_with_meta(&format!("m{i}"), meta("Museum", "Paris"));
            b.add_item_with_meta(&format!("b{i}"), meta("Beach", "Lisbon"));
        }
        b.add_item_with_meta("new-museum", meta("Museum", "Paris"));
        let data = {
            let mut b = b;
            for u in 0..60 {
                let prefix = if u % 2 == 0 { "m" } else { "b" };
                for k in 0..4 {
                    b.add_interaction(&format!("u{u}"), &format!("{prefix}{}", (u + k) % 6), k as i64, "view", None);
                }
            }
            b.build()
        };
        let hp = Hyperparameters { exploration_weight: 0.9, ..Hyperparameters::default() };
        let model = train(&data, Recipe::UserPersonalization, &hp, &crate::no_progress).unwrap();
        assert_eq!(model.components.cold_items, vec![model.item_index("new-museum").unwrap()]);
        let museum_lover = ids(&model, &model.recommend(model.histories.get("u0"), &[], 5));
        assert!(museum_lover.contains(&"new-museum".to_string()), "{museum_lover:?}");
        let beach_lover = ids(&model, &model.recommend(model.histories.get("u1"), &[], 5));
        assert!(!beach_lover.contains(&"new-museum".to_string()), "{beach_lover:?}");
        let never = Hyperparameters { exploration_weight: 0.0, ..Hyperparameters::default() };
        let model = train(&data, Recipe::UserPersonalization, &never, &crate::no_progress).unwrap();
        let museum_lover = ids(&model, &model.recommend(model.histories.get("u0"), &[], 5));
        assert!(!museum_lover.contains(&"new-museum".to_string()), "{museum_lover:?}");
    }

    #[test]
    fn ranking_orders_the_given_items_for_the_user() {
        let data = two_tastes();
        let model = train(&data, Recipe::PersonalizedRanking, &Hyperparameters::default(), &crate::no_progress).unwrap();
        let list: Vec<u32> = ["m3", "b3", "m4", "b4"].iter().map(|i| model.item_index(i).unwrap()).collect();
        let ranked = model.rank(model.histories.get("u1"), &[], &list, &Context::default());
        assert_eq!(ranked.len(), 4);
        let order = ids(&model, &ranked);
        assert!(order[0].starts_with('b') && order[1].starts_with('b'), "{order:?}");
        assert!((ranked.iter().map(|r| r.score).sum::<f32>() - 1.0).abs() < 1e-4);
    }
}
