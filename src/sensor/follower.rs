//! Follows one sensor's config stream: connects, checks the snapshot and each change with
//! `policy`, keeps the settings in force, resumes from the last event id after any disconnect,
//! and backs off with jitter while the API is away. The last good settings stay in place the
//! whole time; they are only replaced, never cleared, except by a `delete`.
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use rand::Rng;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::api_health::{ApiHealth, plain};
use crate::policy::SmtpSettings;
use crate::wire::{EventKind, RejectedItem, SensorConfig};

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
    /// Told of every connection attempt's outcome.
    pub health: Arc<ApiHealth>,
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
            health: Arc::new(ApiHealth::new(Duration::from_secs(3))),
        }
    }
}

/// Settings a worker enforces: the document from the stream and its checked form.
#[derive(Debug)]
pub struct InForce {
    pub config: SensorConfig,
    pub settings: SmtpSettings,
}

impl InForce {
    pub fn revision(&self) -> i64 {
        self.config.settings.revision
    }

    /// The largest message accepted, in bytes.
    pub fn max_message_bytes(&self) -> u64 {
        self.config.settings.max_message_bytes
    }
}

/// What the worker has applied, as its acknowledgements report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedState {
    /// The last stream position whose event was applied.
    pub token: Option<String>,
    pub settings_revision: Option<i64>,
    /// Items of the last document that could not be applied (the previous settings stay in force).
    pub rejected: Vec<RejectedItem>,
}

/// One event as it was applied.
#[derive(Debug, Clone)]
pub struct Applied {
    pub kind: EventKind,
    pub id: Option<String>,
    /// The settings in force after this event.
    pub in_force: Option<Arc<InForce>>,
}

struct Shared {
    in_force: ArcSwapOption<InForce>,
    state: watch::Sender<AppliedState>,
    applied: broadcast::Sender<Applied>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut AppliedState)) {
        self.state.send_modify(change);
    }

    /// Checks a document with the same `policy` code the API validated it with; keeps the last
    /// good settings when it does not pass.
    fn apply(&self, config: SensorConfig) {
        let unchanged = self.in_force.load().as_ref().is_some_and(|f| f.config == config);
        if unchanged {
            return;
        }
        let revision = config.settings.revision;
        // The platform cap is the API's to apply (it serves the limit in force, clamped, as
        // `max_message_bytes`); a stored limit above a cap lowered since is no reason to refuse.
        match config.settings.document.parse(u64::MAX) {
            Ok(settings) => {
                tracing::info!(revision, enabled = settings.enabled, "applied settings");
                super::metrics::settings_revision(revision);
                self.in_force.store(Some(Arc::new(InForce { config, settings })));
                self.update(|s| {
                    s.settings_revision = Some(revision);
                    s.rejected.clear();
                });
            }
            Err(violations) => {
                let rejected: Vec<RejectedItem> = violations.into_iter().map(RejectedItem::from).collect();
                let items: Vec<String> = rejected.iter().map(|r| format!("{}: {}", r.item, r.reason)).collect();
                tracing::error!(revision, rejected = %items.join("; "), "settings rejected; keeping the last good ones");
                self.update(|s| s.rejected = rejected);
            }
        }
    }

    fn forget(&self) {
        self.in_force.store(None);
        self.update(|s| s.settings_revision = None);
    }
}

/// A running follower; dropping it stops it.
pub struct Follower {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Follower {
    pub fn start(options: FollowOptions) -> Follower {
        let (applied, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            in_force: ArcSwapOption::empty(),
            state: watch::channel(AppliedState::default()).0,
            applied,
        });
        let task = tokio::spawn(run(options, shared.clone()));
        Follower { shared, task }
    }

    /// The settings in force now (`None` until the first snapshot, or after a `delete`).
    pub fn in_force(&self) -> Option<Arc<InForce>> {
        self.shared.in_force.load_full()
    }

    pub fn last_event_id(&self) -> Option<String> {
        self.shared.state.borrow().token.clone()
    }

    /// What has been applied, changing with every event that moves it.
    pub fn state(&self) -> watch::Receiver<AppliedState> {
        self.shared.state.subscribe()
    }

    /// Every event applied from now on, in order.
    pub fn applied(&self) -> broadcast::Receiver<Applied> {
        self.shared.applied.subscribe()
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
    let resume = shared.state.borrow().token.clone();
    if let Some(id) = resume {
        request = request.header("last-event-id", id);
    }
    let response = match tokio::time::timeout(options.idle_timeout, request.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            options.health.failed(plain(&e));
            return Outcome::Failed(None);
        }
        Err(_) => {
            options.health.failed(format!("no answer within {} s at {url}", options.idle_timeout.as_secs()));
            return Outcome::Failed(None);
        }
    };
    if response.status().is_server_error() {
        options.health.failed(format!("the API answered {} at {url}", response.status()));
    } else {
        options.health.reached();
    }
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        // The sensor no longer exists (its deletion was compacted away while we were gone).
        tracing::warn!("config stream: the sensor no longer exists; refusing mail from now on");
        shared.forget();
        let _ = shared.applied.send(Applied { kind: EventKind::Delete, id: None, in_force: None });
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
        let Some(kind) = EventKind::from_name(&next.event) else {
            tracing::debug!(event = %next.event, "config stream: unknown event kind ignored");
            continue;
        };
        match kind {
            EventKind::Snapshot | EventKind::Upsert => match serde_json::from_str::<SensorConfig>(&next.data) {
                Ok(config) => shared.apply(config),
                // Keep the last good settings.
                Err(e) => tracing::warn!(error = %e, "config stream: unreadable settings"),
            },
            EventKind::Delete => shared.forget(),
            EventKind::Reset | EventKind::Synced | EventKind::Bookmark => {}
        }
        // The id moves only after the event it belongs to is applied.
        let id = (kind.has_token() && !next.id.is_empty()).then(|| next.id.clone());
        if let Some(id) = &id {
            shared.update(|s| s.token = Some(id.clone()));
        }
        let _ = shared.applied.send(Applied { kind, id, in_force: shared.in_force.load_full() });
        if kind == EventKind::Delete {
            return Outcome::Deleted;
        }
    }
    if progressed { Outcome::Progressed } else { Outcome::Failed(None) }
}
