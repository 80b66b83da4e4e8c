//! One subscriber's view of the stream: where it starts (reset + snapshot, or a replay from its
//! resume token) and, from there on, every change of its sensor, without gap or duplicate.
use std::collections::VecDeque;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use super::{ChangeFeed, FeedItem};
use crate::store::revisions::{ChangeKind, Revision};
use crate::store::{self, StoreError, TenantScope};
use crate::wire::{EventKind, Reset, StreamEvent};

/// How long a resume token newer than this replica has seen may wait for the replica to catch up.
pub const LAGGING_REPLICA_WAIT: Duration = Duration::from_secs(3);

/// `<epoch>:<rev>`: everything up to `rev` of that database epoch has been delivered. The epoch
/// part is `<database epoch>~<platform size cap>` (opaque to subscribers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub epoch: String,
    pub rev: i64,
}

impl Token {
    pub fn parse(s: &str) -> Option<Token> {
        let (epoch, rev) = s.trim().rsplit_once(':')?;
        let rev = rev.parse::<i64>().ok().filter(|r| *r >= 0)?;
        (!epoch.is_empty()).then(|| Token { epoch: epoch.to_owned(), rev })
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.epoch, self.rev)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("sensor not found")]
    NotFound,
    #[error("this replica has not yet seen revision {0}; retry")]
    Lagging(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Missed changes still to be read from the log, a page at a time, so a subscriber resuming from an
/// old token never makes the server hold its whole history in memory.
struct Replay {
    db: DatabaseConnection,
    tenant: Uuid,
    after: i64,
    upto: i64,
}

const REPLAY_PAGE: u64 = 16;

pub struct Subscription {
    db: DatabaseConnection,
    tenant: Uuid,
    sensor: Uuid,
    /// The platform size cap, for the settings documents sent.
    cap: u64,
    replay: Option<Replay>,
    epoch: String,
    receiver: broadcast::Receiver<FeedItem>,
    /// Highest revision consumed: everything up to it that concerns this sensor was queued.
    position: i64,
    queued: VecDeque<StreamEvent>,
    ended: bool,
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Fell more than the buffer behind; the subscriber should reconnect and resume.
    TooSlow,
    /// The sensor was deleted (the `delete` event was delivered) or the feed stopped.
    Closed,
}

impl Subscription {
    /// The log stores each change in its wire form, so it goes out as it is.
    fn change_event(&self, change: &Revision) -> StreamEvent {
        let event = match change.kind {
            ChangeKind::Delete => EventKind::Delete,
            ChangeKind::Upsert => EventKind::Upsert,
        };
        let id = Token { epoch: self.epoch.clone(), rev: change.rev };
        StreamEvent { event, id: Some(id.to_string()), data: change.payload.clone() }
    }

    /// Queues `reset`, `snapshot` and `synced`: the subscriber starts over from the settings as
    /// they are now. A sensor that no longer exists gets its `delete` instead.
    async fn start_over(&mut self, reason: &str) -> Result<(), StoreError> {
        let scope = TenantScope::whole_tenant(self.tenant);
        let (rev, snapshot) = store::settings::snapshot(&self.db, scope, self.sensor).await?;
        self.replay = None;
        self.queued.clear();
        self.position = rev;
        let reset = Reset { reason: reason.to_owned() };
        self.queued.push_back(StreamEvent { event: EventKind::Reset, id: None, data: to_json(reset) });
        self.queued.push_back(StreamEvent {
            event: EventKind::Snapshot,
            id: None,
            data: to_json(snapshot.config(self.cap)),
        });
        let synced = Some(self.position().to_string());
        self.queued.push_back(StreamEvent { event: EventKind::Synced, id: synced, data: json!({}) });
        Ok(())
    }

    /// This process skipped revisions up to `upto` that were compacted before it read them.
    /// A subscriber that had not got that far may have missed a change of its sensor: it starts
    /// over (or, if its sensor was deleted meanwhile, hears of the deletion).
    async fn after_gap(&mut self, upto: i64) -> Result<(), Ended> {
        if upto <= self.position {
            return Ok(());
        }
        match self.start_over("this API replica fell behind the retained history").await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound(_)) => {
                self.position = upto;
                let id = Token { epoch: self.epoch.clone(), rev: upto };
                let data = to_json(crate::wire::SensorDeleted { sensor_id: self.sensor });
                self.queued.push_back(StreamEvent { event: EventKind::Delete, id: Some(id.to_string()), data });
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading a snapshot after a gap failed");
                Err(Ended::TooSlow)
            }
        }
    }

    /// Everything up to this token has been delivered (while missed changes are still being
    /// replayed, that is the last one replayed, not the live position).
    pub fn position(&self) -> Token {
        let rev = self.replay.as_ref().map_or(self.position, |r| r.after);
        Token { epoch: self.epoch.clone(), rev }
    }

    /// The next event, or why there will be none.
    pub async fn next(&mut self) -> Result<StreamEvent, Ended> {
        loop {
            if self.queued.is_empty()
                && let Some(replay) = &mut self.replay
            {
                let page = store::revisions::for_sensor(
                    &replay.db,
                    replay.tenant,
                    self.sensor,
                    replay.after,
                    replay.upto,
                    REPLAY_PAGE,
                )
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "replaying missed changes failed");
                    Ended::TooSlow
                })?;
                let tenant = replay.tenant;
                match page.last() {
                    Some(last) if page.len() as u64 == REPLAY_PAGE => replay.after = last.rev,
                    _ => self.replay = None,
                }
                for change in page.iter().filter(|c| c.tenant_id == tenant) {
                    let event = self.change_event(change);
                    self.queued.push_back(event);
                }
                continue;
            }
            if let Some(event) = self.queued.pop_front() {
                if event.event == EventKind::Delete {
                    self.ended = true;
                }
                return Ok(event);
            }
            if self.ended {
                return Err(Ended::Closed);
            }
            match self.receiver.recv().await {
                Ok(FeedItem::Gap { upto }) => self.after_gap(upto).await?,
                Ok(FeedItem::Change(change)) if change.rev <= self.position => continue,
                Ok(FeedItem::Change(change)) => {
                    self.position = change.rev;
                    if change.sensor_id == self.sensor {
                        let event = self.change_event(&change);
                        self.queued.push_back(event);
                    }
                }
                Err(RecvError::Lagged(_)) => return Err(Ended::TooSlow),
                Err(RecvError::Closed) => return Err(Ended::Closed),
            }
        }
    }

    /// An event if one is ready now (long-poll draining).
    pub async fn next_ready(&mut self) -> Option<StreamEvent> {
        // A replay page may need a database read; live events are either there or not.
        let wait = if self.replay.is_some() { Duration::from_secs(2) } else { Duration::from_millis(1) };
        tokio::time::timeout(wait, self.next()).await.ok().and_then(Result::ok)
    }
}

