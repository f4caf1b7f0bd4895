//! The Flickr trajectory protocol (Chen, Ong, Xie, CIKM'16): leave one
//! trajectory out; given its start POI, end POI and length, recommend the
//! POIs in between; score F1 on the set of POIs (start and end included, as
//! in the paper's code).

use crate::{EvalConfig, EvalDataset, MethodResult, Report};

pub fn evaluate(dataset: &EvalDataset, config: &EvalConfig, log: &dyn Fn(&str)) -> Report {
    log("the trajectory protocol is not available yet");
    Report {
        dataset: dataset.name.clone(),
        protocol: config.protocol,
        users: dataset.data.users.len(),
        items: dataset.data.items.len(),
        interactions: dataset.data.events.len(),
        seeds: config.seeds.clone(),
        results: vec![MethodResult {
            method: "travelrec".into(),
            metrics: Default::default(),
            train_seconds: 0.0,
            users: 0,
            note: Some("not implemented".into()),
        }],
    }
}
