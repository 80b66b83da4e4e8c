//! Follows one sensor's config stream: connects, applies the snapshot and each change, resumes
//! from the last event id after any disconnect, and backs off with jitter while the API is away.
//! The last good settings stay in place the whole time; they are only replaced, never cleared,
//! except by a `delete`.
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::wire::SensorConfig;

#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    /// A `sensor` token for `sensor_id`.
    pub token: String,
    pub sensor_id: Uuid,
    /// Reconnect when nothing (not even a bookmark) arrives for this long.
    pub idle_timeout: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl FollowOptions {
    pub fn new(api: impl Into<String>, token: impl Into<String>, sensor_id: Uuid) -> Self {
        FollowOptions {
            api: api.into(),
            token: token.into(),
            sensor_id,
            idle_timeout: Duration::from_secs(45),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// One event as it was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// `reset`, `snapshot`, `synced`, `upsert`, `delete` or `bookmark`.
    pub kind: String,
    pub id: Option<String>,
    /// The settings in force after this event.
    pub config: Option<Arc<SensorConfig>>,
}

struct Shared {
    current: ArcSwapOption<SensorConfig>,
    last_id: std::sync::Mutex<Option<String>>,
    applied: broadcast::Sender<Applied>,
}

/// A running follower; dropping it stops it.
pub struct Follower {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Follower {
    pub fn start(options: FollowOptions) -> Follower {
        let (applied, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared { current: ArcSwapOption::empty(), last_id: Default::default(), applied });
        let task = tokio::spawn(run(options, shared.clone()));
        Follower { shared, task }
    }

    /// The settings in force now (`None` until the first snapshot, or after a `delete`).
    pub fn current(&self) -> Option<Arc<SensorConfig>> {
        self.shared.current.load_full()
    }

    pub fn last_event_id(&self) -> Option<String> {
        self.shared.last_id.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every event applied from now on, in order.
    pub fn applied(&self) -> broadcast::Receiver<Applied> {
        self.shared.applied.subscribe()
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Outcome {
    /// The connection delivered events and then ended: reconnect soon.
    Progressed,
    /// Nothing useful happened; wait (at least `Duration`, when the server said so).
    Failed(Option<Duration>),
    /// The sensor is gone.
    Deleted,
}

async fn run(options: FollowOptions, shared: Arc<Shared>) {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default();
    let mut backoff = options.min_backoff;
    loop {
        let outcome = connect_once(&http, &options, &shared).await;
        let wait = match outcome {
            Outcome::Deleted => return,
            Outcome::Progressed => {
                backoff = options.min_backoff;
                backoff
            }
            Outcome::Failed(hint) => {
                backoff = (backoff * 2).min(options.max_backoff);
                hint.map_or(backoff, |h| h.max(backoff))
            }
        };
        // Jitter, so a fleet of workers does not reconnect in lockstep after an API restart.
        let factor = rand::rng().random_range(0.5..1.5);
        tokio::time::sleep(wait.mul_f64(factor)).await;
    }
}

async fn connect_once(http: &reqwest::Client, options: &FollowOptions, shared: &Shared) -> Outcome {
    let url = format!("{}/v1/sensors/{}/config-stream", options.api.trim_end_matches('/'), options.sensor_id);
    let mut request = http.get(&url).bearer_auth(&options.token).header("accept", "text/event-stream");
    if let Some(id) = shared.last_id.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        request = request.header("last-event-id", id);
    }
    let response = match tokio::time::timeout(options.idle_timeout, request.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "config stream: cannot connect");
            return Outcome::Failed(None);
        }
        Err(_) => return Outcome::Failed(None),
    };
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        // The sensor no longer exists (its deletion was compacted away while we were gone).
        tracing::warn!("config stream: the sensor no longer exists; refusing mail from now on");
        shared.current.store(None);
        let _ = shared.applied.send(Applied { kind: "delete".into(), id: None, config: None });
        return Outcome::Deleted;
    }
    if !response.status().is_success() {
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        tracing::warn!(status = %response.status(), "config stream refused");
        return Outcome::Failed(retry_after);
    }
    let mut events = response.bytes_stream().eventsource();
    let mut progressed = false;
    loop {
        let next = match tokio::time::timeout(options.idle_timeout, events.next()).await {
            Ok(Some(Ok(event))) => event,
            Ok(Some(Err(e))) => {
                tracing::debug!(error = %e, "config stream broke");
                break;
            }
            Ok(None) | Err(_) => break,
        };
        progressed = true;
        let id = (!next.id.is_empty()).then(|| next.id.clone());
        let mut config = None;
        match next.event.as_str() {
            "snapshot" | "upsert" => match serde_json::from_str::<SensorConfig>(&next.data) {
                Ok(c) => {
                    let c = Arc::new(c);
                    shared.current.store(Some(c.clone()));
                    config = Some(c);
                }
                // Keep the last good settings; the worker reports the rejection.
                Err(e) => tracing::warn!(error = %e, "config stream: unreadable settings"),
            },
            "delete" => {
                shared.current.store(None);
            }
            _ => {}
        }
        // The id moves only after the event it belongs to is applied.
        if matches!(next.event.as_str(), "synced" | "upsert" | "delete" | "bookmark")
            && let Some(id) = &id
        {
            *shared.last_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
        }
        let _ = shared.applied.send(Applied {
            kind: next.event.clone(),
            id: if next.event == "snapshot" || next.event == "reset" { None } else { id },
            config: config.or_else(|| shared.current.load_full()),
        });
        if next.event == "delete" {
            return Outcome::Deleted;
        }
    }
    if progressed { Outcome::Progressed } else { Outcome::Failed(None) }
}
