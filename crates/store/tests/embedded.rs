use travelrec_store::*;

#[tokio::test]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    conformance::run_all(&store).await;
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    let err = EmbeddedStore::open(dir.path()).err().expect("second open must fail");
    assert!(err.to_string().contains("in use by another travelrec process"), "{err}");
}
