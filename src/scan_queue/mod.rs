//! The durable scan queue's workers. A stored message waits with verdict `pending` until one of
//! them claims it (`FOR UPDATE SKIP LOCKED`, so replicas share the work and a crash hands it to
//! another), scans it off the async threads and records the verdict; a failed scan is retried with
//! backoff. They wake when this replica stores a message, and look every second for what other
//! replicas stored. `mailsensor_scan_queue_depth` is how many wait.
//!
//! Intake comes first: a sender waits for its `250`, a verdict waits for nobody. The scan's CPU
//! work runs at a lower CPU priority than intake ([`behind_intake`]). While hand-offs are in
//! progress on this replica, a worker also holds back before each claim — at most a second, so
//! scanning keeps moving under sustained load, and not at all once the backlog is large — and
//! works off what piled up as soon as intake pauses.
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

mod behind_intake;
mod retrohunt;
mod tenant_rules;

pub use retrohunt::HuntOptions;

pub use crate::engines::Daemons;
use crate::engines::Delivery;
use crate::scan::{self, yara};
use crate::store::{self, messages::Scanned, messages::ToScan};
use tenant_rules::TenantRules;

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

/// How many messages of a batch are with the daemons at once, per worker.
const DAEMON_LOOKS: usize = 8;

/// The engines a scan runs beside the built-in checks.
#[derive(Clone, Default)]
pub struct Engines {
    /// The platform's YARA rules (`--yara-rules`), compiled once and shared by every worker.
    pub yara: Option<Arc<yara::Rules>>,
    /// clamd and rspamd, when configured (`--clamd`, `--rspamd`).
    pub daemons: Arc<Daemons>,
    /// The tenants' detection rulesets, compiled as the claimed messages need them.
    tenant_rules: Arc<TenantRules>,
}

impl Engines {
    /// Compiles every `.yar` and `.yara` file of `dir` (not its subfolders), each in a namespace
    /// named after the file; every problem of every file is in the error.
    pub fn yara_from_dir(dir: &std::path::Path) -> anyhow::Result<Arc<yara::Rules>> {
        let mut sources = Vec::new();
        let entries = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot read YARA rules from {}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let is_rules = path.extension().is_some_and(|e| e == "yar" || e == "yara");
            if !is_rules || !path.is_file() {
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let namespace = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            sources.push(yara::RuleSource::new(namespace, path.display().to_string(), text));
        }
        sources.sort_by(|a, b| a.origin.cmp(&b.origin));
        if sources.is_empty() {
            anyhow::bail!("no .yar or .yara files in {}", dir.display());
        }
        Self::yara_from(&sources)
    }

    /// The daemons at `clamd` (`tcp://HOST:PORT`, `unix:PATH`) and `rspamd` (`http://HOST:PORT`),
    /// each look bounded by `timeout`. They need not be up yet: a message waits for them.
    pub fn daemons(clamd: Option<&str>, rspamd: Option<&str>, timeout: Duration) -> anyhow::Result<Arc<Daemons>> {
        let clamd = match clamd {
            Some(address) => {
                let address = address.parse().map_err(|e| anyhow::anyhow!("--clamd {e}"))?;
                Some(crate::engines::clamd::Clamd::new(address, timeout))
            }
            None => None,
        };
        let rspamd = match rspamd {
            Some(url) => {
                Some(crate::engines::rspamd::Rspamd::new(url, timeout).map_err(|e| anyhow::anyhow!("--rspamd {e}"))?)
            }
            None => None,
        };
        Ok(Arc::new(Daemons { clamd, rspamd }))
    }

    /// The demo ruleset of `mailsensor dev`.
    pub fn demo_yara() -> anyhow::Result<Arc<yara::Rules>> {
        Self::yara_from(&[yara::demo_rules()])
    }

