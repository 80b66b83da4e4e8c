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

/// What the tailer publishes to every subscriber of this process.
#[derive(Debug, Clone)]
pub enum FeedItem {
    /// The next revision, in order.
    Change(Arc<Revision>),
    /// The revisions after the previous item and up to `upto` were compacted away before this
    /// process read them: whoever had not yet seen them must start over from a snapshot.
    Gap { upto: i64 },
}

pub struct ChangeFeed {
    db: DatabaseConnection,
    changes: broadcast::Sender<FeedItem>,
    seen: watch::Sender<i64>,
    wake: Notify,
    /// Held while the tailer reads the log; see [`ChangeFeed::hold`].
    reading: tokio::sync::Mutex<()>,
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
        let feed = Arc::new(ChangeFeed {
            db,
            changes,
            seen,
            wake: Notify::new(),
            reading: Default::default(),
            tasks: Default::default(),
        });
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

    pub fn subscribe(&self) -> broadcast::Receiver<FeedItem> {
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

    /// Keeps the tailer from reading the log until the guard is dropped, as if this process were
    /// paused: for tests of a replica that falls behind, and for looking at one in a debugger.
    pub async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.reading.lock().await
    }

    async fn catch_up(&self) -> Result<(), store::StoreError> {
        let _reading = self.reading.lock().await;
        loop {
            let from = self.seen();
            let batch = store::revisions::after(&self.db, from, BATCH).await?;
            // The log is gapless, so nothing to read, or a first row past `from + 1`, may mean the
            // rows after `from` were compacted before this process read them (it was paused, or
            // fell behind the retention). Only the head can tell: then they will never be read,
            // and waiting for them would leave every subscriber here waiting forever.
            if batch.first().is_none_or(|c| c.rev > from + 1) {
                let head = store::revisions::head(&self.db).await?;
                if head.oldest_retained > from + 1 {
                    self.skip_gap(from, head.oldest_retained - 1);
                    continue;
                }
            }
            let Some(last) = batch.last().map(|c| c.rev) else { return Ok(()) };
            for change in batch {
                // `seen` first: a subscriber that reads `seen` after subscribing then either gets
                // this change from the channel or replays it from the table, never neither.
                self.seen.send_replace(change.rev);
                // No receivers is fine: nobody is listening right now.
                let _ = self.changes.send(FeedItem::Change(Arc::new(change)));
            }
            metrics::gauge!("mailsensor_revision_seen").set(last as f64);
            if (last - from) < BATCH as i64 {
                return Ok(());
            }
        }
    }

    /// Moves past revisions `(from, upto]` that no longer exist, telling every subscriber.
    fn skip_gap(&self, from: i64, upto: i64) {
        tracing::warn!(
            from = from + 1,
            upto,
            "revisions were compacted before this replica read them; its subscribers start over from a snapshot"
        );
        metrics::counter!("mailsensor_revision_gaps_total").increment(1);
        // `seen` first, as for a change: a subscriber opened after this sees the new `seen`.
        self.seen.send_replace(upto);
        let _ = self.changes.send(FeedItem::Gap { upto });
        metrics::gauge!("mailsensor_revision_seen").set(upto as f64);
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
