//! Acknowledgements: the worker tells the API what it has applied whenever that changes, and
//! repeats it as a heartbeat. They go out from their own task, so a slow API never delays
//! applying the next change.
use std::time::Duration;

use tokio::sync::watch;

use super::follower::AppliedState;
use super::handoff::ApiClient;

pub async fn acknowledge(mut applied: watch::Receiver<AppliedState>, api: ApiClient, heartbeat: Duration) {
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
        }
        let state = applied.borrow_and_update().clone();
        api.report(&state).await;
    }
}
