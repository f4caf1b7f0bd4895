//! The travelrec engine: pure, synchronous recommendation logic.
//!
//! Data in ([`TrainingData`]), model out ([`Model`]), scores out
//! ([`Model::recommend`]). Nothing here knows about HTTP, async runtimes or
//! storage formats beyond the model's own byte encoding.

pub mod als;
pub mod context;
mod ease;
pub mod filter;
mod ids;
mod kernels;
pub mod metrics;
mod model;
mod popularity;
mod recipe;
pub mod sparse;
pub mod split;
mod topk;
mod training_data;
pub mod tuning;

pub use context::{ActiveEvent, Context, LocalEvent};
pub use ease::EaseModel;
pub use ids::IdIndex;
pub use model::{
    Blend, Candidate, Collaborative, Components, FEATURE_NAMES, FEATURES, Feature, FeatureBuffers, HistoryEvent, Model, ModelError,
    Profile, PromotedItems, Promotion, Query, RankedCandidate, ScoreFilter, ScoredItem, TrainingSummary, distance_km, popularity_feature,
};
pub use recipe::{CollaborativeKind, Hyperparameters, Recipe, RecipeError, fit_components, train, train_fixed, train_with};
pub use topk::{Softmax, softmax_in_place, top_k};
pub use training_data::{ItemMeta, TrainingData, TrainingDataBuilder, TrainingEvent};

/// Reports training progress: a fraction in `0.0..=1.0` and a short stage name.
pub type Progress<'a> = &'a (dyn Fn(f32, &str) + Sync);

/// A progress sink that ignores everything.
pub fn no_progress(_: f32, _: &str) {}
