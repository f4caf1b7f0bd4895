//! Recipes (what to train) and their hyperparameters.

use crate::als::AlsParams;
use crate::context::{TimeProfile, hour_of, month_of};
use crate::model::{Blend, Collaborative, Components, Feature, Histories, Model, TrainingSummary};
use crate::split::Holdout;
use crate::{Progress, TrainingData, als, ease, popularity, sparse, tuning};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// A training recipe. Names and ARNs follow the managed service so that
/// clients written for it can pass either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Collaborative filtering (EASE, or ALS for large catalogues) blended with
    /// what users do next after their last items, popularity, trends and
    /// nearness, with the user's newest events folded in at query time.
    UserPersonalization,
    /// The most interacted-with items, the same for everyone.
    PopularityCount,
    /// Items whose interaction rate is rising.
    TrendingNow,
    /// Items like a given item ("people who visited X also visited").
    SimilarItems,
    /// Re-ranks a list of items the caller gives, for a user.
    PersonalizedRanking,
}

impl Recipe {
    pub const ALL: [Recipe; 5] =
        [Recipe::UserPersonalization, Recipe::PopularityCount, Recipe::TrendingNow, Recipe::SimilarItems, Recipe::PersonalizedRanking];

    pub fn name(self) -> &'static str {
        match self {
            Recipe::UserPersonalization => "user-personalization",
            Recipe::PopularityCount => "popularity-count",
            Recipe::TrendingNow => "trending-now",
            Recipe::SimilarItems => "similar-items",
            Recipe::PersonalizedRanking => "personalized-ranking",
        }
    }

    /// The managed service's ARN for this recipe.
    pub fn arn(self) -> String {
        format!("arn:aws:personalize:::recipe/aws-{}", self.name())
    }

    /// Accepts `user-personalization`, `aws-user-personalization` or the full ARN
    /// (and the `-v2` variants clients of the managed service use; `sims` for similar-items).
    pub fn parse(value: &str) -> Result<Recipe, RecipeError> {
        let name = value.rsplit('/').next().unwrap_or(value);
        let name = name.strip_prefix("aws-").unwrap_or(name);
        let name = name.strip_suffix("-v2").unwrap_or(name);
        let name = if name == "sims" { "similar-items" } else { name };
        Recipe::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Recipe::ALL.iter().map(|r| r.name()).collect();
            RecipeError::UnknownRecipe { given: value.to_string(), known: known.join(", ") }
        })
    }

    /// Whether the recipe learns from who did what (and so needs the collaborative part).
    fn personalised(self) -> bool {
        matches!(self, Recipe::UserPersonalization | Recipe::PersonalizedRanking)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecipeError {
    #[error("unknown recipe `{given}`; known recipes: {known}")]
    UnknownRecipe { given: String, known: String },
    #[error("unknown hyperparameter `{0}`; known: {known}", known = Hyperparameters::KEYS.join(", "))]
    UnknownHyperparameter(String),
    #[error("hyperparameter `{key}` = `{value}`: {reason}")]
    InvalidHyperparameter { key: String, value: String, reason: String },
    #[error("not enough data to train: {0}")]
    NotEnoughData(String),
}

/// Which collaborative model user-personalization uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CollaborativeKind {
    /// EASE up to `max_ease_items` items, ALS above.
    Auto,
    Ease,
    Als,
    /// Item-kNN (cosine); mostly a baseline.
    ItemKnn,
}

