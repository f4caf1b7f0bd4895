//! Small `evaluate` runs on the shared public data (skipped with a message
//! when `../shared/datasets` is absent).

use std::path::{Path, PathBuf};
use travelrec_eval::{EvalConfig, ImplicitBaseline, Protocol, Report, evaluate, load};

fn datasets() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!("skipped: {} is absent", root.display());
        None
    }
}

fn config(protocol: Protocol) -> EvalConfig {
    EvalConfig { protocol, seeds: vec![42], hpo: false, max_test_users: Some(150), implicit: None, hyperparameters: Default::default() }
}

fn metric(report: &Report, method: &str, key: &str) -> f64 {
    report.results.iter().find(|r| r.method == method).unwrap_or_else(|| panic!("no {method}")).metrics[key]
}

#[test]
fn evaluation_is_deterministic_for_a_seed() {
    let Some(root) = datasets() else { return };
    let dataset = load("flickr-osaka", &root).unwrap();
    let first = evaluate(&dataset, &config(Protocol::LeaveLastOut), &|_| {});
    let second = evaluate(&dataset, &config(Protocol::LeaveLastOut), &|_| {});
    let metrics = |r: &Report| r.results.iter().map(|m| (m.method.clone(), m.metrics.clone())).collect::<Vec<_>>();
    assert_eq!(metrics(&first), metrics(&second));
    let other_seed = evaluate(&dataset, &EvalConfig { seeds: vec![7], ..config(Protocol::LeaveLastOut) }, &|_| {});
    assert_ne!(metrics(&first), metrics(&other_seed), "the seed must matter (it picks the test users)");
}

#[test]
fn the_context_gain_compares_the_two_models_on_the_same_users() {
    let Some(root) = datasets() else { return };
    let dataset = load("flickr-osaka", &root).unwrap();
    let report = evaluate(&dataset, &config(Protocol::LeaveLastOut), &|_| {});
    let gain = report.context_gain.as_ref().expect("leave-last-out has context");
    let key = "normalized_discounted_cumulative_gain_at_10";
    let (with, without) = (metric(&report, "travelrec", key), metric(&report, "travelrec-no-context", key));
    assert!((gain.with_context - with).abs() < 1e-9 && (gain.without_context - without).abs() < 1e-9, "{gain:?}");
    assert!((gain.difference - (with - without)).abs() < 1e-9);
    assert!(gain.users <= 150 && gain.better + gain.worse <= gain.users && gain.standard_error > 0.0, "{gain:?}");
    assert!(report.table().contains("context, user by user"));
    // The stratified protocol has no context to compare.
    let stratified = evaluate(&dataset, &config(Protocol::Stratified7525), &|_| {});
    assert!(stratified.context_gain.is_none());
}

#[test]
fn movielens_slice_beats_popularity_on_the_stratified_protocol() {
    let Some(root) = datasets() else { return };
    let dataset = load("ml-100k", &root).unwrap();
    let implicit = ImplicitBaseline::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").as_path());
    let report = evaluate(&dataset, &EvalConfig { implicit: Some(implicit), ..config(Protocol::Stratified7525) }, &|_| {});
    println!("{}", report.table());
    let ndcg = "normalized_discounted_cumulative_gain_at_10";
    assert!(metric(&report, "travelrec", ndcg) > 1.3 * metric(&report, "popularity", ndcg), "{}", report.table());
    assert!(metric(&report, "travelrec", "precision_at_10") > 0.3, "{}", report.table());
    // The Python baselines run when installed (scripts/install-baselines.sh); otherwise the table says why not.
    let als = report.results.iter().find(|r| r.method == "implicit-als").unwrap();
    match &als.note {
        Some(note) => eprintln!("implicit baselines unavailable: {note}"),
        None => assert!(als.metrics[ndcg] > metric(&report, "popularity", ndcg)),
    }
}

#[test]
fn trajectories_beat_popularity_on_osaka() {
    let Some(root) = datasets() else { return };
    let dataset = load("flickr-osaka", &root).unwrap();
    let report = evaluate(&dataset, &config(Protocol::Trajectory), &|_| {});
    println!("{}", report.table());
    assert!(metric(&report, "travelrec", "f1") > metric(&report, "popularity", "f1"), "{}", report.table());
}

#[test]
fn every_loader_reads_its_data_set() {
    let Some(root) = datasets() else { return };
    for (name, users, items) in [
        ("ml-100k", 943, 1682),
        ("flickr-toronto", 1395, 29),
        ("flickr-glasgow", 601, 27),
        ("themepark", 2593, 25),
        ("foursquare", 4969, 8000),
    ] {
        let dataset = load(name, &root).unwrap();
        assert_eq!((dataset.data.users.len(), dataset.data.items.len()), (users, items), "{name}");
        if name.starts_with("flickr") || name == "themepark" || name == "foursquare" {
            assert!(dataset.data.item_meta.iter().all(|m| m.location.is_some()), "{name}: every POI has coordinates");
        }
    }
    let err = load("no-such-data", &root).unwrap_err();
    assert!(err.to_string().contains("known: ml-100k"), "{err}");
}

#[test]
fn each_seed_of_the_generated_data_is_a_world_of_its_own() {
    // The generated data needs nothing from ../shared.
    let dataset = load("generated", Path::new("no-shared-data-needed")).unwrap();
    assert_eq!(dataset.generator_seed, Some(42));
    assert!(matches!(dataset.for_seed(42).unwrap(), std::borrow::Cow::Borrowed(_)));
    let other = dataset.for_seed(43).unwrap();
    assert_eq!(other.generator_seed, Some(43));
    assert_ne!(other.data.events[..100], dataset.data.events[..100]);
    // The same seed makes the same world.
    assert_eq!(dataset.for_seed(43).unwrap().data.events, other.data.events);
    // A public data set is itself whatever the seed.
    if let Some(root) = datasets() {
        let osaka = load("flickr-osaka", &root).unwrap();
        assert!(matches!(osaka.for_seed(43).unwrap(), std::borrow::Cow::Borrowed(_)));
    }
}
