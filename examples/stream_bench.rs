//! Load generator for `bench/config-stream.sh`: how fast a settings change reaches config stream
//! subscribers, and how much memory an API process spends per idle stream. A benchmark, not a
//! test: it reports what it measured and fails only when it cannot run.
//!
//! Subcommands (results as a table on standard output, progress on standard error):
//! - `healthz`: round trip of sequential `GET /healthz` on one keep-alive connection (reference).
//! - `latency`: PATCH of the SMTP integration settings → matching `upsert` event, with N
//!   subscribers on the API that takes the PATCH and on a second API process (NOTIFY path).
//! - `memory`: VmRSS of one API process before and while it holds many idle streams.
//!
//! Run `cargo run --release --example stream_bench -- help` for the flags.
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use eventsource_stream::Eventsource;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(about = "Config change stream benchmark (driven by bench/config-stream.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Round trip of sequential GET /healthz requests.
    Healthz(HealthzArgs),
    /// Propagation latency from a PATCH to the `upsert` event, same process and cross-replica.
    Latency(LatencyArgs),
    /// VmRSS of an API process holding many idle streams.
    Memory(MemoryArgs),
}

#[derive(Debug, Args)]
struct HealthzArgs {
    /// API base URL.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 200)]
    requests: usize,
    #[arg(long, default_value_t = 20)]
    warmup: usize,
}

#[derive(Debug, Args)]
struct LatencyArgs {
    /// API that receives the PATCH requests (and the "same process" subscribers).
    #[arg(long)]
    publish_url: String,
    /// Second API process on the same database (the "cross-replica" subscribers); omit to skip.
    #[arg(long)]
    cross_url: Option<String>,
    /// Administrator token for the tenant (PATCH).
    #[arg(long)]
    admin_token: String,
    /// Sensor token for the sensor (streams).
    #[arg(long)]
    sensor_token: String,
    #[arg(long)]
    tenant: Uuid,
    #[arg(long)]
    sensor: Uuid,
    /// Subscriber counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    subscribers: Vec<usize>,
    /// Measured changes per subscriber count.
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Unmeasured changes before each measurement.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Give up on a change's missing events after this many seconds.
    #[arg(long, default_value_t = 10)]
    event_timeout: u64,
}

#[derive(Debug, Args)]
struct MemoryArgs {
    /// API base URL.
    #[arg(long)]
    url: String,
    /// Process id of that API process (its /proc/<pid>/status is read).
    #[arg(long)]
    pid: u32,
    /// Sensor token for the sensor.
    #[arg(long)]
    sensor_token: String,
    #[arg(long)]
    sensor: Uuid,
    /// Open stream counts to measure at, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    streams: Vec<usize>,
    /// Seconds to leave the streams idle before reading VmRSS (bookmarks come every 15 s).
    #[arg(long, default_value_t = 20)]
    idle: u64,
    /// Streams being opened at once.
    #[arg(long, default_value_t = 64)]
    open_concurrency: usize,
    /// Local addresses to connect from, round-robin (each has its own ephemeral port range).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    local_addrs: Vec<IpAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Healthz(args) => healthz(args).await,
        Command::Latency(args) => latency(args).await,
        Command::Memory(args) => memory(args).await,
    }
}

// ------------------------------------------------------------------------------------ helpers

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier - later).as_secs_f64() * 1e3,
    }
}

/// A `kB` field of /proc/<pid>/status (e.g. `VmRSS`), in bytes.
fn proc_status_bytes(pid: &str, field: &str) -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().context("parsing the kB value")?;
    Ok(kb * 1024)
}

fn open_fds(pid: &str) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The server's `mailsensor_config_streams_open` gauge from `/metrics`.
async fn open_streams_gauge(http: &reqwest::Client, api: &str) -> Option<f64> {
    let text = http.get(format!("{api}/metrics")).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("mailsensor_config_streams_open ")?.trim().parse().ok())
}

