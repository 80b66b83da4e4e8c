//! The settings in force, swapped atomically as revisions arrive; a session keeps the snapshot it
//! started with.
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde_json::json;

use crate::policy::SmtpSettings;
use crate::stream::client::Follower;
use crate::stream::wire::SensorConfig;

/// Settings a worker can enforce: the document from the stream and its checked form.
pub struct Active {
    pub config: Arc<SensorConfig>,
    pub settings: SmtpSettings,
}

pub type Current = Arc<ArcSwapOption<Active>>;

/// What the worker last applied, for acknowledgements and heartbeats.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    pub token: Option<String>,
    pub settings_revision: Option<i64>,
    pub rejected: Vec<serde_json::Value>,
}

/// Applies each config the follower receives; acknowledgements go out from a separate task, so a
/// slow API never delays applying the next change.
pub async fn apply_and_acknowledge(
    follower: Arc<Follower>,
    current: Current,
    reporter: super::handoff::Reporter,
    heartbeat: Duration,
) {
    let mut applied = follower.applied();
    let mut state = AppliedState::default();
    // The snapshot may have landed before we subscribed.
    if let Some(config) = follower.current() {
        apply(&config, &current, &mut state);
        state.token = follower.last_event_id();
    }
    let (report, latest) = tokio::sync::watch::channel(state.clone());
    let acknowledging = tokio::spawn(acknowledge(latest, reporter, heartbeat));
    loop {
        let event = match applied.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                // Fell behind the follower's buffer: what is current now is what counts.
                match follower.current() {
                    Some(config) => apply(&config, &current, &mut state),
                    None => current.store(None),
                }
                state.token = follower.last_event_id();
                report.send_replace(state.clone());
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        match event.kind.as_str() {
            "snapshot" | "upsert" => {
                if let Some(config) = &event.config {
                    apply(config, &current, &mut state);
                }
            }
            "delete" => {
                current.store(None);
                state.settings_revision = None;
            }
            _ => {}
        }
        if event.id.is_some() {
            state.token = event.id.clone();
        }
        if event.kind != "reset" && event.kind != "bookmark" {
            report.send_replace(state.clone());
        }
    }
    acknowledging.abort();
}

/// Sends the latest applied state when it changes, and as a heartbeat.
async fn acknowledge(
    mut latest: tokio::sync::watch::Receiver<AppliedState>,
    reporter: super::handoff::Reporter,
    heartbeat: Duration,
) {
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            changed = latest.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let state = latest.borrow_and_update().clone();
        reporter.report(&state).await;
    }
}

fn apply(config: &Arc<SensorConfig>, current: &Current, state: &mut AppliedState) {
    if current
        .load()
        .as_ref()
        .is_some_and(|a| a.config.settings_revision == config.settings_revision && a.config == *config)
    {
        return;
    }
    match config.settings() {
        Ok(settings) => {
            current.store(Some(Arc::new(Active { config: config.clone(), settings })));
            state.settings_revision = Some(config.settings_revision);
            state.rejected.clear();
            metrics::gauge!("mailsensor_worker_settings_revision").set(config.settings_revision as f64);
            tracing::info!(revision = config.settings_revision, enabled = config.enabled, "applied settings");
        }
        // Keep the last good settings, and say what could not be applied.
        Err(violations) => {
            tracing::error!(
                revision = config.settings_revision,
                ?violations,
                "settings rejected; keeping the last good ones"
            );
            state.rejected = violations.into_iter().map(|v| json!({"item": v.pointer, "reason": v.message})).collect();
        }
    }
}
