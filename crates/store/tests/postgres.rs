//! The PostgreSQL backend against a real server: `TRAVELREC_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`, the CI service), each
//! test in a schema of its own, dropped at the end.

use travelrec_store::*;

fn database_url() -> String {
    std::env::var("TRAVELREC_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema no other test run uses.
fn fresh_schema(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("test_{name}_{}_{nanos}", std::process::id())
}

async fn connect(schema: &str) -> PostgresStore {
    PostgresStore::connect(&database_url(), schema).await.unwrap_or_else(|e| {
        panic!("{e}\nthe PostgreSQL backend's tests need a server: start one, or point TRAVELREC_TEST_DATABASE_URL at one")
    })
}

/// The URL with `sslmode` set.
fn with_sslmode(mode: &str) -> String {
    let url = database_url();
    format!("{url}{}sslmode={mode}", if url.contains('?') { '&' } else { '?' })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_encrypted_as_the_url_asks() {
    let schema = fresh_schema("tls");
    let plain = PostgresStore::connect(&with_sslmode("disable"), &schema).await.unwrap();
    assert!(!plain.tls().await.unwrap());
    let offered: bool = {
        let pool = sqlx::PgPool::connect(&with_sslmode("disable")).await.unwrap();
        let on: String = sqlx::query_scalar("SHOW ssl").fetch_one(&pool).await.unwrap();
        on == "on"
    };
    if !offered {
        eprintln!("skipped the TLS half: the server at {} has ssl off", database_url());
        plain.drop_schema(&schema).await.unwrap();
        return;
    }
    let encrypted = PostgresStore::connect(&with_sslmode("require"), &schema).await.unwrap();
    assert!(encrypted.tls().await.unwrap());
    // Debian's server certificate is self-signed: verifying it against the
    // Mozilla roots fails, and says so.
    let err = PostgresStore::connect(&with_sslmode("verify-full"), &schema).await.err().expect("an untrusted certificate is refused");
    assert!(err.to_string().contains("cannot connect") && err.to_string().contains("sslrootcert"), "{err}");
    encrypted.drop_schema(&schema).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    let schema = fresh_schema("conformance");
    let store = connect(&schema).await;
    conformance::run_all(&store).await;
    store.drop_schema(&schema).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_share_one_schema_and_unfinished_imports_stay_invisible() {
    let schema = fresh_schema("shared");
    let (first, second) = (connect(&schema).await, connect(&schema).await);
    let dataset = "arn:aws:personalize:local:000000000000:dataset/g/ITEMS";
    let item = |id: &str| ItemRow { item_id: id.into(), fields: vec![] };
    let mut import = first.begin_import(dataset, ImportMode::Full).await.unwrap();
    import.write(RowBatch::Items(vec![item("1"), item("2")])).await.unwrap();
    assert_eq!(second.row_count(dataset).await.unwrap(), 0, "nothing visible before the commit");
    // Another process connecting meanwhile must not take a live import for an abandoned one.
    let third = connect(&schema).await;
    assert_eq!(import.commit().await.unwrap(), 2);
    assert_eq!((second.row_count(dataset).await.unwrap(), third.row_count(dataset).await.unwrap()), (2, 2));
    first.put_model("m", vec![7; 3 << 20]).await.unwrap();
    assert_eq!(second.get_model("m").await.unwrap().map(|b| b.len()), Some(3 << 20));
    drop((second, third));
    first.drop_schema(&schema).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_serves_one_process_at_a_time() {
    let schema = fresh_schema("exclusive");
    let first = PostgresStore::connect_exclusive(&database_url(), &schema).await.unwrap();
    let err = PostgresStore::connect_exclusive(&database_url(), &schema).await.err().expect("the schema is taken");
    assert!(err.to_string().contains(&format!("schema `{schema}` is in use by another travelrec process")), "{err}");
    drop(first);
    // The lock goes with the session (closed by a task a moment after the drop).
    let mut again = None;
    for _ in 0..50 {
        match PostgresStore::connect_exclusive(&database_url(), &schema).await {
            Ok(store) => {
                again = Some(store);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let again = again.expect("the schema is free again after the first store is dropped");
    again.drop_schema(&schema).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_schema_lock_refuses_writes() {
    let schema = fresh_schema("lost");
    let store = PostgresStore::connect_exclusive(&database_url(), &schema).await.unwrap();
    store.put_model("m", vec![1]).await.unwrap();
    // A failover, as the watcher sees it: the locking session ends.
    let admin = PostgresStore::connect(&database_url(), &schema).await.unwrap();
    admin.terminate_lock_holders(&schema).await.unwrap();
    let refused = async {
        for _ in 0..100 {
            if let Err(e) = store.put_model("m", vec![2]).await {
                return e.to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("writes still accepted 10 s after the lock was lost");
    }
    .await;
    assert!(refused.contains("lock is gone"), "{refused}");
    // (Writes went through until the check noticed, within 5 s.)
    assert_eq!(store.get_model("m").await.unwrap(), Some(vec![2]), "reads still work");
    drop(store);
    admin.drop_schema(&schema).await.unwrap();
}

#[tokio::test]
async fn a_bad_url_or_schema_name_is_refused_with_the_reason() {
    let err = PostgresStore::connect("postgres://nobody:secret@127.0.0.1:1/none", "s").await.err().expect("nothing listens on port 1");
    let message = err.to_string();
    assert!(message.contains("cannot connect to PostgreSQL at postgres://nobody@127.0.0.1:1/none"), "{message}");
    assert!(!message.contains("secret"), "no password in errors: {message}");
    let err = PostgresStore::connect(&database_url(), "Robert'); DROP").await.err().unwrap();
    assert!(err.to_string().contains("use lower-case letters, digits and _"), "{err}");
}
