//! The travelrec engine: pure, synchronous recommendation logic.
//!
//! Data in ([`TrainingData`]), model out ([`Model`]), scores out
//! ([`Model::recommend`]). Nothing here knows about HTTP, async runtimes or
//! storage formats beyond the model's own byte encoding.

mod ease;
mod ids;
mod model;
mod popularity;
mod recipe;
mod topk;
mod training_data;

pub use ids::IdIndex;
pub use model::{HistoryEvent, Model, ModelError, ScoredItem, Scorer, TrainingSummary};
pub use recipe::{Hyperparameters, Recipe, RecipeError, train};
pub use topk::{softmax_in_place, top_k};
pub use training_data::{TrainingData, TrainingDataBuilder, TrainingEvent};

/// Reports training progress: a fraction in `0.0..=1.0` and a short stage name.
pub type Progress<'a> = &'a (dyn Fn(f32, &str) + Sync);

/// A progress sink that ignores everything.
pub fn no_progress(_: f32, _: &str) {}
