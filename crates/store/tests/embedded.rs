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

#[tokio::test]
async fn a_model_write_cut_short_is_cleared_on_open_and_the_snapshots_stay() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store.put_model("arn:solution/kept", vec![1, 2, 3]).await.unwrap();
    }
    // What a crash between writing aside and renaming leaves.
    let leftover = dir.path().join("models").join("arn%3Asolution%2Fhalf.model.tmp");
    std::fs::write(&leftover, [9u8; 4]).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert!(!leftover.exists(), "the half-written snapshot is removed");
    assert_eq!(store.get_model("arn:solution/kept").await.unwrap(), Some(vec![1, 2, 3]));
    let files: Vec<String> =
        std::fs::read_dir(dir.path().join("models")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
}

#[test]
fn a_leftover_that_cannot_be_removed_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    // A directory by that name: remove_file refuses it, even for root.
    std::fs::create_dir(dir.path().join("models").join("odd.model.tmp")).unwrap();
    let err = EmbeddedStore::open(dir.path()).err().expect("the open must fail");
    let message = err.to_string();
    assert!(message.contains("odd.model.tmp") && message.contains("delete it by hand"), "{message}");
}
