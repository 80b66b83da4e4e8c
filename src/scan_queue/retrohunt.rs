//! The retro-hunt runner of one replica: works off running hunts one chunk at a time (any replica
//! may take the next chunk), yielding first to intake and to live scans; starts queued hunts within
//! the platform's cap. Each hunt's rules are compiled once per replica and kept while it runs.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use tokio::sync::watch;
use uuid::Uuid;

use super::Intake;
use crate::scan::{self, Explained, yara};
use crate::store::{self, retrohunts::ToHunt, retrohunts::Turn};

/// How a replica runs retro-hunts.
#[derive(Debug, Clone, Copy)]
pub struct HuntOptions {
    /// Messages per chunk (one transaction), within 16 MiB of content.
    pub chunk: u64,
    /// Hunts running at once, platform-wide.
    pub max_running: u64,
}

impl Default for HuntOptions {
    fn default() -> Self {
        HuntOptions { chunk: 250, max_running: 2 }
    }
}

/// How often an idle runner looks for work.
const POLL: Duration = Duration::from_secs(1);
/// Messages per chunk while hand-offs are in progress on this replica.
const CHUNK_BESIDE_INTAKE: u64 = 20;
/// The longest a chunk waits for live scans to drain.
const YIELD_TO_SCANS: Duration = Duration::from_secs(1);

type Compiled = Arc<Mutex<HashMap<Uuid, Arc<yara::Rules>>>>;

pub(super) async fn run(
    db: DatabaseConnection,
    options: HuntOptions,
    intake: Arc<Intake>,
    mut stopping: watch::Receiver<bool>,
) {
    let compiled: Compiled = Arc::default();
    let mut ahead = None;
    while !*stopping.borrow() {
        intake.yield_to_intake().await;
        let until = Instant::now() + YIELD_TO_SCANS;
        while intake.depth.load(Ordering::Relaxed) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // While intake goes on, a chunk is short: it is the time a chunk's scan takes from intake.
        let chunk = if intake.receiving.load(Ordering::SeqCst) > 0 {
            options.chunk.min(CHUNK_BESIDE_INTAKE)
        } else {
            options.chunk
        };
        let rules = compiled.clone();
        let taken = ahead.take();
        let next = &mut ahead;
        let turn = store::retrohunts::work_next(&db, chunk, options.max_running, taken, async |hunt, batch| {
            let (id, source, namespace) = (hunt.id, hunt.source.clone(), hunt.ruleset_name.clone());
            // The next chunk is read while this one is scanned.
            let after = batch.last().map(|m| m.id);
            let read = async {
                match after {
                    Some(after) => store::retrohunts::read_ahead(&db, hunt, after, chunk).await,
                    None => Ok(None),
                }
            };
            let scan = super::behind_intake::spawn(move || scan_chunk(&rules, id, &namespace, &source, batch));
            let (scanned, read) = tokio::join!(scan, read);
            *next = read.unwrap_or_else(|e| {
                tracing::debug!(error = %e, "reading a retro-hunt's next chunk ahead failed; its turn reads it");
                None
            });
            scanned.map_err(|e| format!("the retro-hunt's scan failed: {e}"))?
        })
        .await;
        match turn {
            Ok(Turn::Worked { messages, .. }) => {
                metrics::counter!("mailsensor_retrohunt_messages_total").increment(messages as u64);
                continue;
            }
            Ok(Turn::Started(hunt)) => {
                tracing::info!(%hunt, "retro-hunt started");
                continue;
            }
            Ok(Turn::Ended { hunt, state }) => {
                compiled.lock().unwrap_or_else(|e| e.into_inner()).remove(&hunt);
                metrics::counter!("mailsensor_retrohunts_ended_total", "state" => state).increment(1);
                tracing::info!(%hunt, state, "retro-hunt ended");
                continue;
            }
            Ok(Turn::Idle) => {}
            Err(e) => tracing::warn!(error = %e, "a retro-hunt chunk failed; it will be redone"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.changed() => {}
        }
    }
}

/// A chunk's messages through the hunt's rules, every match with its object and offsets.
fn scan_chunk(
    compiled: &Compiled,
    hunt: Uuid,
    namespace: &str,
    source: &str,
    batch: Vec<ToHunt>,
) -> Result<Vec<Vec<Explained>>, String> {
    let rules = {
        let held = compiled.lock().unwrap_or_else(|e| e.into_inner()).get(&hunt).cloned();
        match held {
            Some(rules) => rules,
            None => {
                let rules =
                    yara::compile(&[yara::RuleSource::new(namespace, namespace, source)]).map_err(|problems| {
                        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
                        format!("the rules do not compile: {}", list.join("; "))
                    })?;
                let rules = Arc::new(rules);
                compiled.lock().unwrap_or_else(|e| e.into_inner()).insert(hunt, rules.clone());
                rules
            }
        }
    };
    // Two threads, each with its own scanner (a scanner is per thread), take the chunk's messages
    // one at a time, so a large message holds up only its own thread: a hunt works as fast as the
    // live scan's two workers, and still yields to intake between chunks.
    let next = AtomicUsize::new(0);
    let scanned = std::thread::scope(|threads| {
        let other = threads.spawn(|| hunt_each(&rules, &batch, &next));
        let mine = hunt_each(&rules, &batch, &next);
        other.join().map(|theirs| [mine, theirs])
    });
    // Never a chunk with half its results: the chunk is redone.
    let scanned = scanned.map_err(|_| "a retro-hunt scan thread failed".to_owned())?;
    let mut found = vec![Vec::new(); batch.len()];
    for (at, matched) in scanned.into_iter().flatten() {
        found[at] = matched;
    }
    Ok(found)
}

/// The messages of `batch` not yet taken (`next`) through `rules`, one scanner for all of them;
/// each message that matched, by its place in `batch`, with its matches.
fn hunt_each(rules: &yara::Rules, batch: &[ToHunt], next: &AtomicUsize) -> Vec<(usize, Vec<Explained>)> {
    let mut scanner = rules.scanner();
    let mut found = Vec::new();
    loop {
        let at = next.fetch_add(1, Ordering::Relaxed);
        let Some(m) = batch.get(at) else { return found };
        let Some(raw) = &m.raw else { continue };
        let run = scan::YaraRun::new(vec![&mut scanner], m.envelope.clone());
        let explained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan::explain(raw, run).1));
        let mut matched = explained.unwrap_or_default();
        // A rule that matched a part matched the raw message too: one match per rule and object.
        matched.sort_by(|a, b| (&a.matched.namespace, &a.matched.rule).cmp(&(&b.matched.namespace, &b.matched.rule)));
        let objects: Vec<(String, String)> = matched
            .iter()
            .filter(|e| e.part.is_some())
            .map(|e| (e.matched.namespace.clone(), e.matched.rule.clone()))
            .collect();
        matched
            .retain(|e| e.part.is_some() || !objects.contains(&(e.matched.namespace.clone(), e.matched.rule.clone())));
        if !matched.is_empty() {
            found.push((at, matched));
        }
    }
}