/// Hyperparameters of all recipes, with documented defaults. On the API they
/// travel as a string map (as in the managed service); see [`Hyperparameters::KEYS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hyperparameters {
    /// Weight of each event type; types not listed get `default_event_weight`.
    /// Key on the API: `event_weight.<type>`.
    pub event_weights: BTreeMap<String, f32>,
    pub default_event_weight: f32,
    pub collaborative: CollaborativeKind,
    /// L2 regularisation of EASE (its λ, in the units of binary data): larger
    /// values trust co-occurrence less.
    pub l2_regularization: f32,
    /// EASE scales each item's inputs by `count^-popularity_damping`, so very
    /// popular items weigh less in the co-occurrences (0 turns it off).
    pub popularity_damping: f32,
    /// How much `EVENT_VALUE` (e.g. a rating) matters: an event's weight is
    /// multiplied by `1 − v + v · value / largest value` (0 ignores values).
    pub event_value_influence: f32,
    /// EASE keeps an items × items matrix; above this many items `auto` uses ALS.
    pub max_ease_items: usize,
    /// EASE keeps only each item's this many strongest item-to-item weights
    /// (0 keeps them all): scoring then costs O(history × this), not
    /// O(history × items), and memory O(items × this).
    pub ease_neighbours: usize,
    pub als_factors: usize,
    pub als_iterations: usize,
    pub als_regularization: f32,
    pub als_alpha: f32,
    /// Score ALS item factors stored as bfloat16 at query time: half the
    /// memory read per query, each score off by at most 2⁻⁹ of `Σ |xᵢ yᵢ|`
    /// (see `AlsModel::score_half_precision`). On by default: at
    /// 100,000 items (25.6 MB of f32 factors) a query took 0.68–0.88× the
    /// time with the top 25 unchanged (`bench serve` measures both).
    pub als_half_precision: bool,
    /// At query time, an event this many days older than the user's newest
    /// event counts half as much.
    pub recency_half_life_days: f32,
    /// How many of a user's newest events are kept and scored.
    pub max_history: usize,
    /// Consecutive items further apart than this do not count as "next".
    pub transition_max_gap_hours: f32,
    /// Nearness to the user's last item is `exp(-distance / scale)`, the
    /// scale (the local scale) being the distance from there to the K-th
    /// nearest located item (K ≈ √located items, 3 to 30), but at least 1 %
    /// of this.
    pub proximity_km: f32,
    /// Nearness to the request's LOCATION (the `nearby` signal) is counted
    /// over this many of the local scales `proximity_km` describes: 1 is as
    /// sharp as nearness to the user's last item ("next door"); larger
    /// values say "in this part of town", which is what a traveller who has
    /// just arrived somewhere new goes by. Where requests carry locations,
    /// tuning also tries [`NEARBY_SCALES`](crate::tuning::NEARBY_SCALES) and
    /// keeps one only if its validation NDCG@10 beats the best setting tried
    /// before it by the margin of noise. Solution configurations saved
    /// before this setting existed read it as 1 (the default).
    pub nearby_scale: f32,
    /// Window for trending-now: the last N days against the N before.
    pub trending_window_days: f32,
    /// Temperature of the catalogue-wide softmax that turns scores into
    /// probabilities (on standardised scores); higher is flatter.
    pub softmax_temperature: f32,
    /// Try a budgeted set of hyperparameters on a validation split and keep the best.
    pub perform_hpo: bool,
    /// Most trainings hyperparameter search may run.
    pub hpo_budget: usize,
    /// Users in the validation split (blend weights and search are learned on them).
    pub validation_users: usize,
    /// Seed for splits and initialisation.
    pub seed: u64,
    /// Share of the slots given to items without interactions that resemble
    /// the user's items (0 never explores).
    pub exploration_weight: f32,
    /// The taste signal is `ln(1 + share / s) / ln(1 + 1 / s)` of the share
    /// `share` of the user's history in an item's categories: the logarithm
    /// of the share smoothed by `s`, scaled to 0..1, so that taste multiplies
    /// with the other signals under the softmax rather than adds to them (0
    /// keeps the share itself). The default was chosen by validation NDCG@10
    /// over the generated data, three Flickr cities and the theme park.
    /// Solution configurations saved before this setting existed read it as
    /// 0 (model snapshots change format with it: see `Model::FORMAT_VERSION`).
    #[serde(default)]
    pub taste_smoothing: f32,
    /// A visit counts towards the hours around its own too, by a Gaussian
    /// of this many hours' deviation (0: its own hour only; at most 3).
    /// Where the hour of day is in the blend, tuning also tries
    /// [`TIME_OF_DAY_BANDWIDTH_HOURS`](crate::tuning::TIME_OF_DAY_BANDWIDTH_HOURS),
    /// or 0 when another value is set, and keeps that only if it beats the
    /// set value on validation by the margin of noise. Solution
    /// configurations saved before this setting existed read it as 0.
    #[serde(default)]
    pub time_of_day_bandwidth_hours: f32,
    /// Context signals, each learned on validation and switchable off: nearness
    /// to where the user is, the month, the hour of day, local events.
    pub use_location: bool,
    pub use_season: bool,
    pub use_time_of_day: bool,
    pub use_local_events: bool,
    /// A request more than this many hours after the user's newest event
    /// finds them on a new outing: scored with the moved-on blend, learned
    /// on validation cases of that kind (see `Model::moved_on_blend`). 0: a
    /// request's moment is not compared with the history. Where requests
    /// carry their moment, tuning also tries
    /// [`NEW_OUTING_AFTER_HOURS`](crate::tuning::NEW_OUTING_AFTER_HOURS) and
    /// keeps one only if it beats the set value on validation by the margin
    /// of noise. The default is the one validation chose on the three
    /// Flickr cities and the theme park, leave-last-out. Solution
    /// configurations saved before this setting existed read it as the default.
    #[serde(default = "default_new_outing_after_hours")]
    pub new_outing_after_hours: f32,
}

