//! The retro-hunt runner of one replica: works off running hunts one chunk at a time (any replica
//! may take the next chunk), yielding first to intake and to live scans; starts queued hunts within
//! the platform's cap. Each hunt's rules are compiled once per replica and kept while it runs.
use std::collections::HashMap;
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
    /// Messages per chunk (one transaction).
    pub chunk: u64,
    /// Hunts running at once, platform-wide.
    pub max_running: u64,
}

impl Default for HuntOptions {
    fn default() -> Self {
        HuntOptions { chunk: 100, max_running: 2 }
    }
}

/// How often an idle runner looks for work.
const POLL: Duration = Duration::from_secs(1);
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
    while !*stopping.borrow() {
        intake.yield_to_intake().await;
        let until = Instant::now() + YIELD_TO_SCANS;
        while intake.depth.load(std::sync::atomic::Ordering::Relaxed) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rules = compiled.clone();
        let turn = store::retrohunts::work_next(&db, options.chunk, options.max_running, async |hunt, batch| {
            let (id, source, namespace) = (hunt.id, hunt.source.clone(), hunt.ruleset_name.clone());
            tokio::task::spawn_blocking(move || scan_chunk(&rules, id, &namespace, &source, batch))
                .await
                .map_err(|e| format!("the retro-hunt's scan failed: {e}"))?
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
    // The chunk's halves on two threads, each with its own scanner (a scanner is per thread): a
    // hunt works as fast as the live scan's two workers, and still yields to intake between chunks.
    let half = batch.len().div_ceil(2);
    let mut second = batch;
    let first: Vec<ToHunt> = second.drain(..half).collect();
    let (mut found, rest) = std::thread::scope(|threads| {
        let other = threads.spawn(|| hunt_each(&rules, second));
        (hunt_each(&rules, first), other.join())
    });
    // Never a chunk with half its results: the chunk is redone.
    found.extend(rest.map_err(|_| "a retro-hunt scan thread failed".to_owned())?);
    Ok(found)
}

/// `batch` through `rules`, in order, one scanner for all of it.
fn hunt_each(rules: &yara::Rules, batch: Vec<ToHunt>) -> Vec<Vec<Explained>> {
    let mut scanner = rules.scanner();
    batch
        .into_iter()
        .map(|m| match m.raw {
            Some(raw) => {
                let run = scan::YaraRun::new(vec![&mut scanner], m.envelope);
                let explained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan::explain(&raw, run).1));
                let mut found = explained.unwrap_or_default();
                // A rule that matched a part matched the raw message too: one match per rule and object.
                found.sort_by(|a, b| {
                    (&a.matched.namespace, &a.matched.rule).cmp(&(&b.matched.namespace, &b.matched.rule))
                });
                let objects: Vec<(String, String)> = found
                    .iter()
                    .filter(|e| e.part.is_some())
                    .map(|e| (e.matched.namespace.clone(), e.matched.rule.clone()))
                    .collect();
                found.retain(|e| {
                    e.part.is_some() || !objects.contains(&(e.matched.namespace.clone(), e.matched.rule.clone()))
                });
                found
            }
            None => Vec::new(),
        })
        .collect()
}
