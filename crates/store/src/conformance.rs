//! The behaviour every [`Store`] backend must show. Backends call
//! [`run_all`] from their tests with a fresh, empty store.

use crate::*;

fn interaction(user: &str, item: &str, timestamp: i64) -> InteractionRow {
    InteractionRow {
        user_id: user.into(),
        item_id: item.into(),
        timestamp,
        event_type: "click".into(),
        event_value: None,
        session_id: None,
        fields: vec![("DEVICE".into(), "mobile".into())],
    }
}

fn campaign(name: &str, status: Status) -> Campaign {
    Campaign {
        name: name.into(),
        campaign_arn: ArnBuilder::default().arn(ResourceKind::Campaign, name),
        solution_version_arn: "arn:aws:personalize:local:000000000000:solution/s/v0".into(),
        min_provisioned_tps: 1,
        lifecycle: Lifecycle::new(status),
        latest_campaign_update: None,
    }
}

async fn all_rows(store: &dyn Store, dataset: &str) -> Vec<InteractionRow> {
    let mut cursor = RowCursor::default();
    let mut out = Vec::new();
    while let Some((batch, next)) = store.read_rows(dataset, cursor).await.unwrap() {
        match batch {
            RowBatch::Interactions(rows) => out.extend(rows),
            other => panic!("unexpected batch {other:?}"),
        }
        cursor = next;
    }
    out
}

pub async fn run_all(store: &dyn Store) {
    resources_have_a_lifecycle(store).await;
    imports_are_all_or_nothing(store).await;
    full_imports_replace_and_incremental_imports_add(store).await;
    events_are_stored_once_by_position_and_event_id(store).await;
    rows_can_be_appended_one_batch_at_a_time(store).await;
    model_snapshots_round_trip(store).await;
    solution_versions_keep_their_event_cutoff(store).await;
    a_user_is_erased_from_rows_and_events(store).await;
    erasure_reaches_every_chunk_of_a_large_import(store).await;
}

/// A version trained after events were tracked records, per log partition,
/// the newest event it includes; it must read back (integer map keys inside
/// a resource with flattened fields once made it unreadable).
async fn solution_versions_keep_their_event_cutoff(store: &dyn Store) {
    let now = chrono::Utc::now();
    let version = SolutionVersion {
        name: "v1".into(),
        solution_version_arn: "arn:aws:personalize:local:000000000000:solution/conformance/v1".into(),
        solution_arn: "arn:aws:personalize:local:000000000000:solution/conformance".into(),
        dataset_group_arn: "arn:aws:personalize:local:000000000000:dataset-group/conformance".into(),
        recipe_arn: "arn:aws:personalize:::recipe/aws-user-personalization".into(),
        training_mode: "FULL".into(),
        lifecycle: Lifecycle { status: Status::Active, failure_reason: None, creation_date_time: now, last_updated_date_time: now },
        percent_complete: 100.0,
        training_hours: Some(0.01),
        training_summary: None,
        metrics: Some([("coverage".to_string(), 0.5)].into()),
        tuned_hpo_params: None,
        events_through: [(0, 41), (3, 7)].into(),
    };
    store.insert(version.clone()).await.unwrap();
    assert_eq!(store.get::<SolutionVersion>(&version.solution_version_arn).await.unwrap(), Some(version.clone()));
    assert!(store.list::<SolutionVersion>().await.unwrap().contains(&version));
    store.delete_resource(&version.solution_version_arn).await.unwrap();
}

async fn resources_have_a_lifecycle(store: &dyn Store) {
    let mut c = campaign("conformance", Status::CreatePending);
    store.insert(c.clone()).await.unwrap();
    assert!(matches!(store.insert(c.clone()).await, Err(StoreError::AlreadyExists { .. })));
    c.lifecycle.set(Status::Active);
    store.put(c.clone()).await.unwrap();
    assert_eq!(store.get::<Campaign>(&c.campaign_arn).await.unwrap(), Some(c.clone()));
    assert_eq!(store.get::<Solution>(&c.campaign_arn).await.unwrap(), None, "typed get must check the type");
    assert!(store.list::<Campaign>().await.unwrap().contains(&c));
    assert!(store.delete_resource(&c.campaign_arn).await.unwrap());
    assert!(!store.delete_resource(&c.campaign_arn).await.unwrap());
    assert_eq!(store.get::<Campaign>(&c.campaign_arn).await.unwrap(), None);
}

