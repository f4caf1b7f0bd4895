//! `travelrec bench load`: an open-loop load generator. It sends GET requests
//! at a fixed rate and times each from when it was due, not from when it was
//! sent, so a stalled server shows in the latencies instead of slowing the
//! client down (coordinated omission).
//!
//! `bench serve` runs it as a separate process, so that the client shares
//! neither the server's runtime nor its allocator; anyone can point it at a
//! running server too. Each connection is a thread with a blocking socket
//! that takes every `connections`-th request of the schedule: it sleeps on
//! the kernel's timer until the request is due (precise to tens of
//! microseconds, where tokio's timer is precise to a millisecond, which would
//! add up to a millisecond to every latency), writes it and reads the answer.
//! A request costs the client a few system calls and no allocation, so at
//! ten thousand requests a second it leaves the server most of the machine.

use anyhow::{Context as _, Result, bail};
use hdrhistogram::Histogram;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct LoadArgs {
    /// The server, e.g. http://127.0.0.1:8080 (plain HTTP/1.1).
    #[arg(long)]
    base: String,
    /// A file of request paths, one per line (e.g. `/getRecommendations?campaignArn=…&userId=…`), sent in turn.
    #[arg(long)]
    paths: PathBuf,
    /// Requests per second.
    #[arg(long)]
    rate: f64,
    /// How long to send for.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Open connections, each taking every n-th request; a request waits for its connection's previous answer.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Print the result as one line of JSON instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// What one fixed-rate run measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub rate: f64,
    pub requests: u64,
    /// Requests that failed or did not get a 2xx.
    pub errors: u64,
    /// Latency of the 2xx answers, from each request's due time to the end of its body.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Requests over the time from the first due time to the last answer.
    pub achieved_rate: f64,
}

pub fn run(args: LoadArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.paths).with_context(|| format!("reading {}", args.paths.display()))?;
    let paths: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    let report = open_loop(&args.base, &paths, args.rate, args.seconds, args.connections)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} requests at {:.0}/s ({:.0}/s achieved), {} errors; latency from due time p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            report.requests, report.rate, report.achieved_rate, report.errors, report.p50_ms, report.p90_ms, report.p99_ms, report.max_ms
        );
    }
    Ok(())
}