fn default_new_outing_after_hours() -> f32 {
    8.0
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            event_weights: [("view", 1.0), ("click", 2.0), ("watch", 3.0), ("book", 5.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            default_event_weight: 1.0,
            collaborative: CollaborativeKind::Auto,
            l2_regularization: 500.0,
            popularity_damping: 0.15,
            event_value_influence: 0.5,
            max_ease_items: 12_000,
            ease_neighbours: 512,
            als_factors: 64,
            als_iterations: 15,
            als_regularization: 0.05,
            als_alpha: 2.0,
            als_half_precision: true,
            recency_half_life_days: 14.0,
            max_history: 1_000,
            transition_max_gap_hours: 24.0,
            proximity_km: 1.0,
            nearby_scale: 1.0,
            trending_window_days: 7.0,
            softmax_temperature: 2.0,
            perform_hpo: false,
            hpo_budget: 6,
            validation_users: 2_000,
            seed: 42,
            exploration_weight: 0.3,
            taste_smoothing: 0.01,
            time_of_day_bandwidth_hours: 0.0,
            use_location: true,
            use_season: true,
            use_time_of_day: true,
            use_local_events: true,
            new_outing_after_hours: default_new_outing_after_hours(),
        }
    }
}

impl Hyperparameters {
    pub const KEYS: &'static [&'static str] = &[
        "event_weight.<type>",
        "default_event_weight",
        "collaborative (auto|ease|als|item-knn)",
        "l2_regularization",
        "popularity_damping",
        "event_value_influence",
        "max_ease_items",
        "ease_neighbours",
        "als_factors",
        "als_iterations",
        "als_regularization",
        "als_alpha",
        "als_half_precision",
        "recency_half_life_days",
        "max_history",
        "transition_max_gap_hours",
        "proximity_km",
        "nearby_scale",
        "trending_window_days",
        "softmax_temperature",
        "perform_hpo",
        "hpo_budget",
        "validation_users",
        "seed",
        "exploration_weight",
        "taste_smoothing",
        "time_of_day_bandwidth_hours",
        "use_location",
        "use_season",
        "use_time_of_day",
        "use_local_events",
        "new_outing_after_hours",
    ];

    /// Defaults overridden by a string map, validating every key and value.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, RecipeError> {
        let mut hp = Hyperparameters::default();
        for (key, value) in map {
            let invalid =
                |reason: &str| RecipeError::InvalidHyperparameter { key: key.clone(), value: value.clone(), reason: reason.to_string() };
            let positive = || -> Result<f32, RecipeError> {
                match value.trim().parse::<f32>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                    _ => Err(invalid("expected a positive number")),
                }
            };
            let boolean = || -> Result<bool, RecipeError> {
                match value.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(invalid("expected true or false")),
                }
            };
            let fraction = || -> Result<f32, RecipeError> {
                match value.trim().parse::<f32>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
                    _ => Err(invalid("expected a number from 0 to 1")),
                }
            };
            let count = || -> Result<usize, RecipeError> {
                match value.trim().parse::<usize>() {
                    Ok(v) if v > 0 => Ok(v),
                    _ => Err(invalid("expected a positive integer")),
                }
            };
            if let Some(event_type) = key.strip_prefix("event_weight.") {
                match value.trim().parse::<f32>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => hp.event_weights.insert(event_type.to_string(), v),
                    _ => return Err(invalid("expected a number ≥ 0")),
                };
                continue;
            }
            match key.as_str() {
                "default_event_weight" => hp.default_event_weight = positive()?,
                "collaborative" => {
                    hp.collaborative = match value.trim() {
                        "auto" => CollaborativeKind::Auto,
                        "ease" => CollaborativeKind::Ease,
                        "als" => CollaborativeKind::Als,
                        "item-knn" => CollaborativeKind::ItemKnn,
                        _ => return Err(invalid("expected auto, ease, als or item-knn")),
                    }
                }
                "l2_regularization" => hp.l2_regularization = positive()?,
                "popularity_damping" => hp.popularity_damping = fraction()?,
                "event_value_influence" => hp.event_value_influence = fraction()?,
                "max_ease_items" => hp.max_ease_items = count()?,
                "ease_neighbours" => {
                    hp.ease_neighbours = value.trim().parse().map_err(|_| invalid("expected a whole number (0 keeps every weight)"))?
                }
                "als_factors" => hp.als_factors = count()?,
                "als_iterations" => hp.als_iterations = count()?,
                "als_regularization" => hp.als_regularization = positive()?,
                "als_alpha" => hp.als_alpha = positive()?,
                "als_half_precision" => hp.als_half_precision = boolean()?,
                "recency_half_life_days" => hp.recency_half_life_days = positive()?,
                "max_history" => hp.max_history = count()?,
                "transition_max_gap_hours" => hp.transition_max_gap_hours = positive()?,
                "proximity_km" => hp.proximity_km = positive()?,
                "nearby_scale" => {
                    hp.nearby_scale = match value.trim().parse::<f32>() {
                        Ok(v) if (1.0..=100.0).contains(&v) => v,
                        _ => return Err(invalid("expected a number from 1 to 100 (local scales)")),
                    }
                }
                "trending_window_days" => hp.trending_window_days = positive()?,
                "softmax_temperature" => hp.softmax_temperature = positive()?,
                "perform_hpo" => hp.perform_hpo = boolean()?,
                "use_location" => hp.use_location = boolean()?,
                "use_season" => hp.use_season = boolean()?,
                "use_time_of_day" => hp.use_time_of_day = boolean()?,
                "use_local_events" => hp.use_local_events = boolean()?,
                "new_outing_after_hours" => {
                    hp.new_outing_after_hours = match value.trim().parse::<f32>() {
                        Ok(v) if v.is_finite() && v >= 0.0 => v,
                        _ => return Err(invalid("expected hours ≥ 0 (0 switches it off)")),
                    }
                }
                "hpo_budget" => hp.hpo_budget = count()?,
                "validation_users" => hp.validation_users = count()?,
                "exploration_weight" => hp.exploration_weight = fraction()?,
                "taste_smoothing" => hp.taste_smoothing = fraction()?,
                "time_of_day_bandwidth_hours" => {
                    hp.time_of_day_bandwidth_hours = match value.trim().parse::<f32>() {
                        Ok(v) if (0.0..=3.0).contains(&v) => v,
                        _ => return Err(invalid("expected hours from 0 to 3")),
                    }
                }
                "seed" => hp.seed = value.trim().parse().map_err(|_| invalid("expected a whole number"))?,
                _ => return Err(RecipeError::UnknownHyperparameter(key.clone())),
            }
        }
        Ok(hp)
    }

    /// The weights of `event_types` in index order.
    pub fn weights_for(&self, event_types: &[String]) -> Vec<f32> {
        event_types.iter().map(|t| self.event_weights.get(t).copied().unwrap_or(self.default_event_weight)).collect()
    }

    /// How much an event's value scales its item's weight (1 without a value).
    pub fn value_factor(&self, value: f32, value_scale: f32) -> f32 {
        if value.is_finite() && value_scale > 0.0 {
            let relative = (value / value_scale).clamp(0.0, 1.0);
            1.0 - self.event_value_influence + self.event_value_influence * relative
        } else {
            1.0
        }
    }

    fn collaborative_for(&self, items: usize) -> CollaborativeKind {
        match self.collaborative {
            CollaborativeKind::Auto if items <= self.max_ease_items => CollaborativeKind::Ease,
            CollaborativeKind::Auto => CollaborativeKind::Als,
            other => other,
        }
    }
}

