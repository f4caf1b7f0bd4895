use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;

/// A bidirectional map between external string ids and dense `u32` indices.
///
/// Serialised as the list of ids only; the lookup table is rebuilt on load.
#[derive(Debug, Clone, Default)]
pub struct IdIndex {
    ids: Vec<String>,
    lookup: HashMap<String, u32>,
}

impl IdIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of `id`, inserting it if new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&index) = self.lookup.get(id) {
            return index;
        }
        let index = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.lookup.insert(id.to_string(), index);
        index
    }

    pub fn get(&self, id: &str) -> Option<u32> {
        self.lookup.get(id).copied()
    }

    pub fn id(&self, index: u32) -> &str {
        &self.ids[index as usize]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }
}

impl From<Vec<String>> for IdIndex {
    fn from(ids: Vec<String>) -> Self {
        let lookup = ids.iter().enumerate().map(|(i, id)| (id.clone(), i as u32)).collect();
        Self { ids, lookup }
    }
}

impl Serialize for IdIndex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.ids.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for IdIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(IdIndex::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_stable_and_round_trips() {
        let mut index = IdIndex::new();
        assert_eq!(index.intern("a"), 0);
        assert_eq!(index.intern("b"), 1);
        assert_eq!(index.intern("a"), 0);
        let bytes = postcard::to_stdvec(&index).unwrap();
        let back: IdIndex = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.get("b"), Some(1));
        assert_eq!(back.id(0), "a");
    }
}
