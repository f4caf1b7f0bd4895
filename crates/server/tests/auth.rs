//! API keys over the HTTP surface: with a master key every route but the
//! dashboard's page and health needs a key whose scopes cover it.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use travelrec_server::{ServerOptions, router};
use travelrec_service::{Service, ServiceConfig};
use travelrec_store::{EmbeddedStore, Store};

const MASTER: &str = "a-master-key-for-tests";

async fn start(dir: &Path) -> Service {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).unwrap());
    let log = travelrec_stream::EventLog::open(&dir.join("log"), Default::default()).await.unwrap();
    let service = Service::start(store, log, ServiceConfig::default()).await.unwrap();
    service.ensure_default_resources().await.unwrap();
    service
}

/// Status, `WWW-Authenticate` and JSON body of one request.
async fn call(app: &axum::Router, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, bool, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let (status, challenge) = (response.status(), response.headers().contains_key(header::WWW_AUTHENTICATE));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, challenge, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_master_key_every_route_needs_a_key_with_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let service = start(dir.path()).await;
    let app = router(service.clone(), ServerOptions { master_key: Some(MASTER.into()) });

    // Public: health and the dashboard's page (its data is not).
    assert_eq!(call(&app, "GET", "/v1/health", None, None).await.0, StatusCode::OK);
    let page = app.clone().oneshot(Request::get("/dashboard").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    // No key, an unknown key.
    let (status, challenge, body) = call(&app, "GET", "/v1/campaigns", None, None).await;
    assert_eq!((status, challenge, body["code"].as_str()), (StatusCode::UNAUTHORIZED, true, Some("missing_api_key")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("scope `read`"), "{body}");
    let (status, _, body) = call(&app, "GET", "/v1/dashboard", Some("trk_guess"), None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_api_key")), "{body}");

    // The master key creates a reader; its secret is shown once, its hash never.
    let (status, _, created) =
        call(&app, "POST", "/v1/api-keys", Some(MASTER), Some(json!({"name": "reader", "scopes": ["read", "read"]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let reader = created["key"].as_str().unwrap().to_string();
    assert!(reader.starts_with("trk_") && reader.len() == 68, "{reader}");
    assert_eq!(created["apiKey"]["scopes"], json!(["read"]));
    assert_eq!(created["apiKey"]["prefix"].as_str(), Some(&reader[..12]));
    assert!(created["apiKey"].get("secretSha256").is_none(), "{created}");
    let (_, _, listed) = call(&app, "GET", "/v1/api-keys", Some(MASTER), None).await;
    assert_eq!(listed["items"][0]["name"], "reader");
    assert!(!listed.to_string().contains(&reader) && !listed.to_string().contains("secretSha256"), "{listed}");
    let (status, _, body) = call(&app, "POST", "/v1/api-keys", Some(MASTER), Some(json!({"name": "x", "scopes": ["write"]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("scopes[0]"), "{body}");

    // The reader reads, as X-Api-Key or a bearer token, and nothing more.
    assert_eq!(call(&app, "GET", "/v1/campaigns", Some(&reader), None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/v1/dashboard", Some(&reader), None).await.0, StatusCode::OK);
    for (header, value) in [("authorization", format!("Bearer {reader}")), ("authorization", format!("bearer {reader}"))] {
        let bearer = Request::get("/v1/solutions").header(header, value).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(bearer).await.unwrap().status(), StatusCode::OK);
    }
    // Another scheme in Authorization (a proxy's, say) leaves X-Api-Key to be read.
    let basic =
        Request::get("/v1/solutions").header("authorization", "Basic eDp5").header("x-api-key", &reader).body(Body::empty()).unwrap();
    assert_eq!(app.clone().oneshot(basic).await.unwrap().status(), StatusCode::OK);
    let (status, _, body) = call(&app, "POST", "/v1/dataset-groups", Some(&reader), Some(json!({"name": "g2"}))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("insufficient_scope")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("`reader` has scopes read; POST /v1/dataset-groups needs `admin`"), "{body}");
    let (status, _, _) = call(&app, "GET", "/getRecommendations?campaignArn=c&userId=1", Some(&reader), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, "GET", "/v1/api-keys", Some(&reader), None).await.0, StatusCode::FORBIDDEN);

    // An admin key does what the master key does.
    let (_, _, created) = call(&app, "POST", "/v1/api-keys", Some(MASTER), Some(json!({"name": "ops", "scopes": ["admin"]}))).await;
    let ops = created["key"].as_str().unwrap().to_string();
    assert_eq!(call(&app, "POST", "/v1/dataset-groups", Some(&ops), Some(json!({"name": "g2"}))).await.0, StatusCode::CREATED);
    // Erasing a user is an admin's call.
    let erase = "/v1/dataset-groups/my-dsg-1/users/someone";
    assert_eq!(call(&app, "DELETE", erase, Some(&reader), None).await.0, StatusCode::FORBIDDEN);
    let (status, _, body) = call(&app, "DELETE", erase, Some(&ops), None).await;
    assert_eq!(
        (status, body["erased"]["rows"].as_u64(), body["erased"]["trackedEvents"].as_u64()),
        (StatusCode::OK, Some(0), Some(0)),
        "{body}"
    );

    // Keys outlive a restart; a deleted key is refused at once.
    drop(app);
    service.shutdown().await;
    drop(service);
    let service = start(dir.path()).await;
    let app = router(service.clone(), ServerOptions { master_key: Some(MASTER.into()) });
    assert_eq!(call(&app, "GET", "/v1/campaigns", Some(&reader), None).await.0, StatusCode::OK);
    assert_eq!(call(&app, "DELETE", "/v1/api-keys/reader", Some(&ops), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&app, "GET", "/v1/campaigns", Some(&reader), None).await.0, StatusCode::UNAUTHORIZED);

    // Without a master key every route is open, keys or not.
    let open = router(service.clone(), ServerOptions::default());
    assert_eq!(call(&open, "GET", "/v1/campaigns", None, None).await.0, StatusCode::OK);
    assert_eq!(call(&open, "GET", "/v1/campaigns", Some("anything"), None).await.0, StatusCode::OK);
}
