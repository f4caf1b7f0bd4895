//! Crash safety of ingestion: the real binary is killed with SIGKILL while
//! clients send events at full speed; after a restart every acknowledged
//! event is present exactly once — in the store, in the users' real-time
//! state and, after a flush, in the archive — and a torn log tail is cut.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_travelrec");
const GROUP: &str = "arn:aws:personalize:local:000000000000:dataset-group/my-dsg-1";
const SOLUTION: &str = "arn:aws:personalize:local:000000000000:solution/my-sol-from-cdk";
const USERS: usize = 60;

fn start(dir: &Path, logs: Stdio) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0", "--log", "warn", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(logs)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line.trim().trim_start_matches("travelrec listening on ").to_string())
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

fn post(base: &str, path: &str, body: &Value) -> Value {
    let response = client().post(format!("{base}{path}")).json(body).send().unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.text().unwrap());
    response.json().unwrap()
}

fn get(base: &str, path: &str) -> Value {
    client().get(format!("{base}{path}")).send().unwrap().json().unwrap()
}

fn wait_for(base: &str, path: &str, body: Value) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while post(base, path, &body) != "ACTIVE" {
        assert!(Instant::now() < deadline, "{path} never became ACTIVE");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn user(n: usize) -> String {
    format!("crash-user-{n}")
}

#[test]
fn acknowledged_events_survive_sigkill_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["generate", "--interactions", "20000", "--users", "1000", "--items-per-city", "15", "--cities", "6", "--out"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let file = |name: &str| data.path().join(name);
    let out = Command::new(BIN)
        .args(["import", "--log", "warn", "--data-dir"])
        .arg(dir.path())
        .arg("--items")
        .arg(file("item_data.csv"))
        .arg("--interactions")
        .arg(file("event_data.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (mut server, base) = start(dir.path(), Stdio::inherit());
    post(&base, "/solutionVersion", &json!({"solutionArn": SOLUTION, "version": "v1"}));
    wait_for(&base, "/describeSolutionVersion", json!({"solutionVersionArn": format!("{SOLUTION}/v1")}));
    let campaign =
        post(&base, "/campaign", &json!({"solutionVersionArn": format!("{SOLUTION}/v1"), "name": "crash"}))["campaignArn"].clone();
    wait_for(&base, "/describeCampaign", json!({"campaignArn": campaign}));
    let tracking_id = post(&base, "/eventTracker", &json!({"name": "crash-tracker", "datasetGroupArn": GROUP}))["trackingId"]
        .as_str()
        .unwrap()
        .to_string();

    // Clients send batches of events as fast as they can; each remembers what was acknowledged.
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (acknowledged, stop, base, tracking_id) = (acknowledged.clone(), stop.clone(), base.clone(), tracking_id.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                for request in 0.. {
                    if stop.load(Ordering::Relaxed) || request >= 400 {
                        return;
                    }
                    let who = user((c * 7 + request) % USERS);
                    let events: Vec<Value> = (0..3)
                        .map(|k| {
                            json!({"eventId": format!("c{c}-r{request}-e{k}"), "eventType": "click", "itemId": ((request + k) % 90 + 1).to_string(), "sentAt": 1_790_000_000 + request})
                        })
                        .collect();
                    let body = json!({"trackingId": tracking_id, "userId": who, "sessionId": "s", "eventList": events});
                    match http.post(format!("{base}/events")).json(&body).send() {
                        Ok(response) if response.status().is_success() => {
                            let mut list = acknowledged.lock().unwrap();
                            for k in 0..3 {
                                list.push((who.clone(), format!("c{c}-r{request}-e{k}")));
                            }
                        }
                        Ok(response) if response.status().as_u16() == 429 => std::thread::sleep(Duration::from_millis(5)),
                        _ => return, // the server is gone
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 1_500 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill().unwrap(); // SIGKILL, mid-stream
    server.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    clients.into_iter().for_each(|c| c.join().unwrap());
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 300, "only {} events were acknowledged before the kill", acknowledged.len());

    // A torn write at the end of one partition's newest segment: bytes of a record that never completed.
    let partition = dir.path().join("log/partition-0000");
    let newest = std::fs::read_dir(&partition).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let mut torn = std::fs::OpenOptions::new().append(true).open(&newest).unwrap();
    std::io::Write::write_all(&mut torn, &[0xA1, 200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(torn);

    let logs = tempfile::NamedTempFile::new().unwrap();
    let (mut server, base) = start(dir.path(), Stdio::from(logs.reopen().unwrap()));
    let by_user: HashMap<String, Vec<&String>> = acknowledged.iter().fold(HashMap::new(), |mut m, (u, id)| {
        m.entry(u.clone()).or_default().push(id);
        m
    });
    for (who, ids) in &by_user {
        // In the store (training data), exactly once.
        let stored = get(&base, &format!("/v1/dataset-groups/my-dsg-1/events?userId={who}"));
        let stored: Vec<&str> = stored["events"].as_array().unwrap().iter().map(|e| e["eventId"].as_str().unwrap()).collect();
        let unique: HashSet<&str> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "{who}: an event is stored twice");
        for id in ids {
            assert!(unique.contains(id.as_str()), "{who}: acknowledged event {id} is missing from the store");
        }
        // In the real-time state getRecommendations folds in, exactly once.
        let recent = get(&base, &format!("/v1/dataset-groups/my-dsg-1/users/{who}/recent-events"));
        let recent: Vec<&str> = recent["events"].as_array().unwrap().iter().map(|e| e["sequenceNumber"].as_str().unwrap()).collect();
        let unique_recent: HashSet<&str> = recent.iter().copied().collect();
        assert_eq!(unique_recent.len(), recent.len(), "{who}: an event is in the user state twice");
        assert!(recent.len() >= ids.len(), "{who}: {} events in the user state, {} acknowledged", recent.len(), ids.len());
    }
    let recommended = get(&base, &format!("/getRecommendations?campaignArn={}&userId={}", campaign.as_str().unwrap(), user(0)));
    assert_eq!(recommended["itemList"].as_array().unwrap().len(), 25);

    // The torn tail was cut, with a warning naming it.
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    server.wait().unwrap();
    let logged = std::fs::read_to_string(logs.path()).unwrap();
    assert!(logged.contains("partition-0000") || logged.contains("partition=0"), "no warning about the torn tail in:\n{logged}");

    // After the graceful stop (which flushes the archive), every acknowledged event is archived exactly once.
    let mut archived: Vec<String> = Vec::new();
    for file in travelrec_service::archive::archive_files(&dir.path().join("archive")).unwrap() {
        travelrec_service::archive::read_file(&file, |e| archived.push(e.event_id)).unwrap();
    }
    let unique: HashSet<&String> = archived.iter().collect();
    assert_eq!(unique.len(), archived.len(), "an event is archived twice");
    for (_, id) in &acknowledged {
        assert!(unique.contains(id), "acknowledged event {id} is missing from the archive");
    }
}