/// Opens a subscription for `sensor` (in `tenant`) from `last_event_id`.
pub async fn open(
    feed: &ChangeFeed,
    tenant: Uuid,
    sensor: Uuid,
    last_event_id: Option<&str>,
    cap: u64,
) -> Result<Subscription, SubscribeError> {
    let db = feed.db();
    // Subscribe before reading anything, so no change can fall between the read and the stream.
    let receiver = feed.subscribe();
    let head = store::revisions::head(db).await?;
    let token = last_event_id.and_then(Token::parse);
    // The tokens' epoch also names the platform size cap the settings were sent under: a worker
    // resuming on a replica with another cap starts over and so learns its clamped limit, which
    // replayed changes (each as its writer sent it) would not tell it.
    let issued = format!("{}~{cap}", head.epoch);
    let reset_reason = match &token {
        None if last_event_id.is_some() => Some("the resume token is not one this API issued"),
        None => Some("no resume token"),
        Some(t) if t.epoch.rsplit_once('~').map_or(t.epoch.as_str(), |(epoch, _)| epoch) != head.epoch => {
            Some("the database epoch changed (restored from a backup?)")
        }
        Some(t) if t.epoch != issued => Some("the platform's message size cap changed"),
        Some(t) if t.rev + 1 < head.oldest_retained => Some("the resume token is older than the retained history"),
        // No replica can ever catch up with it: start over rather than answer 503 forever.
        Some(t) if t.rev > head.rev => Some("the resume token is newer than this database"),
        Some(_) => None,
    };
    let mut sub = Subscription {
        db: db.clone(),
        tenant,
        sensor,
        cap,
        replay: None,
        epoch: issued,
        receiver,
        position: 0,
        queued: VecDeque::new(),
        ended: false,
    };
    match (reset_reason, token) {
        (Some(reason), _) => sub.start_over(reason).await.map_err(|e| match e {
            StoreError::NotFound(_) => SubscribeError::NotFound,
            e => SubscribeError::Store(e),
        })?,
        (None, Some(token)) => {
            if token.rev > feed.seen() && !feed.wait_seen(token.rev, LAGGING_REPLICA_WAIT).await {
                return Err(SubscribeError::Lagging(token.rev));
            }
            // The sensor must still be this tenant's, unless its deletion is what we replay.
            let upto = feed.seen();
            let exists = store::sensors::get(db, TenantScope::whole_tenant(tenant), sensor).await.is_ok();
            if !exists && !store::revisions::deleted_between(db, tenant, sensor, token.rev, upto).await? {
                return Err(SubscribeError::NotFound);
            }
            sub.position = upto;
            sub.replay = Some(Replay { db: db.clone(), tenant, after: token.rev, upto });
        }
        (None, None) => unreachable!("no token always resets"),
    }
    Ok(sub)
}

fn to_json(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}
