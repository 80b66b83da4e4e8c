//! The durable scan queue's workers. A stored message waits with verdict `pending` until one of
//! them claims it (`FOR UPDATE SKIP LOCKED`, so replicas share the work and a crash hands it to
//! another), scans it off the async threads and records the verdict; a failed scan is retried with
//! backoff. They wake when this replica stores a message, and look every second for what other
//! replicas stored. `mailsensor_scan_queue_depth` is how many wait.
//!
//! Intake comes first: a sender waits for its `250`, a verdict waits for nobody. While hand-offs
//! are in progress on this replica, a worker holds back before each claim — at most a second, so
//! scanning keeps moving under sustained load, and not at all once the backlog is large — and
//! works off what piled up as soon as intake pauses.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::scan;
use crate::store::{self, messages::Scanned};

/// How often an idle worker looks for messages other replicas stored, and the depth is sampled.
const POLL: Duration = Duration::from_secs(1);
/// How long a woken worker waits for more messages before it claims: a verdict is that much later,
/// and a busy intake costs a claim per batch rather than one per message.
const GATHER: Duration = Duration::from_millis(50);

/// The longest a worker holds back for intake before it claims anyway.
const YIELD_AT_MOST: Duration = Duration::from_secs(1);
/// From this many waiting messages on, workers no longer hold back for intake.
const YIELD_UNTIL_DEPTH: u64 = 20_000;

/// What this replica's scan workers know of its intake.
#[derive(Default)]
pub struct Intake {
    /// Notified for every message this replica stores.
    stored: Notify,
    /// Hand-offs in progress.
    receiving: AtomicUsize,
    /// Messages waiting for their scan, as last sampled.
    depth: AtomicU64,
}

impl Intake {
    /// Marks a hand-off in progress until the returned guard drops.
    pub fn receiving(self: &Arc<Self>) -> Receiving {
        self.receiving.fetch_add(1, Ordering::SeqCst);
        Receiving(self.clone())
    }

    /// A message was stored: wakes a worker.
    pub fn stored(&self) {
        self.stored.notify_one();
    }

    /// Waits while hand-offs are in progress, within [`YIELD_AT_MOST`] and [`YIELD_UNTIL_DEPTH`].
    async fn yield_to_intake(&self) {
        let until = Instant::now() + YIELD_AT_MOST;
        while self.receiving.load(Ordering::SeqCst) > 0
            && self.depth.load(Ordering::Relaxed) < YIELD_UNTIL_DEPTH
            && Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A hand-off in progress ([`Intake::receiving`]).
pub struct Receiving(Arc<Intake>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.receiving.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running workers of one replica.
pub struct ScanQueue {
    pub intake: Arc<Intake>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl ScanQueue {
    /// Starts `workers` scan workers (each holds at most a few MiB of messages in memory; none: this
    /// replica only stores) and the depth gauge; all end when `stopping` turns true.
    pub fn start(db: DatabaseConnection, workers: usize, stopping: watch::Receiver<bool>) -> Arc<ScanQueue> {
        let intake = Arc::new(Intake::default());
        let mut tasks: Vec<JoinHandle<()>> =
            (0..workers).map(|_| tokio::spawn(work(db.clone(), intake.clone(), stopping.clone()))).collect();
        tasks.push(tokio::spawn(gauge(db, intake.clone(), stopping)));
        Arc::new(ScanQueue { intake, tasks: std::sync::Mutex::new(tasks) })
    }

    /// Stops at once (a crashed replica, in tests): whatever was claimed goes back to the queue.
    pub fn shutdown(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }
}

async fn work(db: DatabaseConnection, intake: Arc<Intake>, mut stopping: watch::Receiver<bool>) {
    while !*stopping.borrow() {
        intake.yield_to_intake().await;
        let turn = store::messages::scan_next(&db, async |raws| {
            let count = raws.len();
            // Parsing is CPU work: off the async threads. A message that makes the parser panic
            // fails alone, not the batch.
            let scan_each = move || {
                raws.iter()
                    .map(|raw| {
                        std::panic::catch_unwind(|| scan::scan(raw))
                            .map_err(|_| "the scan failed: the parser panicked".to_owned())
                    })
                    .collect()
            };
            tokio::task::spawn_blocking(scan_each)
                .await
                .unwrap_or_else(|e| (0..count).map(|_| Err(format!("the scan failed: {e}"))).collect())
        })
        .await;
        match turn {
            Ok(turn) => {
                turn.outcomes.into_iter().for_each(report);
                if turn.more_waiting {
                    continue;
                }
            }
            Err(e) => tracing::warn!(error = %e, "the scan queue cannot be read; retrying"),
        }
        tokio::select! {
            _ = intake.stored.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
        // Let a few more arrive, so a busy intake is scanned in batches, not one claim per message.
        tokio::select! {
            _ = tokio::time::sleep(GATHER) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// Counts one scanned message, and logs a failed scan.
fn report(outcome: Scanned) {
    match outcome {
        Scanned::Done { verdict } => {
            metrics::counter!("mailsensor_messages_scanned_total", "verdict" => verdict).increment(1);
        }
        Scanned::Failed { id, attempts, error } => {
            metrics::counter!("mailsensor_scan_failures_total").increment(1);
            tracing::warn!(message = %id, attempts, error = %error, "scan failed; it will be retried");
        }
    }
}

async fn gauge(db: DatabaseConnection, intake: Arc<Intake>, mut stopping: watch::Receiver<bool>) {
    while !*stopping.borrow() {
        match store::messages::scan_queue_depth(&db).await {
            Ok(depth) => {
                intake.depth.store(depth, Ordering::Relaxed);
                metrics::gauge!("mailsensor_scan_queue_depth").set(depth as f64);
            }
            Err(e) => tracing::debug!(error = %e, "scan queue depth unavailable"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
}
