//! Tails the revision log and fans each change out to every subscriber of this process.
//!
//! A notification (PostgreSQL `NOTIFY`, or a local commit that appended to the log) only wakes the tailer;
//! it always re-reads `rev > last_seen` from the table, and also polls, so a lost notification
//! costs latency, never a change.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::store::{self, revisions::Revision};

#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// How often the tailer reads the log without being woken.
    pub poll_interval: Duration,
    /// How long log rows are kept for resuming subscribers.
    pub retention: Duration,
    /// How many changes a subscriber may fall behind before it is disconnected.
    pub subscriber_buffer: usize,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(7 * 24 * 3600),
            subscriber_buffer: 1024,
        }
    }
}

pub struct ChangeFeed {
    db: DatabaseConnection,
    changes: broadcast::Sender<Arc<Revision>>,
    seen: watch::Sender<i64>,
    wake: Notify,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

const BATCH: u64 = 1000;
const COMPACT_EVERY: Duration = Duration::from_secs(3600);

impl ChangeFeed {
    /// Starts following the log from its current head.
    pub async fn start(db: DatabaseConnection, options: FeedOptions) -> Result<Arc<ChangeFeed>, store::StoreError> {
        let head = store::revisions::head(&db).await?;
        let (changes, _) = broadcast::channel(options.subscriber_buffer.max(16));
        let (seen, _) = watch::channel(head.rev);
        let feed = Arc::new(ChangeFeed { db, changes, seen, wake: Notify::new(), tasks: Default::default() });
        let mut tasks = vec![tokio::spawn(tail(feed.clone(), options.poll_interval))];
        let listening = feed.clone();
        tasks.push(tokio::spawn(async move {
            let db = listening.db.clone();
            store::revisions::listen(db, || listening.wake.notify_one()).await
        }));
        tasks.push(tokio::spawn(housekeeping(feed.db.clone(), options.retention)));
        *feed.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(feed)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Revision>> {
        self.changes.subscribe()
    }

    /// The last revision this process has published.
    pub fn seen(&self) -> i64 {
        *self.seen.borrow()
    }

    /// Waits until this process has published `rev`, at most `timeout`.
    pub async fn wait_seen(&self, rev: i64, timeout: Duration) -> bool {
        let mut seen = self.seen.subscribe();
        self.wake.notify_one();
        tokio::time::timeout(timeout, seen.wait_for(|s| *s >= rev)).await.is_ok_and(|r| r.is_ok())
    }

    /// Stops the background tasks (the process keeps running, e.g. a test restarting a server).
    pub fn shutdown(&self) {
        for task in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            task.abort();
        }
    }

    async fn catch_up(&self) -> Result<(), store::StoreError> {
        loop {
            let from = self.seen();
            let batch = store::revisions::after(&self.db, from, BATCH).await?;
            let Some(last) = batch.last().map(|c| c.rev) else { return Ok(()) };
            for change in batch {
                // `seen` first: a subscriber that reads `seen` after subscribing then either gets
                // this change from the channel or replays it from the table, never neither.
                self.seen.send_replace(change.rev);
                // No receivers is fine: nobody is listening right now.
                let _ = self.changes.send(Arc::new(change));
            }
            metrics::gauge!("mailsensor_revision_seen").set(last as f64);
            if (last - from) < BATCH as i64 {
                return Ok(());
            }
        }
    }
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn tail(feed: Arc<ChangeFeed>, poll: Duration) {
    let mut commits = store::revisions::commits();
    loop {
        commits.mark_unchanged();
        if let Err(e) = feed.catch_up().await {
            tracing::warn!(error = %e, "reading the revision log failed; retrying");
        }
        tokio::select! {
            _ = feed.wake.notified() => {}
            _ = commits.changed() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Hourly: compacts the revision log, and drops message uploads that broke off more than an hour
/// ago (a crashed replica or a dropped connection can leave one behind).
async fn housekeeping(db: DatabaseConnection, retention: Duration) {
    loop {
        let now = chrono::Utc::now();
        let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        match store::revisions::compact(&db, cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "compacted the revision log"),
            Err(e) => tracing::warn!(error = %e, "compacting the revision log failed"),
        }
        match store::messages::purge_incomplete(&db, now - chrono::Duration::hours(1)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "dropped broken message uploads"),
            Err(e) => tracing::warn!(error = %e, "dropping broken message uploads failed"),
        }
        tokio::time::sleep(COMPACT_EVERY).await;
    }
}
