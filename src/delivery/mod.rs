//! The alert delivery workers of one replica. Each claims due deliveries from the outbox
//! (`FOR UPDATE SKIP LOCKED`, shared by every replica), sends them — a signed webhook, a syslog
//! CEF record, an e-mail — and records how each attempt went; the store decides what follows
//! (delivered, retried on the schedule, failed, the destination disabled).
//!
//! Every connection goes only to an address the guard (`alerts::guard`) accepts, checked on the
//! address actually connected to, unless the operator allows private ranges.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

mod address;
mod email;
mod syslog;
mod webhook;

use crate::store::{self, alerts::Attempted, alerts::Due, alerts::Outcome};

/// How often an idle worker looks for due deliveries (other replicas' verdicts included).
const POLL: Duration = Duration::from_millis(100);
/// Deliveries one claim takes at most.
const CLAIM: u64 = 32;
/// Deliveries in flight at once per claim loop.
const IN_FLIGHT: usize = 256;
/// Deliveries to one destination in flight at once per claim loop: a slow receiver holds up only
/// this many, and the others' claims go on. At 64 (two claims' worth) a destination's next claim
/// waited for one of its two groups to be sent and recorded, and at ~1,000 detections/s on
/// 2 cores each destination's deliveries queued behind that (webhook p99 1.25–1.65 s); at 128,
/// 0.49 s (`bench/alerts.sh`, requeue, RATE=1000).
const PER_DESTINATION: usize = 128;
/// Webhooks of one claim's group in flight at once (a worker holds at most four groups of a
/// destination, [`PER_DESTINATION`]). At 8, a worker's webhooks to one receiver could not go
/// faster than 16 per attempt's time: at ~1,000 detections/s on 2 cores (an attempt ~12 ms) that
/// was the webhooks' ceiling, and their p99 rose to 1.5 s while syslog's stayed at 0.15 s.
const WEBHOOKS_AT_ONCE: usize = 16;

/// How this replica delivers alerts.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// Delivery workers (each claims its own batches); none: this replica delivers nothing.
    pub workers: usize,
    /// Send to loopback, private, link-local and CGNAT addresses too (on-premises SIEMs).
    pub allow_private: bool,
    /// How long a webhook receiver or a syslog server may take (Standard Webhooks: 15 s).
    pub timeout: Duration,
    /// The API's address as people reach it, for the links in e-mails.
    pub public_url: String,
    /// This replica's name in syslog records.
    pub host: String,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            workers: 2,
            allow_private: false,
            timeout: Duration::from_secs(15),
            public_url: "http://localhost:8080".to_owned(),
            host: hostname(),
        }
    }
}

/// This machine's name, or `mailsensor`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "mailsensor".to_owned())
}

