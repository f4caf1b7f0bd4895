//! End to end: the real binary, over HTTP, on the original REST API.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_travelrec");
const SOLUTION: &str = "arn:aws:personalize:local:000000000000:solution/my-sol-from-cdk";
const GROUP: &str = "arn:aws:personalize:local:000000000000:dataset-group/my-dsg-1";

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        Self::start_logging(data_dir, Stdio::inherit())
    }

    /// Starts the server with its logs (stderr) going to `logs`.
    fn start_logging(data_dir: &Path, logs: impl Into<Stdio>) -> Server {
        Self::start_with(data_dir, logs, &[])
    }

    /// ... with environment variables `env`.
    fn start_with(data_dir: &Path, logs: impl Into<Stdio>, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--port", "0", "--log", "warn", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base =
            line.trim().strip_prefix("travelrec listening on ").unwrap_or_else(|| panic!("unexpected first line: {line}")).to_string();
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stop(mut self) {
        // SIGTERM: a graceful shutdown, as an operator would stop it.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not stop on SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("the binary runs")
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn post(server: &Server, path: &str, body: &str) -> (u16, String) {
    let response = client().post(server.url(path)).body(body.to_string()).send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn recommendations(server: &Server, campaign: &str, user: &str) -> Vec<(String, f64)> {
    let url = server.url(&format!("/getRecommendations?campaignArn={campaign}&userId={user}&numResults=10"));
    let response = client().get(url).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().unwrap();
    // Keys in the order the original's sorted maps wrote them (clients that
    // compare bodies as text see the same bytes).
    assert!(text.starts_with(r#"{"$metadata":{"attempts":1,"httpStatusCode":200,"requestId":""#), "{text}");
    assert!(text.contains(r#""totalRetryDelay":0},"itemList":[{"itemId":""#) && text.contains(r#"],"recommendationId":"RID-"#), "{text}");
    let body = json_of(&text);
    assert_eq!(body["$metadata"]["httpStatusCode"], 200);
    assert!(body["recommendationId"].as_str().unwrap().starts_with("RID-"));
    body["itemList"].as_array().unwrap().iter().map(|i| (i["itemId"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap())).collect()
}

fn wait_for_status(server: &Server, path: &str, body: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, text) = post(server, path, body);
        assert_eq!(status, 200, "{text}");
        let current = json_of(&text);
        if current == wanted {
            return;
        }
        assert!(current.as_str().unwrap().starts_with("CREATE"), "unexpected status {current}");
        assert!(Instant::now() < deadline, "still {current} after 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn prepare_data_dir(data: &Path, dir: &Path) {
    let out = run(&[
        "generate",
        "--out",
        data.to_str().unwrap(),
        "--interactions",
        "30000",
        "--users",
        "1500",
        "--items-per-city",
        "15",
        "--cities",
        "8",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = |name: &str| data.join(name).to_str().unwrap().to_string();
    let out = run(&[
        "import",
        "--log",
        "warn",
        "--data-dir",
        dir.to_str().unwrap(),
        "--items",
        &file("item_data.csv"),
        "--users",
        &file("user_data.csv"),
        "--interactions",
        &file("event_data.csv"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 30000 rows"));
}

#[test]
fn the_original_flow_over_http_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    prepare_data_dir(data.path(), dir.path());
    let server = Server::start(dir.path());

    // Train.
    let (status, text) = post(&server, "/solutionVersion", &format!(r#"{{"solutionArn": "{SOLUTION}", "version": "v1"}}"#));
    assert_eq!(status, 200, "{text}");
    let version = json_of(&text)["solutionVersionArn"].as_str().unwrap().to_string();
    assert_eq!(version, format!("{SOLUTION}/v1"));
    wait_for_status(&server, "/describeSolutionVersion", &format!(r#"{{"solutionVersionArn": "{version}"}}"#), "ACTIVE");

    // Deploy two campaigns (one is deleted at the end), through the /prod stage prefix too.
    let mut campaigns = Vec::new();
    for (path, name) in [("/campaign", "e2e-campaign"), ("/prod/campaign", "kept-campaign")] {
        let (status, text) = post(&server, path, &format!(r#"{{"solutionVersionArn": "{version}", "name": "{name}"}}"#));
        assert_eq!(status, 200, "{text}");
        let arn = json_of(&text)["campaignArn"].as_str().unwrap().to_string();
        wait_for_status(&server, "/prod/describeCampaign", &format!(r#"{{"campaignArn": "{arn}"}}"#), "ACTIVE");
        campaigns.push(arn);
    }
    let campaign = campaigns[0].clone();

    let (status, text) = post(&server, "/eventTracker", &format!(r#"{{"name": "e2e-tracker", "datasetGroupArn": "{GROUP}"}}"#));
    assert_eq!(status, 200, "{text}");
    let tracker = json_of(&text);
    let (tracker_arn, tracking_id) =
        (tracker["eventTrackerArn"].as_str().unwrap().to_string(), tracker["trackingId"].as_str().unwrap().to_string());

    // A traveller nobody has seen yet gets popular attractions, ordered, as probabilities.
    let before = recommendations(&server, &campaign, "traveller-1");
    assert_eq!(before.len(), 10);
    assert!(before.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(before.iter().map(|i| i.1).sum::<f64>() <= 1.0 + 1e-6);

    // They book attraction 1 (the original runbook's body, trailing commas included).
    let body = format!(
        r#"{{"stream-name": "my-stream", "Data": {{"userId": "traveller-1", "interactions": 3, "itemId": "1", "trackingId": "{tracking_id}", "eventType": "book", "dateFrom": "2026-03-01", "dateTo": "2026-03-02",}}, "PartitionKey": "3",}}"#
    );
    let (status, text) = post(&server, "/data", &body);
    assert_eq!(status, 200, "{text}");
    let sent = json_of(&text);
    assert_eq!(sent["Message"], "Event sent successfully");
    let shard = sent["data"]["ShardId"].as_str().unwrap();
    assert!(shard.starts_with("shardId-") && shard.len() == 20, "{shard}");
    let sequence = sent["data"]["SequenceNumber"].as_str().unwrap();
    assert!(sequence.len() >= 20 && sequence.chars().all(|c| c.is_ascii_digit()), "{sequence}");

    // Their very next recommendations reflect it: other attractions of the same city.
    let after = recommendations(&server, &campaign, "traveller-1");
    assert_ne!(before, after);
    let cities: std::collections::HashMap<String, String> = csv::Reader::from_path(data.path().join("item_data.csv"))
        .unwrap()
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r[0].to_string(), r[4].to_string()))
        .collect();
    let city_of = |id: &str| cities.get(id).cloned();
    let same_city = after.iter().filter(|(id, _)| city_of(id) == city_of("1")).count();
    assert!(same_city >= 7, "only {same_city} of 10 in the booked attraction's city");

    // Items like attraction 1, personalized ranking, and the version's offline metrics, over HTTP.
    let similar: Value = client()
        .get(server.url(&format!("/getRecommendations?campaignArn={campaign}&itemId=1&numResults=5")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let similar: Vec<&str> = similar["itemList"].as_array().unwrap().iter().map(|i| i["itemId"].as_str().unwrap()).collect();
    assert_eq!(similar.len(), 5);
    assert!(similar.iter().all(|id| *id != "1" && city_of(id) == city_of("1")), "{similar:?}");
    let first = before.iter().map(|(id, _)| id.as_str()).find(|id| *id != "1").unwrap();
    let third = similar.iter().find(|id| **id != first).unwrap();
    let (status, text) = post(
        &server,
        "/v1/personalized-ranking",
        &format!(r#"{{"campaignArn": "{campaign}", "userId": "traveller-1", "inputList": ["{first}", "1", "{third}"]}}"#),
    );
    assert_eq!(status, 200, "{text}");
    let ranked = json_of(&text);
    assert_eq!(ranked["personalizedRanking"].as_array().unwrap().len(), 3);
    let metrics: Value = client().get(server.url("/v1/solutions/my-sol-from-cdk/versions/v1/metrics")).send().unwrap().json().unwrap();
    assert!(metrics["metrics"]["normalized_discounted_cumulative_gain_at_10"].as_f64().is_some(), "{metrics}");

    // Context, a filter and a promotion over HTTP: the original route takes
    // context keys and filterArn/filterValues as query parameters.
    let other_city = cities.values().find(|c| Some(*c) != city_of("1").as_ref()).unwrap().clone();
    let (status, text) = post(
        &server,
        "/v1/filters",
        &format!(
            r#"{{"name": "in-city", "datasetGroupArn": "{GROUP}", "filterExpression": "INCLUDE ItemID WHERE Items.CITY IN ($CITY)"}}"#
        ),
    );
    assert_eq!(status, 201, "{text}");
    let filter_arn = json_of(&text)["filterArn"].as_str().unwrap().to_string();
    let values = form_urlencoded::byte_serialize(format!(r#"{{"CITY": "\"{other_city}\""}}"#).as_bytes()).collect::<String>();
    let city = form_urlencoded::byte_serialize(other_city.as_bytes()).collect::<String>();
    let url = format!("/getRecommendations?campaignArn={campaign}&userId=traveller-1&numResults=10&CITY={city}&DATE=2026-07-14");
    let in_context: Value = client().get(server.url(&url)).send().unwrap().json().unwrap();
    let in_context: Vec<&str> = in_context["itemList"].as_array().unwrap().iter().map(|i| i["itemId"].as_str().unwrap()).collect();
    let there = in_context.iter().filter(|id| city_of(id).as_deref() == Some(other_city.as_str())).count();
    assert!(there >= 7, "CITY={other_city} gives its attractions first: {in_context:?}");
    let url =
        format!("/getRecommendations?campaignArn={campaign}&userId=traveller-1&numResults=10&filterArn={filter_arn}&filterValues={values}");
    let filtered: Value = client().get(server.url(&url)).send().unwrap().json().unwrap();
    let filtered: Vec<&str> = filtered["itemList"].as_array().unwrap().iter().map(|i| i["itemId"].as_str().unwrap()).collect();
    assert!(!filtered.is_empty() && filtered.iter().all(|id| city_of(id).as_deref() == Some(other_city.as_str())), "{filtered:?}");
    let (status, text) = post(
        &server,
        "/v1/recommendations",
        &format!(
            r#"{{"campaignArn": "{campaign}", "userId": "traveller-1", "numResults": 10, "context": {{"DEVICE": "mobile"}}, "promotions": [{{"name": "elsewhere", "percentPromotedItems": 20, "filterArn": "{filter_arn}", "filterValues": {{"CITY": "\"{other_city}\""}}}}]}}"#
        ),
    );
    assert_eq!(status, 200, "{text}");
    let promoted = json_of(&text)["itemList"].as_array().unwrap().iter().filter(|i| i["promotionName"] == "elsewhere").count();
    assert_eq!(promoted, 2, "20 % of 10 slots: {text}");
    assert!(text.contains(r#","promotionName":"elsewhere","score":"#), "keys of a promoted item in sorted order: {text}");

    let untouched = recommendations(&server, &campaign, "42");
    assert_eq!(untouched, recommendations(&server, &campaigns[1], "42"), "both campaigns serve the same model");

    // The dashboard: its page, and its data showing this campaign's calls and
    // a click attributed to the list it came from, by the click's position.
    let served: Value = client()
        .get(server.url(&format!("/getRecommendations?campaignArn={campaign}&userId=traveller-2&numResults=10")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (list, third_item) = (served["recommendationId"].as_str().unwrap(), served["itemList"][2]["itemId"].as_str().unwrap());
    let (status, text) = post(
        &server,
        "/events",
        &format!(
            r#"{{"trackingId": "{tracking_id}", "userId": "traveller-2", "eventList": [{{"eventType": "click", "itemId": "{third_item}", "sentAt": 1790000000, "recommendationId": "{list}"}}]}}"#
        ),
    );
    assert_eq!(status, 200, "{text}");
    let refused = client().get(server.url(&format!("/getRecommendations?campaignArn={campaign}&userId=x&numResults=0"))).send().unwrap();
    assert_eq!(refused.status(), 400);
    let deadline = Instant::now() + Duration::from_secs(10);
    let (dashboard, panel) = loop {
        let text = client().get(server.url("/v1/dashboard")).send().unwrap().text().unwrap();
        let dashboard = json_of(&text);
        let panel = dashboard["campaigns"].as_array().unwrap().iter().find(|c| c["campaignArn"] == campaign.as_str()).unwrap().clone();
        if panel["activity"]["convertedRecommendations"] == 1 {
            assert!(!text.contains("traveller-"), "no user id on the dashboard: {text}");
            break (dashboard, panel);
        }
        assert!(Instant::now() < deadline, "the click is not attributed: {panel}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let activity = &panel["activity"];
    // before, after, similar, ranking, in context, filtered, promoted, untouched, and the list clicked.
    assert_eq!((activity["requests"].as_u64(), activity["failedRequests"].as_u64()), (Some(9), Some(1)), "{activity}");
    assert_eq!(activity["attributedEvents"], serde_json::json!({"click": 1}));
    assert_eq!(activity["attributedByRank"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect::<Vec<_>>()[..4], [0, 0, 1, 0]);
    assert!((activity["clickThroughRate"].as_f64().unwrap() - 1.0 / 9.0).abs() < 1e-9, "{activity}");
    let latency = &activity["latencyMicros"];
    assert!(latency["p50"].as_u64().unwrap() > 0 && latency["p50"].as_u64() <= latency["max"].as_u64(), "{latency}");
    assert!(panel["offlineMetrics"]["normalized_discounted_cumulative_gain_at_10"].as_f64().is_some(), "{panel}");
    let group = &dashboard["datasetGroups"].as_array().unwrap().iter().find(|g| g["datasetGroupArn"] == GROUP).unwrap();
    assert_eq!((group["events"].as_u64(), group["users"].as_u64(), group["attributedEvents"].as_u64()), (Some(4), Some(2), Some(1)));
    assert_eq!(group["eventsByType"], serde_json::json!({"book": 3, "click": 1}));
    assert_eq!(group["topItems"][0], serde_json::json!(["1", 3]));
    let page = client().get(server.url("/")).send().unwrap();
    assert_eq!((page.status().as_u16(), page.url().path()), (200, "/dashboard"), "/ leads to the dashboard");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.text().unwrap().contains(r#"fetch("/v1/dashboard""#));

    // Clean up one campaign and the tracker.
    let response = client()
        .delete(server.url("/deleteResources"))
        .body(format!(r#"{{"campaignArn": "{campaign}", "eventTrackerArn": "{tracker_arn}"}}"#))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().unwrap();
    assert_eq!(deleted["deleteCampaignResponse"]["$metadata"]["httpStatusCode"], 200);
    assert_eq!(deleted["deleteEventTrackerResponse"]["$metadata"]["httpStatusCode"], 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, text) = post(&server, "/describeCampaign", &format!(r#"{{"campaignArn": "{campaign}"}}"#));
        if status == 404 {
            assert_eq!(text, "Campaign is deleted or does not exist");
            break;
        }
        assert!(Instant::now() < deadline, "campaign still there: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = post(&server, "/data", &body);
    assert_eq!(status, 404, "a deleted tracker must refuse events");

    let versions_before: Value = client().get(server.url("/v1/solution-versions")).send().unwrap().json().unwrap();
    server.stop();

    // Restart on the same directory: same model, no retraining, events remembered.
    let server = Server::start(dir.path());
    assert_eq!(recommendations(&server, &campaigns[1], "42"), untouched);
    assert_eq!(recommendations(&server, &campaigns[1], "traveller-1"), after);
    let versions_after: Value = client().get(server.url("/v1/solution-versions")).send().unwrap().json().unwrap();
    assert_eq!(versions_before, versions_after, "a restart must not retrain");
    server.stop();
}

#[test]
fn bad_input_gets_a_4xx_json_error_never_a_500() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    prepare_data_dir(data.path(), dir.path());
    let server = Server::start(dir.path());
    let get = |path: &str| {
        let response = client().get(server.url(path)).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let missing = "arn:aws:personalize:local:000000000000:campaign/nope";
    let cases: Vec<(&str, (u16, String), u16, &str)> = vec![
        ("unknown campaign", get(&format!("/getRecommendations?campaignArn={missing}&userId=1")), 404, "does not exist"),
        ("missing userId", get(&format!("/getRecommendations?campaignArn={missing}")), 400, "userId is required"),
        ("numResults 0", get(&format!("/getRecommendations?campaignArn={missing}&userId=1&numResults=0")), 400, "numResults"),
        ("numResults 501", get(&format!("/getRecommendations?campaignArn={missing}&userId=1&numResults=501")), 400, "numResults"),
        ("malformed JSON", post(&server, "/campaign", "{\"name\": "), 400, "invalid JSON body"),
        ("empty body", post(&server, "/solutionVersion", ""), 400, "empty"),
        ("missing field", post(&server, "/solutionVersion", "{\"version\": \"v9\"}"), 400, "solutionArn"),
        (
            "unknown Data field",
            post(
                &server,
                "/data",
                r#"{"stream-name": "my-stream", "Data": {"userId": "1", "interactions": 1, "itemId": "1", "trackingId": "t", "eventTypo": "click", "dateFrom": "2022-01-01", "dateTo": "2022-02-01"}}"#,
            ),
            400,
            "eventTypo",
        ),
        (
            "dateFrom after dateTo",
            post(
                &server,
                "/data",
                r#"{"stream-name": "my-stream", "Data": {"userId": "1", "interactions": 1, "itemId": "1", "trackingId": "t", "eventType": "click", "dateFrom": "2023-04-05", "dateTo": "2022-01-01"}, "PartitionKey": "1"}"#,
            ),
            400,
            "is after dateTo",
        ),
        (
            "unknown version",
            post(&server, "/describeSolutionVersion", &format!(r#"{{"solutionVersionArn": "{SOLUTION}/nope"}}"#)),
            404,
            "does not exist",
        ),
        (
            "campaign on a missing version",
            post(&server, "/campaign", &format!(r#"{{"solutionVersionArn": "{SOLUTION}/nope", "name": "x"}}"#)),
            404,
            "does not exist",
        ),
        (
            "bad name",
            post(&server, "/solutionVersion", &format!(r#"{{"solutionArn": "{SOLUTION}", "version": "a b"}}"#)),
            400,
            "not a valid name",
        ),
        ("unknown route", get("/nowhere"), 404, "no route"),
        (
            "PutEvents: sentAt not a number",
            post(
                &server,
                "/events",
                r#"{"trackingId": "t", "userId": "u", "eventList": [{"eventType": "click", "itemId": "1", "sentAt": "soon"}]}"#,
            ),
            400,
            "eventList[0].sentAt",
        ),
        (
            "PutEvents: missing itemId",
            post(&server, "/events", r#"{"trackingId": "t", "userId": "u", "eventList": [{"eventType": "click", "sentAt": 1}]}"#),
            400,
            "itemId",
        ),
        (
            "PutEvents: more than 10 events",
            post(
                &server,
                "/events",
                &format!(
                    r#"{{"trackingId": "t", "userId": "u", "eventList": [{}]}}"#,
                    [r#"{"eventType": "click", "itemId": "1", "sentAt": 1}"#; 11].join(",")
                ),
            ),
            400,
            "1 to 10 events",
        ),
        (
            "PutEvents: unknown trackingId",
            post(
                &server,
                "/events",
                r#"{"trackingId": "nope", "userId": "u", "eventList": [{"eventType": "click", "itemId": "1", "sentAt": 1}]}"#,
            ),
            404,
            "trackingId `nope`",
        ),
        (
            "PutItems: unknown dataset",
            post(
                &server,
                "/items",
                r#"{"datasetArn": "arn:aws:personalize:local:000000000000:dataset/x/ITEMS", "items": [{"itemId": "1"}]}"#,
            ),
            404,
            "does not exist",
        ),
        (
            "context: latitude out of range",
            get(&format!("/getRecommendations?campaignArn={missing}&userId=1&LOCATION=200,10")),
            400,
            "context LOCATION",
        ),
        ("context: not a date", get(&format!("/getRecommendations?campaignArn={missing}&userId=1&DATE=tomorrow")), 400, "context DATE"),
        (
            "context: unknown key",
            post(
                &server,
                "/v1/recommendations",
                &format!(r#"{{"campaignArn": "{missing}", "userId": "1", "context": {{"MOOD": "happy"}}}}"#),
            ),
            400,
            "unknown context key `MOOD`",
        ),
        (
            "filter expression with a mistake",
            post(
                &server,
                "/v1/filters",
                &format!(r#"{{"name": "f", "datasetGroupArn": "{GROUP}", "filterExpression": "INCLUDE ItemID WHERE Items.GENRE IN"}}"#),
            ),
            400,
            "position",
        ),
        (
            "PutLocalEvents: unknown dataset",
            post(
                &server,
                "/local-events",
                r#"{"datasetArn": "arn:aws:personalize:local:000000000000:dataset/x/LOCAL_EVENTS", "localEvents": [{"localEventId": "1"}]}"#,
            ),
            404,
            "does not exist",
        ),
    ];
    for (case, (status, text), expected, fragment) in cases {
        assert_eq!(status, expected, "{case}: {text}");
        let body = json_of(&text);
        assert!(body["message"].as_str().unwrap().contains(fragment), "{case}: {text}");
        assert!(body["code"].is_string() && body["type"] == "invalid_request", "{case}: {text}");
    }
    server.stop();
}

#[test]
fn a_master_key_from_the_environment_requires_api_keys() {
    let dir = tempfile::tempdir().unwrap();
    let master = "master-key-from-the-environment";
    let server = Server::start_with(dir.path(), Stdio::inherit(), &[("TRAVELREC_MASTER_KEY", master)]);
    let status = |key: Option<&str>| {
        let request = client().get(server.url("/v1/campaigns"));
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send().unwrap().status().as_u16()
    };
    assert_eq!((status(None), status(Some("wrong")), status(Some(master))), (401, 401, 200));
    let (code, text) = {
        let response = client()
            .post(server.url("/v1/api-keys"))
            .bearer_auth(master)
            .body(r#"{"name": "app", "scopes": ["recommend", "track"]}"#)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    assert_eq!(code, 201, "{text}");
    let app = json_of(&text)["key"].as_str().unwrap().to_string();
    assert_eq!(status(Some(&app)), 403, "an app key does not read resources");
    server.stop();

    // A short master key is refused before the server listens.
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--log", "warn", "--data-dir"])
        .arg(dir.path())
        .env("TRAVELREC_MASTER_KEY", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters (it has 5)"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_whole_service_runs_on_postgresql() {
    let url = std::env::var("TRAVELREC_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let schema = format!("e2e_{}_{nanos}", std::process::id());
    let env = [("TRAVELREC_DATABASE_URL", url.as_str()), ("TRAVELREC_DATABASE_SCHEMA", schema.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["quickstart", "--no-serve", "--log", "warn", "--interactions", "20000", "--data-dir"])
        .arg(dir.path())
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("travelrec.redb").exists(), "resources and rows live in PostgreSQL, not the data directory");

    let server = Server::start_with(dir.path(), Stdio::inherit(), &env);
    let campaign = "arn:aws:personalize:local:000000000000:campaign/my-campaign";
    let before = recommendations(&server, campaign, "12");
    assert_eq!(before.len(), 10);
    // A second process on the same schema is refused: the event log is still each process's own.
    let out = Command::new(BIN).args(["serve", "--port", "0", "--log", "warn", "--data-dir"]).arg(dir.path()).envs(env).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is in use by another travelrec process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();

    // A restart serves the same model from the database, without retraining.
    let server = Server::start_with(dir.path(), Stdio::inherit(), &env);
    assert_eq!(recommendations(&server, campaign, "12"), before);
    server.stop();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        travelrec_store::PostgresStore::connect(&url, &schema).await.unwrap().drop_schema(&schema).await.unwrap();
    });
}

#[test]
fn scheduled_retraining_swaps_models_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["quickstart", "--no-serve", "--log", "warn", "--interactions", "20000", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Every 1.8 s.
    let server = Server::start_with(dir.path(), Stdio::inherit(), &[("TRAVELREC_RETRAIN_EVERY_HOURS", "0.0005")]);
    let campaign = "arn:aws:personalize:local:000000000000:campaign/my-campaign";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut served = 0;
    loop {
        // recommendations() asserts a 200 with ten items on every call.
        assert_eq!(recommendations(&server, campaign, "12").len(), 10);
        served += 1;
        let described: Value = client().get(server.url("/v1/campaigns/my-campaign")).send().unwrap().json().unwrap();
        let version = described["solutionVersionArn"].as_str().unwrap();
        if version.contains("/retrain-") {
            assert_eq!(described["latestCampaignUpdate"]["status"], "ACTIVE", "{described}");
            break;
        }
        assert!(Instant::now() < deadline, "no retrained model after 60 s: {described}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served > 1);
    server.stop();
}

/// A data directory of an older travelrec: its model snapshot has another
/// format. quickstart trains a version this build reads and deploys the
/// demo campaign again, where it failed saying "delete it and run again".
#[test]
fn quickstart_on_a_data_directory_of_an_older_build_trains_and_deploys_anew() {
    let dir = tempfile::tempdir().unwrap();
    let quickstart = || {
        Command::new(BIN)
            .args(["quickstart", "--no-serve", "--log", "warn", "--interactions", "20000", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    assert!(quickstart().status.success());
    let snapshot = std::fs::read_dir(dir.path().join("models")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&snapshot).unwrap();
    bytes[8..12].copy_from_slice(&(travelrec_engine::Model::FORMAT_VERSION - 1).to_le_bytes());
    std::fs::write(&snapshot, bytes).unwrap();

    let out = quickstart();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cannot be served by this build") && stdout.contains("deploying it again"), "{stdout}");
    let server = Server::start(dir.path());
    let described: Value = client().get(server.url("/v1/campaigns/my-campaign")).send().unwrap().json().unwrap();
    assert_eq!(described["status"], "ACTIVE", "{described}");
    assert!(described["solutionVersionArn"].as_str().unwrap().ends_with("/v1"), "{described}");
    assert_eq!(recommendations(&server, "arn:aws:personalize:local:000000000000:campaign/my-campaign", "12").len(), 10);
    server.stop();
}

#[test]
fn bad_csv_files_are_refused_with_the_line_and_nothing_is_imported() {
    let files = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad_row = files.path().join("bad_row.csv");
    std::fs::write(&bad_row, "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\r\n1,2,1667773054,click\r\n1,3,yesterday,click\r\n").unwrap();
    let out = run(&["import", "--log", "warn", "--data-dir", dir.path().to_str().unwrap(), "--interactions", bad_row.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad_row.csv, line 3, column 3 (TIMESTAMP): `yesterday` is not a whole number"), "{stderr}");

    let missing_column = files.path().join("missing_column.csv");
    std::fs::write(&missing_column, "USER_ID,ITEM_ID,EVENT_TYPE\n1,2,click\n").unwrap();
    let out =
        run(&["import", "--log", "warn", "--data-dir", dir.path().to_str().unwrap(), "--interactions", missing_column.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no TIMESTAMP column"), "{stderr}");

    // Nothing was imported: training has nothing to learn from.
    let out = run(&["train", "--log", "warn", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no interactions"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn generate_is_deterministic_per_seed() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        let out = run(&["generate", "--out", dir.path().to_str().unwrap(), "--interactions", "5000", "--seed", "7"]);
        assert!(out.status.success());
    }
    for file in ["event_data.csv", "item_data.csv", "user_data.csv", "local_events.csv"] {
        assert_eq!(std::fs::read(a.path().join(file)).unwrap(), std::fs::read(b.path().join(file)).unwrap(), "{file}");
    }
}

#[test]
fn the_store_benchmark_runs_and_prints_its_table() {
    let url = std::env::var("TRAVELREC_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let out = run(&["bench", "store", "--log", "warn", "--events", "2048", "--database-url", &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("embedded") && table.contains("1.00×") && table.contains("postgres"), "{table}");
}

#[test]
fn the_ingest_benchmark_runs_and_prints_its_table() {
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = run(&[
        "bench",
        "ingest",
        "--log",
        "warn",
        "--seconds",
        "1",
        "--probes",
        "5",
        "--clients",
        "2",
        "--json",
        json.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("baseline") && table.contains("main / baseline events/s") && table.contains("freshness"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    assert_eq!(report["scenarios"].as_array().unwrap().len(), 2);
}

/// The serving benchmark at a tiny size: it runs and prints its table (timings are never asserted).
#[test]
fn the_serving_benchmark_runs_and_prints_its_table() {
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = run(&[
        "bench",
        "serve",
        "--log",
        "warn",
        "--items",
        "200",
        "--interactions-per-item",
        "20",
        "--requests",
        "30",
        "--http-seconds",
        "1",
        "--json",
        json.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("engine: naive") && table.contains("service: + context + filter") && table.contains("ratio"), "{table}");
    assert!(table.contains("engine: Model::query + LOCATION") && table.contains("LOCATION walking on"), "{table}");
    assert!(table.contains("LOCATION anywhere in city"), "{table}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 13);
    assert!(report["memory"][0]["realtime_bytes_per_user"].as_f64().unwrap() > 0.0, "{report}");
    // CI installs wrk; elsewhere the HTTP part says it was skipped.
    let wrk_installed = std::process::Command::new("wrk").arg("--version").output().is_ok();
    if wrk_installed {
        assert!(table.contains("max req/s"), "{table}");
        // The fixed rate comes from `bench load`, run as a process of its own.
        assert_eq!(report["http"][0]["fixed_errors"], 0, "{report}");
        assert!(report["http"][0]["fixed_achieved_rate"].as_f64().unwrap() > 0.0, "{report}");
    } else {
        assert!(table.contains("wrk is not installed"), "{table}");
    }
}