/// Per-user `(item, log-damped summed event weight)` rows, the input of the
/// collaborative models.
pub(crate) fn user_rows(data: &TrainingData, order: &[u32], offsets: &[usize], hp: &Hyperparameters) -> Vec<Vec<(u32, f32)>> {
    use rayon::prelude::*;
    let event_weights = hp.weights_for(data.event_types.ids());
    let value_scale = value_scale(data);
    (0..data.users.len())
        .into_par_iter()
        .map(|u| {
            let entries = order[offsets[u]..offsets[u + 1]]
                .iter()
                .map(|&i| {
                    let e = &data.events[i as usize];
                    (e.item, event_weights[e.event_type as usize], hp.value_factor(e.value.unwrap_or(f32::NAN), value_scale))
                })
                .collect();
            item_weights(entries)
        })
        .collect()
}

/// Per item, from `(item, event weight, value factor)` entries:
/// `ln(1 + Σ weights) · mean value factor`. The logarithm damps repeats
/// (ten views are not ten times one); values scale the result.
pub(crate) fn item_weights(mut entries: Vec<(u32, f32, f32)>) -> Vec<(u32, f32)> {
    entries.sort_unstable_by_key(|&(item, _, _)| item);
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(entries.len());
    let mut start = 0;
    while start < entries.len() {
        let item = entries[start].0;
        let end = start + entries[start..].iter().take_while(|e| e.0 == item).count();
        let group = &entries[start..end];
        let weight: f32 = group.iter().map(|e| e.1).sum();
        let factor = group.iter().map(|e| e.2).sum::<f32>() / group.len() as f32;
        if weight > 0.0 {
            out.push((item, weight.ln_1p() * factor));
        }
        start = end;
    }
    out
}