/// The running delivery workers of one replica.
pub struct Deliverer {
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Deliverer {
    pub fn start(db: DatabaseConnection, options: DeliveryOptions, stopping: watch::Receiver<bool>) -> Arc<Deliverer> {
        let senders = Arc::new(Senders::new(&options));
        let mut tasks: Vec<JoinHandle<()>> =
            (0..options.workers).map(|_| tokio::spawn(work(db.clone(), senders.clone(), stopping.clone()))).collect();
        if options.workers > 0 {
            tasks.push(tokio::spawn(gauge(db, stopping)));
        }
        Arc::new(Deliverer { tasks: std::sync::Mutex::new(tasks) })
    }

    /// Stops at once (a crashed replica, in tests): what was held becomes due again when its hold ends.
    pub fn shutdown(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// What sends: the HTTP client, the kept-open syslog connections, the e-mail settings.
struct Senders {
    options: DeliveryOptions,
    webhooks: webhook::Webhooks,
    syslog: syslog::Connections,
}

impl Senders {
    fn new(options: &DeliveryOptions) -> Self {
        Senders {
            options: options.clone(),
            webhooks: webhook::Webhooks::new(options),
            syslog: syslog::Connections::default(),
        }
    }

    /// One destination's deliveries of a claim: in one write (syslog), in order over one session
    /// (an e-mail relay) or a few at a time, each as soon as there is room (webhooks); their attempts
    /// recorded together.
    async fn deliver(&self, db: &DatabaseConnection, group: Vec<Due>) {
        let attempted: Vec<(Due, Attempted)> = match group[0].destination.kind.as_str() {
            "email" => email::send_all(group, &self.options).await,
            "syslog" => {
                let started = Instant::now();
                let result = self.syslog.send_all(&group, &self.options).await;
                each_attempted(group, result, started.elapsed()).collect()
            }
            _ => {
                futures_util::stream::iter(group)
                    .map(|due| async move {
                        let attempted = self.send(&due).await;
                        (due, attempted)
                    })
                    .buffer_unordered(WEBHOOKS_AT_ONCE)
                    .collect()
                    .await
            }
        };
        attempted.iter().for_each(|(due, a)| account(due, a));
        if let Err(e) = store::alerts::record(db, &attempted).await {
            // Not recorded: they are due again when their hold runs out, and sent again.
            tracing::warn!(error = %e, deliveries = attempted.len(), "cannot record delivery attempts");
        }
    }

    async fn send(&self, due: &Due) -> Attempted {
        let started = Instant::now();
        let result = match due.destination.kind.as_str() {
            "webhook" => self.webhooks.send(due).await,
            other => Err(Failure::failed(format!("unknown destination kind {other:?}"))),
        };
        attempted(result, started.elapsed())
    }
}

/// An attempt's result as the store records it.
fn attempted(result: Result<Sent, Failure>, latency: Duration) -> Attempted {
    match result {
        Ok(sent) => Attempted {
            outcome: sent.outcome,
            status: sent.status,
            error: sent.error,
            latency,
            response: sent.response,
        },
        Err(f) => {
            Attempted { outcome: f.outcome, status: f.status, error: Some(f.error), latency, response: f.response }
        }
    }
}

/// The attempts at deliveries sent together (one syslog write, one e-mail): each has the
/// batch's result and time.
fn each_attempted(
    batch: Vec<Due>,
    result: Result<Sent, Failure>,
    latency: Duration,
) -> impl Iterator<Item = (Due, Attempted)> {
    batch.into_iter().map(move |due| (due, attempted(result.clone(), latency)))
}

/// What a receiver answered (for webhooks, also a refusal carried in an answer: 410, 429, 503, …).
#[derive(Clone)]
pub(crate) struct Sent {
    outcome: Outcome,
    status: Option<i32>,
    error: Option<String>,
    response: Option<String>,
}

/// An attempt that did not reach a receiver, or that it refused.
#[derive(Clone)]
pub(crate) struct Failure {
    outcome: Outcome,
    status: Option<i32>,
    error: String,
    response: Option<String>,
}

impl Failure {
    fn failed(error: impl Into<String>) -> Self {
        Failure { outcome: Outcome::Failed { retry_after: None }, status: None, error: error.into(), response: None }
    }

    fn refused(error: impl Into<String>) -> Self {
        Failure { outcome: Outcome::Refused, status: None, error: error.into(), response: None }
    }
}

/// Each attempt in `/metrics`: how it went and how long it took, by kind of destination.
fn account(due: &Due, attempted: &Attempted) {
    let kind = due.destination.kind.clone();
    let outcome = match attempted.outcome {
        Outcome::Delivered => "delivered",
        Outcome::Failed { .. } => "failed",
        Outcome::Gone => "gone",
        Outcome::Refused => "refused",
    };
    metrics::counter!("mailsensor_alert_attempts_total", "kind" => kind.clone(), "outcome" => outcome).increment(1);
    metrics::histogram!("mailsensor_alert_attempt_seconds", "kind" => kind.clone())
        .record(attempted.latency.as_secs_f64());
    if attempted.outcome == Outcome::Delivered {
        // From the event (the verdict's commit) to its receipt.
        let age = (chrono::Utc::now() - due.event.timestamp).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("mailsensor_alert_delivery_latency_seconds", "kind" => kind).record(age);
    }
}

/// A claim loop: claims while there is room, hands each destination's share of a claim to a task
/// of its own (so a slow destination holds up only itself), and claims again as tasks end. At
/// most [`IN_FLIGHT`] deliveries are in flight per loop, [`PER_DESTINATION`] of them for one
/// destination; a destination at its share is left out of the next claims. The tasks end with the
/// loop (a replica killed mid-delivery: what they held is due again when its hold runs out).
async fn work(db: DatabaseConnection, senders: Arc<Senders>, mut stopping: watch::Receiver<bool>) {
    let hold = senders.options.timeout * 2 + Duration::from_secs(5);
    let mut running: JoinSet<()> = JoinSet::new();
    let mut in_flight = InFlight::default();
    while !*stopping.borrow() {
        while let Some(done) = running.try_join_next_with_id() {
            in_flight.ended(done.map_or_else(|e| e.id(), |(id, ())| id));
        }
        let room = IN_FLIGHT.saturating_sub(in_flight.total());
        let full = in_flight.full();
        let mut wait = POLL;
        if room > 0 {
            match store::alerts::claim(&db, (room as u64).min(CLAIM), hold, &full).await {
                Ok(due) if !due.is_empty() => {
                    let mut by_destination: HashMap<uuid::Uuid, Vec<Due>> = HashMap::new();
                    for d in due {
                        by_destination.entry(d.destination.id).or_default().push(d);
                    }
                    for (destination, group) in by_destination {
                        let (senders, db, n) = (senders.clone(), db.clone(), group.len());
                        let handle = running.spawn(async move { senders.deliver(&db, group).await });
                        in_flight.started(handle.id(), destination, n);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the alert outbox cannot be read; retrying");
                    wait = Duration::from_secs(1);
                }
            }
        }
        tokio::select! {
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                in_flight.ended(done.map_or_else(|e| e.id(), |(id, ())| id));
            }
            _ = tokio::time::sleep(wait) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// What one claim loop has in flight: per task, its destination and how many deliveries.
#[derive(Default)]
struct InFlight {
    tasks: HashMap<tokio::task::Id, (uuid::Uuid, usize)>,
    per_destination: HashMap<uuid::Uuid, usize>,
}

impl InFlight {
    fn started(&mut self, task: tokio::task::Id, destination: uuid::Uuid, n: usize) {
        self.tasks.insert(task, (destination, n));
        *self.per_destination.entry(destination).or_default() += n;
    }

    fn ended(&mut self, task: tokio::task::Id) {
        let Some((destination, n)) = self.tasks.remove(&task) else { return };
        if let Some(count) = self.per_destination.get_mut(&destination) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.per_destination.remove(&destination);
            }
        }
    }

    fn total(&self) -> usize {
        self.per_destination.values().sum()
    }

    /// The destinations at their share, left out of the next claim.
    fn full(&self) -> Vec<uuid::Uuid> {
        self.per_destination.iter().filter(|(_, n)| **n >= PER_DESTINATION).map(|(d, _)| *d).collect()
    }
}

async fn gauge(db: DatabaseConnection, mut stopping: watch::Receiver<bool>) {
    while !*stopping.borrow() {
        if let Ok(depth) = store::alerts::pending(&db).await {
            metrics::gauge!("mailsensor_alert_outbox_depth").set(depth as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopping.changed() => {}
        }
    }
}
