use crate::TrainingData;

/// Number of interactions per item (all event types), the `popularity-count`
/// recipe's score and the fallback for users without history.
pub fn counts(data: &TrainingData) -> Vec<f32> {
    let mut counts = vec![0f32; data.items.len()];
    for e in &data.events {
        counts[e.item as usize] += 1.0;
    }
    counts
}