/// The largest positive event value (0 when the data has none).
fn value_scale(data: &TrainingData) -> f32 {
    data.events.iter().filter_map(|e| e.value).filter(|v| v.is_finite()).fold(0f32, f32::max)
}

/// Fits the learned parts of `recipe` on `data` with `hp`.
pub fn fit_components(data: &TrainingData, recipe: Recipe, hp: &Hyperparameters, progress: Progress) -> Result<Components, RecipeError> {
    let (order, offsets) = data.by_user();
    let popularity = popularity::counts(data);
    let trending = popularity::trending(data, hp.trending_window_days);
    let gap = (hp.transition_max_gap_hours as f64 * 3600.0) as i64;
    let collaborative = if recipe.personalised() {
        let users_with_events = offsets.windows(2).filter(|w| w[1] > w[0]).count();
        if users_with_events < 2 {
            return Err(RecipeError::NotEnoughData(format!(
                "{} needs interactions from at least 2 users, found {users_with_events}",
                recipe.name()
            )));
        }
        let rows = user_rows(data, &order, &offsets, hp);
        match hp.collaborative_for(data.items.len()) {
            CollaborativeKind::Ease | CollaborativeKind::Auto => Collaborative::Ease(ease::train(
                &rows,
                data.items.len(),
                hp.l2_regularization,
                hp.popularity_damping,
                hp.ease_neighbours,
                progress,
            )),
            CollaborativeKind::Als => {
                let params = AlsParams {
                    factors: hp.als_factors,
                    iterations: hp.als_iterations,
                    regularization: hp.als_regularization,
                    alpha: hp.als_alpha,
                    cg_steps: 3,
                    seed: hp.seed,
                };
                Collaborative::Als(als::train(&rows, data.items.len(), &params, &|f| progress(f, "alternating least squares")))
            }
            CollaborativeKind::ItemKnn => Collaborative::Neighbours(sparse::neighbours(data, &order, &offsets, 200)),
        }
    } else if recipe == Recipe::SimilarItems {
        // Scores a user by the items like theirs; `similar_items` uses the same links.
        Collaborative::Neighbours(sparse::neighbours(data, &order, &offsets, 100))
    } else {
        Collaborative::None
    };
    let transitions = recipe.personalised().then(|| sparse::transitions(data, &order, &offsets, gap, 100));
    let cold_items = (0..data.items.len() as u32).filter(|&i| popularity[i as usize] == 0.0).collect();
    let monthly = if hp.use_season { TimeProfile::learn(data, 12, month_of, 0.0) } else { TimeProfile::default() };
    let hourly =
        if hp.use_time_of_day { TimeProfile::learn(data, 24, hour_of, hp.time_of_day_bandwidth_hours) } else { TimeProfile::default() };
    Ok(Components {
        collaborative,
        transitions,
        neighbours: None,
        popularity,
        trending,
        value_scale: value_scale(data),
        cold_items,
        monthly,
        hourly,
    })
}

