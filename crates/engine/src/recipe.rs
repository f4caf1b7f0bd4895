//! Recipes (what to train) and their hyperparameters.

use crate::model::{Histories, Model, Scorer, TrainingSummary};
use crate::{Progress, TrainingData, ease, popularity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// A training recipe. Names and ARNs follow the managed service so that
/// clients written for it can pass either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recipe {
    /// Collaborative filtering (EASE) over weighted, recency-aware
    /// interactions, with the user's newest events folded in at query time.
    UserPersonalization,
    /// The most interacted-with items, the same for everyone.
    PopularityCount,
}

impl Recipe {
    pub const ALL: [Recipe; 2] = [Recipe::UserPersonalization, Recipe::PopularityCount];

    pub fn name(self) -> &'static str {
        match self {
            Recipe::UserPersonalization => "user-personalization",
            Recipe::PopularityCount => "popularity-count",
        }
    }

    /// The managed service's ARN for this recipe.
    pub fn arn(self) -> String {
        format!("arn:aws:personalize:::recipe/aws-{}", self.name())
    }

    /// Accepts `user-personalization`, `aws-user-personalization` or the full ARN
    /// (and `aws-user-personalization-v2`, which clients of the managed service use).
    pub fn parse(value: &str) -> Result<Recipe, RecipeError> {
        let name = value.rsplit('/').next().unwrap_or(value);
        let name = name.strip_prefix("aws-").unwrap_or(name);
        let name = name.strip_suffix("-v2").unwrap_or(name);
        Recipe::ALL.into_iter().find(|r| r.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Recipe::ALL.iter().map(|r| r.name()).collect();
            RecipeError::UnknownRecipe { given: value.to_string(), known: known.join(", ") }
        })
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
    #[error("{0}")]
    TooLarge(String),
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
    /// L2 regularisation of EASE (its λ): larger values trust co-occurrence less.
    pub l2_regularization: f32,
    /// At query time, an event this many days older than the user's newest
    /// event counts half as much.
    pub recency_half_life_days: f32,
    /// How many of a user's newest events are kept and scored.
    pub max_history: usize,
    /// Temperature of the catalogue-wide softmax that turns scores into
    /// probabilities (on standardised scores); higher is flatter.
    pub softmax_temperature: f32,
    /// EASE keeps an items × items matrix; above this many items training
    /// refuses rather than exhausting memory.
    pub max_ease_items: usize,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            event_weights: [("view", 1.0), ("click", 2.0), ("watch", 3.0), ("book", 5.0)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            default_event_weight: 1.0,
            l2_regularization: 200.0,
            recency_half_life_days: 14.0,
            max_history: 200,
            softmax_temperature: 2.0,
            max_ease_items: 12_000,
        }
    }
}

impl Hyperparameters {
    pub const KEYS: &'static [&'static str] = &[
        "event_weight.<type>",
        "default_event_weight",
        "l2_regularization",
        "recency_half_life_days",
        "max_history",
        "softmax_temperature",
        "max_ease_items",
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
                "l2_regularization" => hp.l2_regularization = positive()?,
                "recency_half_life_days" => hp.recency_half_life_days = positive()?,
                "max_history" => hp.max_history = count()?,
                "softmax_temperature" => hp.softmax_temperature = positive()?,
                "max_ease_items" => hp.max_ease_items = count()?,
                _ => return Err(RecipeError::UnknownHyperparameter(key.clone())),
            }
        }
        Ok(hp)
    }

    /// The weights of `event_types` in index order.
    pub fn weights_for(&self, event_types: &[String]) -> Vec<f32> {
        event_types.iter().map(|t| self.event_weights.get(t).copied().unwrap_or(self.default_event_weight)).collect()
    }
}

/// Trains `recipe` on `data`. Pure and synchronous; runs on the rayon pool.
pub fn train(data: &TrainingData, recipe: Recipe, hyperparameters: &Hyperparameters, progress: Progress) -> Result<Model, RecipeError> {
    let started = Instant::now();
    if data.events.is_empty() {
        return Err(RecipeError::NotEnoughData(
            "the dataset group has no interactions; import an interactions CSV or send events before training".into(),
        ));
    }
    progress(0.0, "grouping interactions by user");
    let weights = hyperparameters.weights_for(data.event_types.ids());
    let (order, offsets) = data.by_user();
    let histories = Histories::build(data, &order, &offsets, hyperparameters.max_history);
    let popularity = popularity::counts(data);
    let scorer = match recipe {
        Recipe::PopularityCount => Scorer::Popularity,
        Recipe::UserPersonalization => {
            if data.items.len() > hyperparameters.max_ease_items {
                return Err(RecipeError::TooLarge(format!(
                    "{} items exceed max_ease_items = {}; raise it if the machine has {} GiB of memory to spare",
                    data.items.len(),
                    hyperparameters.max_ease_items,
                    (data.items.len() as f64).powi(2) * 12.0 / (1u64 << 30) as f64
                )));
            }
            let users_with_events = offsets.windows(2).filter(|w| w[1] > w[0]).count();
            if users_with_events < 2 {
                return Err(RecipeError::NotEnoughData(format!(
                    "user-personalization needs interactions from at least 2 users, found {users_with_events}"
                )));
            }
            Scorer::Ease(ease::train(data, &order, &offsets, &weights, hyperparameters.l2_regularization, progress))
        }
    };
    progress(1.0, "done");
    Ok(Model {
        format_version: Model::FORMAT_VERSION,
        recipe,
        hyperparameters: hyperparameters.clone(),
        items: data.items.clone(),
        event_types: data.event_types.ids().to_vec(),
        popularity,
        scorer,
        histories,
        summary: TrainingSummary {
            users: data.users.len(),
            items: data.items.len(),
            interactions: data.events.len(),
            max_timestamp: data.max_timestamp(),
            training_seconds: started.elapsed().as_secs_f64(),
        },
    })
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
        assert!(matches!(Recipe::parse("magic"), Err(RecipeError::UnknownRecipe { .. })));
    }

    #[test]
    fn hyperparameters_are_validated() {
        let map = |k: &str, v: &str| [(k.to_string(), v.to_string())].into_iter().collect::<BTreeMap<_, _>>();
        assert_eq!(Hyperparameters::from_map(&map("l2_regularization", "50")).unwrap().l2_regularization, 50.0);
        assert_eq!(Hyperparameters::from_map(&map("event_weight.like", "7")).unwrap().event_weights["like"], 7.0);
        assert!(matches!(Hyperparameters::from_map(&map("l2_regularization", "-1")), Err(RecipeError::InvalidHyperparameter { .. })));
        assert!(matches!(Hyperparameters::from_map(&map("lambda", "1")), Err(RecipeError::UnknownHyperparameter(_))));
    }

    #[test]
    fn training_without_interactions_says_what_to_do() {
        let err = train(&TrainingData::default(), Recipe::PopularityCount, &Hyperparameters::default(), &crate::no_progress).unwrap_err();
        assert!(err.to_string().contains("import an interactions CSV"));
    }
}