async fn imports_are_all_or_nothing(store: &dyn Store) {
    let dataset = "arn:aws:personalize:local:000000000000:dataset/conformance/INTERACTIONS";
    let mut import = store.begin_import(dataset, ImportMode::Full).await.unwrap();
    import.write(RowBatch::Interactions(vec![interaction("u1", "i1", 1)])).await.unwrap();
    assert_eq!(store.row_count(dataset).await.unwrap(), 0, "uncommitted rows must be invisible");
    assert!(all_rows(store, dataset).await.is_empty());
    import.abort().await.unwrap();
    assert_eq!(store.row_count(dataset).await.unwrap(), 0);

    let mut import = store.begin_import(dataset, ImportMode::Full).await.unwrap();
    import.write(RowBatch::Interactions(vec![interaction("u1", "i1", 1), interaction("u2", "i2", 2)])).await.unwrap();
    import.write(RowBatch::Interactions(vec![interaction("u3", "i3", 3)])).await.unwrap();
    assert_eq!(import.commit().await.unwrap(), 3);
    assert_eq!(store.row_count(dataset).await.unwrap(), 3);
    let users: Vec<String> = all_rows(store, dataset).await.into_iter().map(|r| r.user_id).collect();
    assert_eq!(users, vec!["u1", "u2", "u3"]);

    // An import dropped half-way leaves the committed rows as they were.
    let mut import = store.begin_import(dataset, ImportMode::Full).await.unwrap();
    import.write(RowBatch::Interactions(vec![interaction("x", "y", 9)])).await.unwrap();
    drop(import);
    assert_eq!(store.row_count(dataset).await.unwrap(), 3);
    store.delete_rows(dataset).await.unwrap();
    assert_eq!(store.row_count(dataset).await.unwrap(), 0);
}

async fn full_imports_replace_and_incremental_imports_add(store: &dyn Store) {
    let dataset = "arn:aws:personalize:local:000000000000:dataset/conformance-modes/INTERACTIONS";
    for (mode, user) in [(ImportMode::Full, "first"), (ImportMode::Full, "second"), (ImportMode::Incremental, "third")] {
        let mut import = store.begin_import(dataset, mode).await.unwrap();
        import.write(RowBatch::Interactions(vec![interaction(user, "i", 1)])).await.unwrap();
        import.commit().await.unwrap();
    }
    let users: Vec<String> = all_rows(store, dataset).await.into_iter().map(|r| r.user_id).collect();
    assert_eq!(users, vec!["second", "third"]);
}

fn tracked(user: &str, item: &str, timestamp: i64) -> TrackedEvent {
    TrackedEvent {
        interaction: interaction(user, item, timestamp),
        received_at: 1_800_000_000 + timestamp,
        event_id: format!("{user}-{item}-{timestamp}"),
        recommendation_id: None,
        impression: vec!["x".into()],
    }
}

fn at(partition: u32, sequence: u64, index: u32) -> EventPosition {
    EventPosition { partition, sequence, index }
}

async fn events_are_stored_once_by_position_and_event_id(store: &dyn Store) {
    let group = "arn:aws:personalize:local:000000000000:dataset-group/conformance";
    let other = "arn:aws:personalize:local:000000000000:dataset-group/conformance-other";
    store.put_events(group, vec![(at(1, 7, 0), tracked("u", "a", 1)), (at(1, 7, 1), tracked("u", "b", 2))]).await.unwrap();
    store.put_events(other, vec![(at(0, 1, 0), tracked("v", "c", 3))]).await.unwrap();
    store.put_events(group, vec![(at(0, 9, 0), tracked("u", "d", 4))]).await.unwrap();
    // Replays (same position) and repeats (same event id elsewhere) change nothing.
    store.put_events(group, vec![(at(1, 7, 0), tracked("u", "a", 1)), (at(3, 1, 0), tracked("u", "b", 2))]).await.unwrap();
    let events = store.read_events(group, None, 10).await.unwrap();
    let positions: Vec<EventPosition> = events.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, vec![at(0, 9, 0), at(1, 7, 0), at(1, 7, 1)]);
    assert_eq!(events[1].1, tracked("u", "a", 1));
    let after = store.read_events(group, Some(at(1, 7, 0)), 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, at(1, 7, 1));
    assert_eq!(store.read_events(group, None, 1).await.unwrap().len(), 1);
    let ids = vec!["u-a-1".to_string(), "nope".to_string(), "u-b-2".to_string()];
    assert_eq!(store.known_event_ids(group, ids.clone()).await.unwrap(), vec!["u-a-1", "u-b-2"]);
    assert!(store.known_event_ids(other, ids).await.unwrap().is_empty());
    // Within one batch too: of two events with one id, the first is kept.
    store.put_events(other, vec![(at(5, 1, 0), tracked("w", "x", 9)), (at(5, 1, 1), tracked("w", "x", 9))]).await.unwrap();
    let kept: Vec<EventPosition> = store.read_events(other, None, 10).await.unwrap().into_iter().map(|(p, _)| p).collect();
    assert_eq!(kept, vec![at(0, 1, 0), at(5, 1, 0)]);
}