/// Assembles a model from fitted components.
pub(crate) fn assemble(data: &TrainingData, recipe: Recipe, hp: &Hyperparameters, components: Components, blend: Blend) -> Model {
    let (order, offsets) = data.by_user();
    Model {
        format_version: Model::FORMAT_VERSION,
        derived: Default::default(),
        recipe,
        hyperparameters: hp.clone(),
        items: data.items.clone(),
        event_types: data.event_types.ids().to_vec(),
        item_meta: data.item_meta.clone(),
        components,
        blend,
        moved_on_blend: None,
        histories: Histories::build(data, &order, &offsets, hp.max_history),
        summary: TrainingSummary {
            users: data.users.len(),
            items: data.items.len(),
            interactions: data.events.len(),
            max_timestamp: data.max_timestamp(),
            training_seconds: 0.0,
        },
        tuning: None,
    }
}

/// The fixed blend of the recipes that do not learn one.
fn fixed_blend(recipe: Recipe) -> Option<Blend> {
    let zero = Blend::zero();
    match recipe {
        Recipe::PopularityCount => Some(zero.with(Feature::Popularity, 1.0)),
        Recipe::SimilarItems => Some(zero.with(Feature::Collaborative, 1.0).with(Feature::Popularity, 0.001)),
        Recipe::TrendingNow => Some(zero.with(Feature::Trending, 1.0).with(Feature::Popularity, 0.01)),
        Recipe::UserPersonalization | Recipe::PersonalizedRanking => None,
    }
}