/// Runs `bench load` in a child process of this binary and reads its report.
pub async fn in_own_process(base: &str, paths: &[String], rate: f64, seconds: u64) -> Result<LoadReport> {
    let list = tempfile::Builder::new().suffix(".txt").tempfile()?;
    std::fs::write(list.path(), paths.join("\n"))?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command.args(["bench", "load", "--base", base, "--rate", &rate.to_string(), "--seconds", &seconds.to_string(), "--json", "--paths"]);
    command.arg(list.path());
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    if !output.status.success() {
        bail!("the load generator failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("the load generator printed no report: {stdout}"))
}

/// GET `base + path` for each path in turn, `rate` per second for `seconds`,
/// over `connections` connections.
fn open_loop(base: &str, paths: &[String], rate: f64, seconds: u64, connections: usize) -> Result<LoadReport> {
    if paths.is_empty() || !rate.is_finite() || rate <= 0.0 || connections == 0 {
        bail!(
            "a load needs a path, a finite rate above 0 and a connection (got {} paths, rate {rate}, {connections} connections)",
            paths.len()
        );
    }
    if let Some(path) = paths.iter().find(|p| !p.starts_with('/')) {
        bail!("request paths start with `/` (e.g. `/getRecommendations?...`); got `{path}`");
    }
    let total = (rate * seconds as f64).round() as usize;
    if total == 0 {
        bail!("{rate} requests/s for {seconds} s is no request at all: raise the rate or the seconds");
    }
    let rest = base.strip_prefix("http://").with_context(|| format!("{base}: the load generator speaks plain http:// only"))?;
    // A base may carry a path prefix (a server behind a proxy): it goes before every path.
    let (host, prefix) = rest.split_once('/').map_or((rest, ""), |(host, prefix)| (host, prefix.trim_end_matches('/')));
    let with_port = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
    let address = with_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {with_port}"))?
        .next()
        .with_context(|| format!("{with_port} has no address"))?;
    let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
    let requests: Vec<Vec<u8>> = paths.iter().map(|p| format!("GET {prefix}{p} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()).collect();
    let interval = Duration::from_secs_f64(1.0 / rate);
    // Every connection is open before the first request is due (one that
    // fails is tried again at its first request, and counted if it fails then).
    let mut opened: Vec<Connection> = (0..connections.min(total)).map(|_| Connection::new(address)).collect();
    opened.iter_mut().for_each(|c| drop(c.stream()));
    let start = Instant::now() + Duration::from_millis(20);
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = opened
            .into_iter()
            .enumerate()
            .map(|(first, mut connection)| {
                let requests = &requests;
                scope.spawn(move || {
                    let mut latencies = histogram();
                    let (mut errors, mut last) = (0u64, start);
                    for i in (first..total).step_by(connections) {
                        let due = start + interval.mul_f64(i as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let ok = connection.get(&requests[i % requests.len()]);
                        last = Instant::now();
                        // Only answered 2xx requests are timed: a refusal or an
                        // error page is fast and would hide a struggling server.
                        if ok {
                            latencies
                                .record(last.duration_since(due).as_nanos().clamp(1_000, MAX_NANOS) as u64)
                                .expect("clamped into range");
                        } else {
                            errors += 1;
                        }
                    }
                    (latencies, errors, last)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join()).collect::<Vec<_>>()
    });
    let mut latencies = histogram();
    let (mut errors, mut last) = (0, start);
    for result in results {
        let (h, e, l) = result.map_err(|_| anyhow::anyhow!("a connection thread panicked"))?;
        latencies.add(&h)?;
        errors += e;
        last = last.max(l);
    }
    let ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1e6;
    let requests = latencies.len() + errors;
    Ok(LoadReport {
        rate,
        requests,
        errors,
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        max_ms: latencies.max() as f64 / 1e6,
        achieved_rate: requests as f64 / last.duration_since(start).as_secs_f64().max(1e-9),
    })
}

/// Latencies up to ten minutes.
const MAX_NANOS: u128 = 600_000_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, MAX_NANOS as u64, 3).expect("valid bounds")
}

/// An answer that takes longer than this counts as an error.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One keep-alive HTTP/1.1 connection, opened again after an error.
struct Connection {
    address: std::net::SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

/// How an exchange ended.
enum Answer {
    /// Read to its end; whether it was a 2xx, and whether the connection stays open.
    Complete { success: bool, keep_alive: bool },
    /// A connection used before closed without a byte of answer (the server
    /// closed it while idle): the request never reached it.
    Stale,
}

impl Connection {
    fn new(address: std::net::SocketAddr) -> Self {
        Self { address, stream: None, buffer: Vec::with_capacity(64 * 1024) }
    }

    /// Sends `request` and reads the whole answer: whether it was a 2xx.
    fn get(&mut self, request: &[u8]) -> bool {
        let mut answer = self.exchange(request);
        if matches!(answer, Ok(Answer::Stale)) {
            self.stream = None;
            answer = self.exchange(request);
        }
        match answer {
            Ok(Answer::Complete { success, keep_alive }) => {
                if !keep_alive {
                    self.stream = None;
                }
                success
            }
            // Part of an answer may be unread: start afresh.
            Ok(Answer::Stale) | Err(_) => {
                self.stream = None;
                false
            }
        }
    }

    /// The open connection, opened now if there is none.
    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.address, TIMEOUT)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.set_write_timeout(Some(TIMEOUT))?;
            self.stream = Some(stream);
        }
        Ok(self.stream.as_mut().expect("opened above"))
    }

    fn exchange(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let reused = self.stream.is_some();
        self.stream()?;
        let Connection { stream: Some(stream), buffer, .. } = self else { unreachable!("opened above") };
        buffer.clear();
        if stream.write_all(request).is_err() && reused {
            return Ok(Answer::Stale);
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let read = match stream.read(&mut chunk) {
                Ok(0) if reused && buffer.is_empty() => return Ok(Answer::Stale),
                Err(e) if reused && buffer.is_empty() && matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
                    return Ok(Answer::Stale);
                }
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                result => result?,
            };
            buffer.extend_from_slice(&chunk[..read]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head) = response.parse(buffer).map_err(std::io::Error::other)? else { continue };
            let header = |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
            let length = header("content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
                .ok_or_else(|| std::io::Error::other("an answer without Content-Length"))?;
            let keep_alive = !header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
            let success = response.code.is_some_and(|c| (200..300).contains(&c));
            // The rest of the body.
            let mut missing = (head + length).saturating_sub(buffer.len());
            while missing > 0 {
                let read = stream.read(&mut chunk[..missing.min(16 * 1024)])?;
                if read == 0 {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                missing -= read;
            }
            return Ok(Answer::Complete { success, keep_alive });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A keep-alive HTTP/1.1 server, a thread per connection: `/slow`
    /// answers after 30 ms, `/missing` with a 404, anything else at once.
    /// Also returns the request lines it has received.
    fn server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for mut socket in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(read) = socket.read(&mut chunk) {
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                            buffer.drain(..end + 4);
                            log.lock().unwrap().push(head.lines().next().unwrap_or_default().to_string());
                            let status = if head.contains("/missing ") { "404 Not Found" } else { "200 OK" };
                            if head.contains("/slow ") {
                                std::thread::sleep(Duration::from_millis(30));
                            }
                            let close = if head.contains("/close ") { "Connection: close\r\n" } else { "" };
                            let response = format!("HTTP/1.1 {status}\r\n{close}Content-Length: 2\r\n\r\nok");
                            if socket.write_all(response.as_bytes()).is_err() {
                                return;
                            }
                            // `/close` says so; `/quiet-close` closes as an idle connection would.
                            if head.contains("/close ") || head.contains("/quiet-close ") {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (base, received)
    }

    #[test]
    fn counts_every_request_and_shows_a_stall_in_the_latencies() {
        let (base, _) = server();
        let paths: Vec<String> = ["/a", "/b", "/missing", "/slow", "/c"].map(String::from).to_vec();
        let report = open_loop(&base, &paths, 200.0, 1, 8).unwrap();
        assert_eq!(report.requests, 200);
        assert_eq!(report.errors, 40, "{report:?}");
        // A fifth of the requests waited 30 ms for their answer.
        assert!(report.p90_ms >= 30.0 && report.max_ms >= 30.0, "{report:?}");
    }

    #[test]
    fn a_base_with_a_path_prefix_prefixes_every_request() {
        let (base, received) = server();
        let report = open_loop(&format!("{base}/api/"), &["/missing".to_string(), "/a?x=1".to_string()], 100.0, 1, 2).unwrap();
        assert_eq!((report.requests, report.errors), (100, 50));
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 100);
        assert!(received.iter().all(|line| line == "GET /api/missing HTTP/1.1" || line == "GET /api/a?x=1 HTTP/1.1"), "{received:?}");
    }

    #[test]
    fn refuses_a_load_without_paths_rate_or_connections() {
        let path = ["/".to_string()];
        assert!(open_loop("http://127.0.0.1:9", &[], 10.0, 1, 1).is_err());
        assert!(open_loop("http://127.0.0.1:9", &path, 0.0, 1, 1).is_err());
        assert!(open_loop("http://127.0.0.1:9", &path, f64::INFINITY, 1, 1).is_err());
        assert!(open_loop("http://127.0.0.1:9", &path, 0.1, 1, 1).is_err(), "no request in a second at 0.1/s");
        assert!(open_loop("http://127.0.0.1:9", &path, 10.0, 1, 0).is_err());
        assert!(open_loop("https://127.0.0.1:9", &path, 10.0, 1, 1).is_err());
        assert!(open_loop("http://127.0.0.1:9", &["getRecommendations".to_string()], 10.0, 1, 1).is_err());
    }

    #[test]
    fn a_connection_the_server_closes_is_opened_again_without_losing_a_request() {
        let (base, received) = server();
        let paths: Vec<String> = ["/close", "/a", "/quiet-close", "/b"].map(String::from).to_vec();
        let report = open_loop(&base, &paths, 100.0, 1, 2).unwrap();
        assert_eq!((report.requests, report.errors), (100, 0), "{report:?}");
        assert_eq!(received.lock().unwrap().len(), 100, "each request reached the server once");
    }

    #[test]
    fn a_refused_connection_counts_as_errors() {
        // Nothing listens on a port just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let report = open_loop(&format!("http://127.0.0.1:{port}"), &["/".to_string()], 100.0, 1, 4).unwrap();
        assert_eq!((report.requests, report.errors), (100, 100));
    }
}