/// Waits until the server counts at most `at_most` open streams (it notices a stream the client
/// closed only when it next writes to it, e.g. the 15 s bookmark). Returns the last gauge value
/// read and the seconds waited.
async fn wait_for_gauge(http: &reqwest::Client, api: &str, at_most: f64, limit: Duration) -> (Option<f64>, f64) {
    let start = Instant::now();
    loop {
        let gauge = open_streams_gauge(http, api).await;
        if gauge.is_some_and(|g| g <= at_most) || start.elapsed() >= limit {
            return (gauge, start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An `upsert` as one subscriber received it.
struct Arrival {
    subscriber: usize,
    revision: i64,
    at: Instant,
}

/// What the streams saw after `synced`, across all of them.
#[derive(Default)]
struct StreamStats {
    upserts: AtomicU64,
    bookmarks: AtomicU64,
    /// Streams that ended or broke without being closed by us.
    ended: AtomicUsize,
    first_problem: Mutex<Option<String>>,
}

impl StreamStats {
    fn problem(&self, what: String) {
        let mut first = self.first_problem.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(what);
    }

    fn first_problem(&self) -> Option<String> {
        self.first_problem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Opens streams of one sensor and follows them: each reads `reset`, `snapshot` and `synced`,
/// then a task time-stamps every `upsert` (sent to `arrivals`) and counts bookmarks.
struct Streams {
    url: String,
    token: String,
    arrivals: Option<mpsc::UnboundedSender<Arrival>>,
    stats: Arc<StreamStats>,
    retries: AtomicUsize,
}

impl Streams {
    fn new(api: &str, sensor: Uuid, token: &str, arrivals: Option<mpsc::UnboundedSender<Arrival>>) -> Self {
        Streams {
            url: format!("{}/v1/sensors/{sensor}/config-stream", api.trim_end_matches('/')),
            token: token.to_owned(),
            arrivals,
            stats: Arc::default(),
            retries: AtomicUsize::new(0),
        }
    }

    /// Opens one stream, retrying a few times (a busy server or a full accept queue is no reason
    /// to abandon the measurement); each attempt gives up after 30 s.
    async fn open(&self, http: &reqwest::Client, subscriber: usize) -> anyhow::Result<JoinHandle<()>> {
        let mut attempt = 0;
        loop {
            let error = match tokio::time::timeout(Duration::from_secs(30), self.open_once(http, subscriber)).await {
                Ok(Ok(handle)) => return Ok(handle),
                Ok(Err(e)) => e,
                Err(_) => anyhow::anyhow!("no `synced` within 30 s"),
            };
            attempt += 1;
            if attempt >= 4 {
                return Err(error.context(format!("opening stream {subscriber} ({attempt} attempts)")));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
        }
    }

    async fn open_once(&self, http: &reqwest::Client, subscriber: usize) -> anyhow::Result<JoinHandle<()>> {
        let response =
            http.get(&self.url).bearer_auth(&self.token).header("accept", "text/event-stream").send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("HTTP {status}: {body}");
        }
        let mut events = response.bytes_stream().eventsource();
        loop {
            match events.next().await {
                Some(Ok(e)) if e.event == "synced" => break,
                Some(Ok(e)) if e.event == "reset" || e.event == "snapshot" => {}
                Some(Ok(e)) => bail!("unexpected `{}` event before `synced`", e.event),
                Some(Err(e)) => bail!("stream broke before `synced`: {e}"),
                None => bail!("stream ended before `synced`"),
            }
        }
        let arrivals = self.arrivals.clone();
        let stats = self.stats.clone();
        Ok(tokio::spawn(async move {
            while let Some(next) = events.next().await {
                let at = Instant::now();
                match next {
                    Ok(e) if e.event == "upsert" => {
                        stats.upserts.fetch_add(1, Ordering::Relaxed);
                        if let Some(arrivals) = &arrivals {
                            let revision = serde_json::from_str::<Value>(&e.data)
                                .ok()
                                .and_then(|v| v["revision"].as_i64())
                                .unwrap_or(-1);
                            let _ = arrivals.send(Arrival { subscriber, revision, at });
                        }
                    }
                    Ok(e) if e.event == "bookmark" => {
                        stats.bookmarks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(e) => stats.problem(format!("unexpected `{}` event", e.event)),
                    Err(e) => {
                        stats.problem(format!("stream broke: {e}"));
                        break;
                    }
                }
            }
            stats.ended.fetch_add(1, Ordering::Relaxed);
            stats.problem("a stream ended (server closed it)".into());
        }))
    }

    fn retried(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }
}

fn close(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        handle.abort();
    }
}

// ------------------------------------------------------------------------------------ healthz

async fn healthz(args: HealthzArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{}/healthz", args.url.trim_end_matches('/'));
    let mut samples = Vec::with_capacity(args.requests);
    for i in 0..args.warmup + args.requests {
        let start = Instant::now();
        let response = http.get(&url).send().await?;
        let status = response.status();
        response.bytes().await?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        if !status.is_success() {
            bail!("GET /healthz: HTTP {status}");
        }
        if i >= args.warmup {
            samples.push(elapsed);
        }
    }
    let s = sorted(samples);
    println!(
        "  {:<44} {:>8.3} {:>8.3} {:>8.3}   ({} sequential requests, one keep-alive connection)",
        "GET /healthz round trip",
        percentile(&s, 50.0),
        percentile(&s, 99.0),
        s.last().copied().unwrap_or(f64::NAN),
        s.len()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------ latency

struct LatencyRow {
    path: &'static str,
    subscribers: usize,
    changes: usize,
    events: usize,
    missing: usize,
    stray: usize,
    after_response: Vec<f64>,
    after_send: Vec<f64>,
    /// Per change: when the last subscriber had it, after the PATCH was sent.
    last_after_send: Vec<f64>,
    patch_round_trip: Vec<f64>,
    ended: usize,
    problem: Option<String>,
    /// The subscribe server's open-streams gauge after the warm-up changes (should be the
    /// subscriber count: streams of earlier rows are gone once a write to them failed).
    server_streams: Option<f64>,
}

async fn latency(args: LatencyArgs) -> anyhow::Result<()> {
    let mut paths = vec![("same", args.publish_url.clone())];
    if let Some(cross) = &args.cross_url {
        paths.push(("cross", cross.clone()));
    }
    let mut rows = Vec::new();
    let mut round = 0;
    for (path, subscribe_url) in &paths {
        for &n in &args.subscribers {
            round += 1;
            eprintln!("[stream_bench] latency: {n} subscriber(s) on the {path} process, {} changes", args.changes);
            rows.push(latency_scenario(&args, path, subscribe_url, n, round).await?);
        }
    }

    println!(
        "  {:<6} {:>5} {:>7} {:>7} {:>5} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} | {:>6} | {:>7} {:>7}",
        "path",
        "subs",
        "changes",
        "events",
        "miss",
        "resp p50",
        "resp p99",
        "resp max",
        "send p50",
        "send p99",
        "send max",
        "all p50",
        "all p99",
        "early",
        "PATCH50",
        "PATCH99"
    );
    for row in &rows {
        let resp = sorted(row.after_response.clone());
        let send = sorted(row.after_send.clone());
        let all = sorted(row.last_after_send.clone());
        let patch = sorted(row.patch_round_trip.clone());
        let early = row.after_response.iter().filter(|v| **v < 0.0).count() as f64 * 100.0 / row.events.max(1) as f64;
        println!(
            "  {:<6} {:>5} {:>7} {:>7} {:>5} | {:>8.3} {:>8.3} {:>8.3} | {:>8.3} {:>8.3} {:>8.3} | {:>8.3} {:>8.3} | {:>5.1}% | {:>7.3} {:>7.3}",
            row.path,
            row.subscribers,
            row.changes,
            row.events,
            row.missing,
            percentile(&resp, 50.0),
            percentile(&resp, 99.0),
            resp.last().copied().unwrap_or(f64::NAN),
            percentile(&send, 50.0),
            percentile(&send, 99.0),
            send.last().copied().unwrap_or(f64::NAN),
            percentile(&all, 50.0),
            percentile(&all, 99.0),
            early,
            percentile(&patch, 50.0),
            percentile(&patch, 99.0),
        );
    }
    for row in &rows {
        let gauge_off = row.server_streams != Some(row.subscribers as f64);
        if row.stray > 0 || row.ended > 0 || row.missing > 0 || row.problem.is_some() || gauge_off {
            println!(
                "  !! {} x{}: {} missing event(s), {} stray/duplicate upsert(s), {} stream(s) ended early, \
                 server counted {} open stream(s){}",
                row.path,
                row.subscribers,
                row.missing,
                row.stray,
                row.ended,
                row.server_streams.map(|g| format!("{g:.0}")).unwrap_or_else(|| "?".into()),
                row.problem.as_deref().map(|p| format!("; first problem: {p}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}

async fn latency_scenario(
    args: &LatencyArgs,
    path: &'static str,
    subscribe_url: &str,
    n: usize,
    round: usize,
) -> anyhow::Result<LatencyRow> {
    let stream_http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let streams = Streams::new(subscribe_url, args.sensor, &args.sensor_token, Some(tx));
    let handles: Vec<JoinHandle<()>> = futures_util::stream::iter(0..n)
        .map(|i| streams.open(&stream_http, i))
        .buffer_unordered(32)
        .try_collect()
        .await?;

    // A separate client, so the PATCH keeps its own keep-alive connection.
    let patch_http = reqwest::Client::new();
    let patch_url = format!(
        "{}/v1/tenants/{}/sensors/{}/smtp-integration",
        args.publish_url.trim_end_matches('/'),
        args.tenant,
        args.sensor
    );
    let timeout = Duration::from_secs(args.event_timeout);
    let mut row = LatencyRow {
        path,
        subscribers: n,
        changes: 0,
        events: 0,
        missing: 0,
        stray: 0,
        after_response: Vec::with_capacity(args.changes * n),
        after_send: Vec::with_capacity(args.changes * n),
        last_after_send: Vec::with_capacity(args.changes),
        patch_round_trip: Vec::with_capacity(args.changes),
        ended: 0,
        problem: None,
        server_streams: None,
    };
    let metrics_http = reqwest::Client::new();
    for i in 0..args.warmup + args.changes {
        if i == args.warmup {
            row.server_streams = open_streams_gauge(&metrics_http, subscribe_url.trim_end_matches('/')).await;
        }
        let body = json!({ "destination_domains": [format!("r{round}-c{i}.bench.example")] }).to_string();
        let sent = Instant::now();
        let response = patch_http
            .patch(&patch_url)
            .bearer_auth(&args.admin_token)
            .header("content-type", "application/merge-patch+json")
            .body(body)
            .send()
            .await
            .context("PATCH")?;
        // The response head has arrived: the change is committed.
        let answered = Instant::now();
        let status = response.status();
        let answer: Value = response.json().await.context("reading the PATCH answer")?;
        if !status.is_success() {
            bail!("PATCH: HTTP {status}: {answer}");
        }
        let revision = answer["revision"].as_i64().context("no `revision` in the PATCH answer")?;

        let deadline = tokio::time::Instant::from_std(answered + timeout);
        let mut received: Vec<Option<Instant>> = vec![None; n];
        let mut count = 0;
        let mut stray = 0;
        while count < n {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(a)) if a.revision == revision && received[a.subscriber].is_none() => {
                    received[a.subscriber] = Some(a.at);
                    count += 1;
                }
                Ok(Some(_)) => stray += 1,
                Ok(None) | Err(_) => break,
            }
        }
        if i < args.warmup {
            continue;
        }
        row.changes += 1;
        row.events += count;
        row.missing += n - count;
        row.stray += stray;
        row.patch_round_trip.push(signed_ms(answered, sent));
        for at in received.iter().flatten() {
            row.after_response.push(signed_ms(*at, answered));
            row.after_send.push(signed_ms(*at, sent));
        }
        if count == n
            && let Some(last) = received.iter().flatten().max()
        {
            row.last_after_send.push(signed_ms(*last, sent));
        }
    }
    // Anything still queued is a duplicate or a late event.
    while rx.try_recv().is_ok() {
        row.stray += 1;
    }
    row.ended = streams.stats.ended.load(Ordering::Relaxed);
    row.problem = streams.stats.first_problem();
    let retried = streams.retried();
    if retried > 0 {
        eprintln!("[stream_bench] latency: {retried} stream open(s) had to be retried");
    }
    close(handles);
    Ok(row)
}

// ------------------------------------------------------------------------------------ memory

struct MemoryRow {
    label: String,
    streams: usize,
    rss: u64,
    open_secs: Option<f64>,
    server_fds: Option<usize>,
    gauge: Option<f64>,
    client_rss: u64,
}

async fn memory(args: MemoryArgs) -> anyhow::Result<()> {
    let pid = args.pid.to_string();
    let api = args.url.trim_end_matches('/').to_owned();
    let addrs =
        if args.local_addrs.is_empty() { vec![IpAddr::V4(Ipv4Addr::LOCALHOST)] } else { args.local_addrs.clone() };
    let clients = addrs
        .iter()
        .map(|a| reqwest::Client::builder().local_address(*a).connect_timeout(Duration::from_secs(10)).build())
        .collect::<Result<Vec<_>, _>>()?;
    let plain = reqwest::Client::new();
    let streams = Streams::new(&api, args.sensor, &args.sensor_token, None);
    let stats = streams.stats.clone();
    let client_rss = || proc_status_bytes("self", "VmRSS").unwrap_or(0);

    // Warm-up: the database pool, worker threads and allocator arenas are in use before "before".
    eprintln!("[stream_bench] memory: warm-up (64 streams opened and closed)");
    let warm = Streams::new(&api, args.sensor, &args.sensor_token, None);
    let warm_handles: Vec<JoinHandle<()>> = futures_util::stream::iter(0..64)
        .map(|i| warm.open(&clients[i % clients.len()], i))
        .buffer_unordered(args.open_concurrency)
        .try_collect()
        .await?;
    close(warm_handles);
    let (gauge, waited) = wait_for_gauge(&plain, &api, 0.0, Duration::from_secs(45)).await;
    eprintln!(
        "[stream_bench] memory: server let go of the warm-up streams after {waited:.1} s (gauge {})",
        gauge.map(|g| format!("{g:.0}")).unwrap_or_else(|| "?".into())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows = vec![MemoryRow {
        label: "before (after warm-up)".into(),
        streams: 0,
        rss: proc_status_bytes(&pid, "VmRSS")?,
        open_secs: None,
        server_fds: open_fds(&pid),
        gauge: open_streams_gauge(&plain, &api).await,
        client_rss: client_rss(),
    }];
    let mut handles: Vec<JoinHandle<()>> = Vec::new();
    let mut failures = 0;
    let mut first_failure = None;
    for &target in &args.streams {
        if target <= handles.len() {
            continue;
        }
        eprintln!("[stream_bench] memory: opening streams {} to {target}", handles.len() + 1);
        let start = Instant::now();
        let opened: Vec<anyhow::Result<JoinHandle<()>>> = futures_util::stream::iter(handles.len()..target)
            .map(|i| streams.open(&clients[i % clients.len()], i))
            .buffer_unordered(args.open_concurrency)
            .collect()
            .await;
        let open_secs = start.elapsed().as_secs_f64();
        for result in opened {
            match result {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    failures += 1;
                    first_failure.get_or_insert(format!("{e:#}"));
                }
            }
        }
        eprintln!(
            "[stream_bench] memory: {} streams open ({:.1} s to open), idle for {} s",
            handles.len(),
            open_secs,
            args.idle
        );
        tokio::time::sleep(Duration::from_secs(args.idle)).await;
        rows.push(MemoryRow {
            label: format!("{target} idle streams"),
            streams: handles.len() - stats.ended.load(Ordering::Relaxed),
            rss: proc_status_bytes(&pid, "VmRSS")?,
            open_secs: Some(open_secs),
            server_fds: open_fds(&pid),
            gauge: open_streams_gauge(&plain, &api).await,
            client_rss: client_rss(),
        });
    }
    let bookmarks = stats.bookmarks.load(Ordering::Relaxed);
    let ended = stats.ended.load(Ordering::Relaxed);
    let upserts = stats.upserts.load(Ordering::Relaxed);
    close(handles);
    eprintln!("[stream_bench] memory: all streams closed; waiting for the server to let go of them");
    let (_, waited) = wait_for_gauge(&plain, &api, 0.0, Duration::from_secs(45)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.push(MemoryRow {
        label: format!("all closed (+{waited:.0} s)"),
        streams: 0,
        rss: proc_status_bytes(&pid, "VmRSS")?,
        open_secs: None,
        server_fds: open_fds(&pid),
        gauge: open_streams_gauge(&plain, &api).await,
        client_rss: client_rss(),
    });

    let before = rows[0].rss;
    println!(
        "  {:<24} {:>8} {:>10} {:>10} {:>13} {:>9} {:>9} {:>9} {:>11}",
        "", "streams", "VmRSS MiB", "+MiB", "bytes/stream", "open s", "srv fds", "gauge", "client MiB"
    );
    for row in &rows {
        let delta = row.rss as i64 - before as i64;
        let per_stream =
            if row.streams > 0 { format!("{:.0}", delta as f64 / row.streams as f64) } else { "-".to_owned() };
        println!(
            "  {:<24} {:>8} {:>10.1} {:>+10.1} {:>13} {:>9} {:>9} {:>9} {:>11.1}",
            row.label,
            row.streams,
            mib(row.rss),
            delta as f64 / (1024.0 * 1024.0),
            per_stream,
            row.open_secs.map(|s| format!("{s:.1}")).unwrap_or_else(|| "-".into()),
            row.server_fds.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            row.gauge.map(|g| format!("{g:.0}")).unwrap_or_else(|| "?".into()),
            mib(row.client_rss),
        );
    }
    let measured: Vec<&MemoryRow> = rows.iter().filter(|r| r.open_secs.is_some()).collect();
    for pair in measured.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.streams > a.streams {
            println!(
                "  marginal {} -> {} streams: {:.0} bytes/stream",
                a.streams,
                b.streams,
                (b.rss as f64 - a.rss as f64) / (b.streams - a.streams) as f64
            );
        }
    }
    println!(
        "  while idle: {bookmarks} bookmark(s) and {upserts} upsert(s) received; {ended} stream(s) ended by the server; \
         {failures} open(s) failed; {} open(s) retried; connected from {}",
        streams.retried(),
        addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    );
    if let Some(f) = first_failure {
        println!("  !! first failed open: {f}");
    }
    if let Some(p) = stats.first_problem() {
        println!("  !! first stream problem: {p}");
    }
    Ok(())
}