/// Trains `recipe` on `data`. Personalised recipes learn their blend weights
/// (and, with `perform_hpo`, their hyperparameters) on a validation split
/// carved from `data` by `validation`, then fit on all of `data`. Pure and
/// synchronous; runs on the rayon pool.
pub fn train_with(
    data: &TrainingData,
    recipe: Recipe,
    hyperparameters: &Hyperparameters,
    validation: Holdout,
    progress: Progress,
) -> Result<Model, RecipeError> {
    let started = Instant::now();
    if data.events.is_empty() {
        return Err(RecipeError::NotEnoughData(
            "the dataset group has no interactions; import an interactions CSV or send events before training".into(),
        ));
    }
    let (hp, blend, moved_on_blend, report) = match fixed_blend(recipe) {
        Some(blend) => (hyperparameters.clone(), blend, None, None),
        None => {
            let outcome = tuning::tune(data, recipe, hyperparameters, validation, &|f, stage| progress(0.6 * f, stage))?;
            (outcome.hyperparameters, outcome.blend, outcome.moved_on_blend, Some(outcome.report))
        }
    };
    progress(0.6, "fitting on all data");
    let components = fit_components(data, recipe, &hp, &|f, stage| progress(0.6 + 0.4 * f, stage))?;
    let mut model = assemble(data, recipe, &hp, components, blend);
    model.moved_on_blend = moved_on_blend;
    model.tuning = report;
    model.summary.training_seconds = started.elapsed().as_secs_f64();
    progress(1.0, "done");
    Ok(model)
}

/// Trains with a given blend and no tuning (for baselines and ablations).
pub fn train_fixed(
    data: &TrainingData,
    recipe: Recipe,
    hp: &Hyperparameters,
    blend: Blend,
    progress: Progress,
) -> Result<Model, RecipeError> {
    let started = Instant::now();
    let components = fit_components(data, recipe, hp, progress)?;
    let mut model = assemble(data, recipe, hp, components, blend);
    model.summary.training_seconds = started.elapsed().as_secs_f64();
    Ok(model)
}

/// [`train_with`] validating on each user's newest interaction, or their last trip where it began somewhere new ([`Holdout::LastItemOrArrival`]).
pub fn train(data: &TrainingData, recipe: Recipe, hyperparameters: &Hyperparameters, progress: Progress) -> Result<Model, RecipeError> {
    train_with(data, recipe, hyperparameters, Holdout::LastItemOrArrival, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipes_parse_from_names_and_arns() {
        assert_eq!(Recipe::parse("user-personalization"), Ok(Recipe::UserPersonalization));
        assert_eq!(Recipe::parse("arn:aws:personalize:::recipe/aws-user-personalization"), Ok(Recipe::UserPersonalization));
        assert_eq!(Recipe::parse("arn:aws:personalize:::recipe/aws-user-personalization-v2"), Ok(Recipe::UserPersonalization));
        assert_eq!(Recipe::parse("aws-popularity-count"), Ok(Recipe::PopularityCount));
        assert_eq!(Recipe::parse("arn:aws:personalize:::recipe/aws-sims"), Ok(Recipe::SimilarItems));
        assert_eq!(Recipe::parse("trending-now"), Ok(Recipe::TrendingNow));
        assert!(matches!(Recipe::parse("magic"), Err(RecipeError::UnknownRecipe { .. })));
    }

    #[test]
    fn hyperparameters_are_validated() {
        let map = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(Hyperparameters::from_map(&map("l2_regularization", "50")).unwrap().l2_regularization, 50.0);
        assert_eq!(Hyperparameters::from_map(&map("event_weight.like", "7")).unwrap().event_weights["like"], 7.0);
        assert_eq!(Hyperparameters::from_map(&map("collaborative", "als")).unwrap().collaborative, CollaborativeKind::Als);
        assert!(Hyperparameters::from_map(&map("perform_hpo", "true")).unwrap().perform_hpo);
        assert!(matches!(Hyperparameters::from_map(&map("l2_regularization", "-1")), Err(RecipeError::InvalidHyperparameter { .. })));
        assert!(matches!(Hyperparameters::from_map(&map("collaborative", "magic")), Err(RecipeError::InvalidHyperparameter { .. })));
        assert!(matches!(Hyperparameters::from_map(&map("lambda", "1")), Err(RecipeError::UnknownHyperparameter(_))));
    }

    #[test]
    fn training_without_interactions_says_what_to_do() {
        let err = train(&TrainingData::default(), Recipe::PopularityCount, &Hyperparameters::default(), &crate::no_progress).unwrap_err();
        assert!(err.to_string().contains("import an interactions CSV"));
    }
}