    /// Compiles `sources` as the platform's rules.
    pub fn yara_from(sources: &[yara::RuleSource]) -> anyhow::Result<Arc<yara::Rules>> {
        let rules = yara::compile(sources).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("the YARA rules do not compile:\n  {}", list.join("\n  "))
        })?;
        for warning in &rules.warnings {
            tracing::warn!(%warning, "YARA rule warning");
        }
        tracing::info!(rules = rules.count(), "YARA rules compiled");
        Ok(Arc::new(rules))
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
    /// A replica with scan workers also runs retro-hunts (`hunts`).
    pub fn start(
        db: DatabaseConnection,
        workers: usize,
        engines: Engines,
        hunts: HuntOptions,
        stopping: watch::Receiver<bool>,
    ) -> Arc<ScanQueue> {
        let intake = Arc::new(Intake::default());
        if let Some(rules) = &engines.yara {
            metrics::gauge!("mailsensor_yara_rules").set(rules.count() as f64);
        }
        let mut tasks: Vec<JoinHandle<()>> = (0..workers)
            .map(|_| tokio::spawn(work(db.clone(), engines.clone(), intake.clone(), stopping.clone())))
            .collect();
        if workers > 0 {
            tasks.push(tokio::spawn(retrohunt::run(db.clone(), hunts, intake.clone(), stopping.clone())));
        }
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

/// Scans a batch of claimed messages: the pure scan on the scan's threads (it is CPU work, and
/// intake's comes first: [`behind_intake`]), then the daemons' looks, several messages at a time.
/// An engine that could not finish is in the report; the store decides between a retry and an
/// incomplete result.
async fn scan_all(
    batch: Vec<ToScan>,
    loaded: Vec<store::rulesets::Loaded>,
    engines: &Engines,
) -> Vec<Result<scan::ScanReport, String>> {
    engines.tenant_rules.learn(loaded);
    let count = batch.len();
    let for_scan = engines.clone();
    let scanned = behind_intake::spawn(move || {
        let reports = scan_batch(&batch, &for_scan);
        (batch, reports)
    })
    .await;
    let (batch, mut reports) = match scanned {
        Ok(scanned) => scanned,
        Err(e) => return (0..count).map(|_| Err(format!("the scan failed: {e}"))).collect(),
    };
    if !engines.daemons.is_empty() {
        // A few messages at a time: the daemons share this machine's cores with intake.
        for (messages, reports) in batch.chunks(DAEMON_LOOKS).zip(reports.chunks_mut(DAEMON_LOOKS)) {
            let looks = futures_util::future::join_all(
                messages
                    .iter()
                    .zip(reports.iter())
                    .map(|(message, report)| looks(&engines.daemons, message, report.is_ok())),
            )
            .await;
            for (report, looks) in reports.iter_mut().zip(looks) {
                if let Ok(report) = report {
                    looks.into_iter().for_each(|look| report.add_engine(look.run, look.detections));
                }
            }
        }
    }
    reports.iter().flatten().for_each(count_engine_runs);
    reports
}

/// The daemons' looks at one message whose pure scan went through (`scanned`).
async fn looks(daemons: &Daemons, message: &ToScan, scanned: bool) -> Vec<crate::engines::Look> {
    if !scanned {
        return Vec::new();
    }
    let delivery = Delivery {
        client_ip: &message.delivery.client_ip,
        helo: &message.delivery.helo,
        mail_from: &message.delivery.mail_from,
        rcpt_to: &message.delivery.rcpt_to,
    };
    daemons.look(&message.raw, &delivery).await
}

/// The pure scan of a batch. A message that makes a parser panic fails alone, not the batch.
fn scan_batch(batch: &[ToScan], engines: &Engines) -> Vec<Result<scan::ScanReport, String>> {
    // The tenants' rulesets each message needs, compiled (or found compiled) first: the scanners
    // below borrow them.
    let mut tenant_rules: HashMap<&[store::rulesets::InForce], Result<Option<Arc<yara::Rules>>, String>> =
        HashMap::new();
    for message in batch {
        tenant_rules.entry(&message.rulesets).or_insert_with(|| engines.tenant_rules.rules(&message.rulesets));
    }
    // One YARA scanner per set of rules for the batch: creating one is costly, a batch is up to
    // 32 messages.
    let mut platform = engines.yara.as_ref().map(|rules| rules.scanner());
    let mut tenants: HashMap<&[store::rulesets::InForce], yara::Scanner<'_>> = HashMap::new();
    batch
        .iter()
        .map(|ToScan { raw, envelope, rulesets, .. }| {
            let tenant = match &tenant_rules[rulesets.as_slice()] {
                Ok(rules) => rules.as_ref(),
                Err(e) => return Err(e.clone()),
            };
            if let Some(rules) = tenant {
                tenants.entry(rulesets.as_slice()).or_insert_with(|| rules.scanner());
            }
            let mut scanners: Vec<&mut yara::Scanner<'_>> = platform.iter_mut().collect();
            scanners.extend(tenants.get_mut(rulesets.as_slice()));
            let scanned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match scanners.is_empty() {
                true => scan::scan(raw),
                false => scan::scan_with_yara(raw, scan::YaraRun::new(scanners, envelope.clone())),
            }));
            match scanned {
                Ok(report) => Ok(report),
                Err(_) => {
                    // Whatever the panic left half done in a scanner is not used again.
                    platform = engines.yara.as_ref().map(|rules| rules.scanner());
                    tenants.clear();
                    Err("the scan failed: a parser panicked".to_owned())
                }
            }
        })
        .collect()
}

/// Each engine's looks in `/metrics`: how many, how they went, how long they took.
fn count_engine_runs(report: &scan::ScanReport) {
    for run in &report.engines {
        let (engine, status) = (run.engine.clone(), run.status.as_str());
        metrics::counter!("mailsensor_scan_engine_runs_total", "engine" => engine.clone(), "status" => status)
            .increment(1);
        metrics::histogram!("mailsensor_scan_engine_seconds", "engine" => engine).record(run.millis as f64 / 1000.0);
    }
}

async fn work(db: DatabaseConnection, engines: Engines, intake: Arc<Intake>, mut stopping: watch::Receiver<bool>) {
    while !*stopping.borrow() {
        intake.yield_to_intake().await;
        let known = |id, revision| engines.tenant_rules.knows(id, revision);
        let turn =
            store::messages::scan_next(&db, known, async |batch, loaded| scan_all(batch, loaded, &engines).await).await;
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