async fn a_user_is_erased_from_rows_and_events(store: &dyn Store) {
    let group = "arn:aws:personalize:local:000000000000:dataset-group/conformance-erase";
    let interactions = "arn:aws:personalize:local:000000000000:dataset/conformance-erase/INTERACTIONS".to_string();
    let users = "arn:aws:personalize:local:000000000000:dataset/conformance-erase/USERS".to_string();
    let mut import = store.begin_import(&interactions, ImportMode::Full).await.unwrap();
    import.write(RowBatch::Interactions(vec![interaction("gone", "a", 1), interaction("kept", "a", 2)])).await.unwrap();
    import.write(RowBatch::Interactions(vec![interaction("gone", "b", 3)])).await.unwrap();
    import.commit().await.unwrap();
    store.append_rows(&interactions, RowBatch::Interactions(vec![interaction("kept", "c", 4), interaction("gone", "c", 5)])).await.unwrap();
    let user = |id: &str| UserRow { user_id: id.into(), fields: vec![("AGE".into(), "34".into())] };
    store.append_rows(&users, RowBatch::Users(vec![user("gone"), user("kept")])).await.unwrap();
    store.put_events(group, vec![(at(0, 1, 0), tracked("gone", "a", 6)), (at(0, 1, 1), tracked("kept", "a", 7))]).await.unwrap();
    store.put_events(group, vec![(at(2, 4, 0), tracked("gone", "d", 8))]).await.unwrap();

    let erased = store.erase_user(group, &[interactions.clone(), users.clone()], "gone").await.unwrap();
    assert_eq!(erased, ErasedRows { rows: 4, tracked_events: 2 });
    let left: Vec<(String, String)> = all_rows(store, &interactions).await.into_iter().map(|r| (r.user_id, r.item_id)).collect();
    assert_eq!(left, vec![("kept".to_string(), "a".to_string()), ("kept".to_string(), "c".to_string())]);
    assert_eq!(store.row_count(&interactions).await.unwrap(), 2);
    assert_eq!(store.row_count(&users).await.unwrap(), 1);
    let events = store.read_events(group, None, 10).await.unwrap();
    assert_eq!(events.iter().map(|(p, e)| (*p, e.interaction.user_id.as_str())).collect::<Vec<_>>(), vec![(at(0, 1, 1), "kept")]);
    // Their event ids went too (a retried event of theirs would be new), other users' stayed.
    let ids = vec!["gone-a-6".to_string(), "kept-a-7".to_string()];
    assert_eq!(store.known_event_ids(group, ids).await.unwrap(), vec!["kept-a-7"]);
    // Erasing again finds nothing.
    assert_eq!(store.erase_user(group, &[interactions, users], "gone").await.unwrap(), ErasedRows::default());
}

/// More chunks than a backend reads at once: an erasure that pages through
/// them must reach the last page.
async fn erasure_reaches_every_chunk_of_a_large_import(store: &dyn Store) {
    let group = "arn:aws:personalize:local:000000000000:dataset-group/conformance-erase-large";
    let interactions = "arn:aws:personalize:local:000000000000:dataset/conformance-erase-large/INTERACTIONS".to_string();
    let mut import = store.begin_import(&interactions, ImportMode::Full).await.unwrap();
    for chunk in 0..150 {
        let user = if chunk % 2 == 0 { "gone" } else { "kept" };
        import.write(RowBatch::Interactions(vec![interaction(user, &format!("i{chunk}"), chunk)])).await.unwrap();
    }
    import.commit().await.unwrap();
    let erased = store.erase_user(group, std::slice::from_ref(&interactions), "gone").await.unwrap();
    assert_eq!(erased.rows, 75);
    let left = all_rows(store, &interactions).await;
    assert_eq!(left.len(), 75);
    assert!(left.iter().all(|r| r.user_id == "kept"));
    assert_eq!(left.last().map(|r| r.item_id.as_str()), Some("i149"));
    assert_eq!(store.row_count(&interactions).await.unwrap(), 75);
}

async fn rows_can_be_appended_one_batch_at_a_time(store: &dyn Store) {
    let dataset = "arn:aws:personalize:local:000000000000:dataset/conformance-append/ITEMS";
    let item = |id: &str| ItemRow { item_id: id.into(), fields: vec![("GENRE".into(), "Museum".into())] };
    let mut import = store.begin_import(dataset, ImportMode::Full).await.unwrap();
    import.write(RowBatch::Items(vec![item("1")])).await.unwrap();
    import.commit().await.unwrap();
    store.append_rows(dataset, RowBatch::Items(vec![item("2"), item("3")])).await.unwrap();
    assert_eq!(store.row_count(dataset).await.unwrap(), 3);
}

async fn model_snapshots_round_trip(store: &dyn Store) {
    let key = "arn:aws:personalize:local:000000000000:solution/s/v0";
    assert_eq!(store.get_model(key).await.unwrap(), None);
    store.put_model(key, vec![1, 2, 3]).await.unwrap();
    store.put_model(key, vec![4, 5]).await.unwrap();
    assert_eq!(store.get_model(key).await.unwrap(), Some(vec![4, 5]));
    assert_eq!(store.get_model("arn:aws:personalize:local:000000000000:solution/s_v0").await.unwrap(), None);
    store.delete_model(key).await.unwrap();
    assert_eq!(store.get_model(key).await.unwrap(), None);
}
