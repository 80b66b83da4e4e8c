//! Retro-hunts: a tenant's rules over the mail it already stored, as a job resource worked off in
//! chunks by any replica.
//!
//! A chunk is one transaction: the job's row is claimed `FOR UPDATE SKIP LOCKED` (so one replica
//! works a job at a time, and a killed one releases it), the transaction is then narrowed to the
//! job's tenant (row-level security: it reads that tenant's rows only), the next messages after
//! the job's cursor are read and scanned, and their matches, the messages' retro detections and
//! the job's progress are written together. A chunk cut short by a crash is redone whole: no match
//! is counted twice.
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::OnConflict,
};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::{Mode, Reach, as_tenant, narrow_to_tenant, run_in};
use super::entity::{message, message_chunk, retrohunt as hunt, retrohunt_match as found, sensor};
use super::{Page, PageRequest, StoreError, TenantScope};
use crate::policy::Violation;
use crate::scan::{Detection, Explained, Verdict, yara::Envelope};

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const FINISHED: &str = "finished";
pub const ABORTED: &str = "aborted";
pub const FAILED: &str = "failed";

/// A retro-hunt to start.
pub struct NewHunt {
    pub ruleset_id: Option<Uuid>,
    pub ruleset_name: String,
    pub source: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Empty: every sensor in the caller's scope.
    pub sensor_ids: Vec<Uuid>,
    pub match_cap: i64,
}

fn in_scope(scope: TenantScope) -> sea_orm::Select<hunt::Entity> {
    let mut query = hunt::Entity::find().filter(hunt::Column::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        query = query.filter(hunt::Column::NodeId.eq(node));
    }
    if scope.sensor.is_some() {
        query = query.filter(hunt::Column::Id.eq(Uuid::nil()));
    }
    query
}

async fn one(conn: &impl ConnectionTrait, scope: TenantScope, id: Uuid) -> Result<hunt::Model, StoreError> {
    in_scope(scope).filter(hunt::Column::Id.eq(id)).one(conn).await?.ok_or(StoreError::NotFound("retro-hunt"))
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<hunt::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| one(txn, scope, id).await).await
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    page: PageRequest,
) -> Result<Page<hunt::Model>, StoreError> {
    let mut query = in_scope(scope);
    if let Some(after) = page.after {
        query = query.filter(hunt::Column::Id.gt(after));
    }
    let query = query.order_by_asc(hunt::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

/// The sensors a hunt reads, as stored: those named (each must be in scope), or for an SCN's
/// principal every sensor of its SCN; empty for a PCN's: every sensor of the tenant, then and later.
async fn sensors_read(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    named: &[Uuid],
) -> Result<Vec<Uuid>, StoreError> {
    let mut query = super::scope::sensors(scope).select_only().column(sensor::Column::Id);
    if !named.is_empty() {
        query = query.filter(sensor::Column::Id.is_in(named.iter().copied()));
    }
    let known: Vec<Uuid> = query.into_tuple().all(conn).await?;
    let missing: Vec<Violation> = named
        .iter()
        .enumerate()
        .filter(|(_, id)| !known.contains(id))
        .map(|(i, id)| Violation::new(format!("/sensor_ids/{i}"), format!("no sensor {id} in your scope")))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Invalid(missing));
    }
    match (named.is_empty(), scope.node) {
        (false, _) => Ok(named.to_vec()),
        (true, None) => Ok(Vec::new()),
        (true, Some(_)) if known.is_empty() => {
            Err(StoreError::Invalid(vec![Violation::new("/sensor_ids", "there is no sensor in your scope to read")]))
        }
        (true, Some(_)) => Ok(known),
    }
}

pub async fn create(
    db: &DatabaseConnection,
    scope: TenantScope,
    node: Uuid,
    new: NewHunt,
    actor: &Actor,
) -> Result<hunt::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let sensor_ids = sensors_read(txn, scope, &new.sensor_ids).await?;
        let created = hunt::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(scope.tenant),
            node_id: Set(node),
            state: Set(QUEUED.to_owned()),
            ruleset_id: Set(new.ruleset_id),
            ruleset_name: Set(new.ruleset_name.clone()),
            source: Set(new.source.clone()),
            since: Set(new.since),
            until: Set(new.until),
            sensor_ids: Set(json!(sensor_ids)),
            match_cap: Set(new.match_cap),
            total: Set(0),
            scanned: Set(0),
            skipped: Set(0),
            bytes: Set(0),
            matches: Set(0),
            cap_reached: Set(false),
            cursor: Set(None),
            error: Set(None),
            created_by: Set(actor.sub.clone()),
            created_at: Set(super::now()),
            started_at: Set(None),
            finished_at: Set(None),
        }
        .insert(txn)
        .await?;
        let after = json!({
            "ruleset_id": created.ruleset_id, "ruleset_name": created.ruleset_name, "since": created.since,
            "until": created.until, "sensor_ids": created.sensor_ids, "match_cap": created.match_cap,
        });
        let entry = AuditEntry {
            tenant: scope.tenant,
            action: "retrohunt.start",
            target_type: "retrohunt",
            target_id: created.id,
            sensor_id: None,
            before: None,
            after: Some(after),
        };
        audit::record(txn, actor, entry).await?;
        Ok(created)
    })
    .await
}

/// Stops a queued or running hunt; a chunk in progress finishes first (the row is locked by it).
pub async fn abort(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    actor: &Actor,
) -> Result<hunt::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = in_scope(scope)
            .filter(hunt::Column::Id.eq(id))
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("retro-hunt"))?;
        if before.state != QUEUED && before.state != RUNNING {
            return Err(StoreError::Conflict(format!("the retro-hunt is {} already", before.state)));
        }
        let mut active: hunt::ActiveModel = before.clone().into();
        active.state = Set(ABORTED.to_owned());
        active.finished_at = Set(Some(super::now()));
        let after = active.update(txn).await?;
        super::alerts::raise_retro_end(txn, &after, ABORTED).await?;
        let entry = AuditEntry {
            tenant: scope.tenant,
            action: "retrohunt.abort",
            target_type: "retrohunt",
            target_id: id,
            sensor_id: None,
            before: Some(json!({"state": before.state, "scanned": before.scanned})),
            after: Some(json!({"state": after.state, "scanned": after.scanned})),
        };
        audit::record(txn, actor, entry).await?;
        Ok(after)
    })
    .await
}

/// A hunt's matches, in the order found.
pub async fn matches(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    page: PageRequest,
) -> Result<Page<found::Model>, StoreError> {
    let mut query = found::Entity::find()
        .filter(found::Column::TenantId.eq(scope.tenant))
        .filter(found::Column::RetrohuntId.eq(id));
    if let Some(after) = page.after {
        query = query.filter(found::Column::Id.gt(after));
    }
    let query = query.order_by_asc(found::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| {
        one(txn, scope, id).await?;
        Ok(query.clone().all(txn).await?)
    })
    .await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

/// A stored message as a chunk hands it to the scan: `raw` is `None` when its content is gone
/// (expired or erased): it is skipped, not failed.
pub struct ToHunt {
    pub id: Uuid,
    pub raw: Option<Vec<u8>>,
    pub envelope: Envelope,
}

/// What one turn of the runner did.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Nothing to do.
    Idle,
    /// A queued hunt was started.
    Started(Uuid),
    /// A chunk of a running hunt was worked off.
    Worked { hunt: Uuid, messages: usize },
    /// A hunt ended (finished, failed, or its match cap reached).
    Ended { hunt: Uuid, state: &'static str },
}

/// The messages a hunt reads (within its tenant; the transaction's row security keeps it there).
/// A chunk keeps messages only while their sizes add up to this much (and always keeps one), so a
/// runner holds a bounded amount in memory (twice this, with the chunk read ahead); the rest wait
/// for the next chunk.
const CHUNK_BYTES: i64 = 16 * 1024 * 1024;

/// The first of `rows` (in order) within [`CHUNK_BYTES`], at least one.
fn within_chunk_bytes<T>(mut rows: Vec<T>, size: impl Fn(&T) -> i64) -> Vec<T> {
    let mut total = 0;
    let kept = rows
        .iter()
        .position(|m| {
            total += size(m);
            total > CHUNK_BYTES
        })
        .unwrap_or(rows.len())
        .max(1);
    rows.truncate(kept);
    rows
}

/// The contents of the messages `ids` that still have theirs.
async fn contents_of(txn: &impl ConnectionTrait, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<u8>>, StoreError> {
    let pieces = message_chunk::Entity::find()
        .filter(message_chunk::Column::MessageId.is_in(ids.iter().copied()))
        .order_by_asc(message_chunk::Column::MessageId)
        .order_by_asc(message_chunk::Column::Seq)
        .all(txn)
        .await?;
    let mut contents: HashMap<Uuid, Vec<u8>> = HashMap::with_capacity(ids.len());
    for piece in pieces {
        match contents.entry(piece.message_id) {
            Entry::Occupied(mut raw) => raw.get_mut().extend_from_slice(&piece.data),
            Entry::Vacant(raw) => {
                raw.insert(piece.data);
            }
        }
    }
    Ok(contents)
}

/// The next chunk of a hunt, read outside the chunk's transaction while the chunk before it is
/// scanned, so reading overlaps scanning. A stored message's content never changes, so what was
/// read ahead is as good as reading it in the transaction, as long as it is still there
/// ([`ReadAhead::still_held`]); which messages the chunk holds is always decided in it.
pub struct ReadAhead {
    hunt: Uuid,
    contents: HashMap<Uuid, Vec<u8>>,
}

impl ReadAhead {
    /// The contents of `ids` as the chunk's transaction sees them: read ahead where they still
    /// exist, read now where they were not read ahead.
    async fn still_held(
        mut self,
        txn: &impl ConnectionTrait,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<u8>>, StoreError> {
        // Expiry or an erasure may have deleted some since: only the first piece is looked up.
        let present: HashSet<Uuid> = message_chunk::Entity::find()
            .select_only()
            .column(message_chunk::Column::MessageId)
            .filter(message_chunk::Column::MessageId.is_in(ids.iter().copied()))
            .filter(message_chunk::Column::Seq.eq(0))
            .into_tuple()
            .all(txn)
            .await?
            .into_iter()
            .collect();
        let mut contents = HashMap::with_capacity(ids.len());
        let mut unread = Vec::new();
        for id in ids.iter().filter(|id| present.contains(id)) {
            match self.contents.remove(id) {
                Some(raw) => {
                    contents.insert(*id, raw);
                }
                None => unread.push(*id),
            }
        }
        if !unread.is_empty() {
            contents.extend(contents_of(txn, &unread).await?);
        }
        Ok(contents)
    }
}

/// Reads the up to `chunk` messages of hunt `h` after message `after` (see [`ReadAhead`]); `None`
/// on SQLite, whose one connection is the chunk's transaction's.
pub async fn read_ahead(
    db: &DatabaseConnection,
    h: &hunt::Model,
    after: Uuid,
    chunk: u64,
) -> Result<Option<ReadAhead>, StoreError> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(None);
    }
    let query = messages_of(h)
        .filter(message::Column::Id.gt(after))
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::Size)
        .order_by_asc(message::Column::Id)
        .limit(chunk);
    run_in(db, Reach::Tenant(h.tenant_id), Mode::Snapshot, async |txn| {
        keyset_plan(txn).await?;
        let listed: Vec<(Uuid, i64)> = query.into_tuple().all(txn).await?;
        let ids: Vec<Uuid> = within_chunk_bytes(listed, |m| m.1).into_iter().map(|m| m.0).collect();
        let contents = contents_of(txn, &ids).await?;
        Ok(Some(ReadAhead { hunt: h.id, contents }))
    })
    .await
}

/// Has the rest of `txn` read a chunk (the next messages by id) in id order from the index on
/// (tenant, id), stopping at the chunk's end. Without statistics — a day's partition has none
/// until autovacuum first analyzes it, and never where autovacuum is off — PostgreSQL takes the
/// tenant for a handful of rows and reads every message after the cursor, bitmap and sort, for
/// each chunk: a hunt's time then grows with the square of its messages.
async fn keyset_plan(txn: &impl ConnectionTrait) -> Result<(), StoreError> {
    Ok(super::db::bitmap_scans(txn, false).await?)
}

fn messages_of(h: &hunt::Model) -> sea_orm::Select<message::Entity> {
    let mut query = message::Entity::find()
        .filter(message::Column::TenantId.eq(h.tenant_id))
        .filter(message::Column::Status.eq(super::messages::STORED))
        .filter(message::Column::ReceivedAt.gte(h.since))
        .filter(message::Column::ReceivedAt.lt(h.until));
    let sensors: Vec<Uuid> = serde_json::from_value(h.sensor_ids.clone()).unwrap_or_default();
    if !sensors.is_empty() {
        query = query.filter(message::Column::SensorId.is_in(sensors));
    }
    query
}

/// Starts a queued hunt when fewer than `max_running` run platform-wide and its tenant runs none.
async fn start_one(db: &DatabaseConnection, max_running: u64) -> Result<Option<Uuid>, StoreError> {
    run_in(db, Reach::Platform, Mode::Durable, async |txn| {
        let running = hunt::Entity::find().filter(hunt::Column::State.eq(RUNNING)).count(txn).await?;
        if running >= max_running {
            return Ok(None);
        }
        let queued = hunt::Entity::find()
            .filter(hunt::Column::State.eq(QUEUED))
            .order_by_asc(hunt::Column::Id)
            .limit(16)
            .lock_with_behavior(sea_orm::sea_query::LockType::Update, sea_orm::sea_query::LockBehavior::SkipLocked)
            .all(txn)
            .await?;
        for candidate in queued {
            let busy = hunt::Entity::find()
                .filter(hunt::Column::TenantId.eq(candidate.tenant_id))
                .filter(hunt::Column::State.eq(RUNNING))
                .count(txn)
                .await?;
            if busy > 0 {
                continue;
            }
            narrow_to_tenant(txn, candidate.tenant_id).await?;
            let total = messages_of(&candidate).count(txn).await? as i64;
            let id = candidate.id;
            let mut active: hunt::ActiveModel = candidate.into();
            active.state = Set(RUNNING.to_owned());
            active.started_at = Set(Some(super::now()));
            active.total = Set(total);
            active.update(txn).await?;
            return Ok(Some(id));
        }
        Ok(None)
    })
    .await
}

/// One turn of the runner: starts a queued hunt if it may, else works one chunk of a running one
/// with `scan` (which gets the hunt and the chunk's messages and answers, per message, what its
/// rules matched; or why the rules cannot run, which fails the hunt).
pub async fn work_next(
    db: &DatabaseConnection,
    chunk: u64,
    max_running: u64,
    ahead: Option<ReadAhead>,
    scan: impl AsyncFnOnce(&hunt::Model, Vec<ToHunt>) -> Result<Vec<Vec<Explained>>, String>,
) -> Result<Turn, StoreError> {
    if let Some(started) = start_one(db, max_running).await? {
        return Ok(Turn::Started(started));
    }
    run_in(db, Reach::Platform, Mode::Durable, async |txn| {
        let Some(h) = hunt::Entity::find()
            .filter(hunt::Column::State.eq(RUNNING))
            .order_by_asc(hunt::Column::Id)
            .limit(1)
            .lock_with_behavior(sea_orm::sea_query::LockType::Update, sea_orm::sea_query::LockBehavior::SkipLocked)
            .one(txn)
            .await?
        else {
            return Ok(Turn::Idle);
        };
        // From here on, only this tenant's rows.
        narrow_to_tenant(txn, h.tenant_id).await?;
        keyset_plan(txn).await?;
        let mut query = messages_of(&h);
        if let Some(cursor) = h.cursor {
            query = query.filter(message::Column::Id.gt(cursor));
        }
        let rows = query.order_by_asc(message::Column::Id).limit(chunk).all(txn).await?;
        let rows = within_chunk_bytes(rows, |m| m.size);
        let hunt_id = h.id;
        if rows.is_empty() {
            finish(txn, h, FINISHED, None).await?;
            return Ok(Turn::Ended { hunt: hunt_id, state: FINISHED });
        }
        let ids: Vec<Uuid> = rows.iter().map(|m| m.id).collect();
        let mut contents = match ahead.filter(|a| a.hunt == hunt_id) {
            Some(ahead) => ahead.still_held(txn, &ids).await?,
            None => contents_of(txn, &ids).await?,
        };
        let batch: Vec<ToHunt> = rows
            .iter()
            .map(|m| {
                let rcpt_to: Vec<String> = serde_json::from_value(m.rcpt_to.clone()).unwrap_or_default();
                let envelope = Envelope::of(Some(&m.mail_from), &rcpt_to);
                ToHunt { id: m.id, raw: contents.remove(&m.id), envelope }
            })
            .collect();
        let present: Vec<bool> = batch.iter().map(|m| m.raw.is_some()).collect();
        let bytes: i64 = batch.iter().filter_map(|m| m.raw.as_ref()).map(|r| r.len() as i64).sum();
        let found = match scan(&h, batch).await {
            Ok(found) => found,
            Err(error) => {
                finish(txn, h, FAILED, Some(error)).await?;
                return Ok(Turn::Ended { hunt: hunt_id, state: FAILED });
            }
        };
        let mut room = (h.match_cap - h.matches).max(0);
        let mut recorded = 0i64;
        for (m, explained) in rows.iter().zip(found) {
            let kept: Vec<Explained> = explained.into_iter().take(room as usize).collect();
            if kept.is_empty() {
                continue;
            }
            room -= kept.len() as i64;
            recorded += kept.len() as i64;
            record_matches(txn, &h, m, &kept).await?;
        }
        let cap_reached = room == 0 && recorded > 0;
        let skipped = present.iter().filter(|p| !**p).count() as i64;
        let last = rows.last().map(|m| m.id);
        let worked = rows.len();
        let mut active: hunt::ActiveModel = h.clone().into();
        active.scanned = Set(h.scanned + worked as i64 - skipped);
        active.skipped = Set(h.skipped + skipped);
        active.bytes = Set(h.bytes + bytes);
        active.matches = Set(h.matches + recorded);
        active.cursor = Set(last);
        active.cap_reached = Set(cap_reached);
        let updated = active.update(txn).await?;
        if cap_reached {
            finish(txn, updated, FINISHED, None).await?;
            return Ok(Turn::Ended { hunt: hunt_id, state: FINISHED });
        }
        Ok(Turn::Worked { hunt: hunt_id, messages: worked })
    })
    .await
}

async fn finish(
    txn: &impl ConnectionTrait,
    h: hunt::Model,
    state: &'static str,
    error: Option<String>,
) -> Result<(), StoreError> {
    let mut active: hunt::ActiveModel = h.into();
    active.state = Set(state.to_owned());
    active.error = Set(error);
    active.finished_at = Set(Some(super::now()));
    let ended = active.update(txn).await?;
    super::alerts::raise_retro_end(txn, &ended, state).await?;
    Ok(())
}

/// A message's matches: rows of the hunt's results, and retro detections on the message itself
/// (its verdict the worst of them all; a message still waiting for its own scan gets them then).
async fn record_matches(
    txn: &impl ConnectionTrait,
    h: &hunt::Model,
    m: &message::Model,
    kept: &[Explained],
) -> Result<(), StoreError> {
    let rows = kept.iter().enumerate().map(|(seq, e)| found::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(h.tenant_id),
        retrohunt_id: Set(h.id),
        message_id: Set(m.id),
        seq: Set(seq as i32),
        received_at: Set(m.received_at),
        sensor_id: Set(m.sensor_id),
        namespace: Set(e.matched.namespace.clone()),
        rule: Set(e.matched.rule.clone()),
        object: Set(e.object.clone()),
        part: Set(e.part.map(|p| p as i32)),
        archive_path: Set(json!(e.archive_path)),
        strings: Set(json!(e.matched.strings)),
    });
    let keys = [found::Column::TenantId, found::Column::RetrohuntId, found::Column::MessageId, found::Column::Seq];
    found::Entity::insert_many(rows)
        .on_conflict(OnConflict::columns(keys).do_nothing().to_owned())
        .exec_without_returning(txn)
        .await?;
    let found: Vec<Detection> = kept
        .iter()
        .map(|e| {
            let description = format!(
                "retro-hunt {}: YARA rule {}.{} matched {}",
                h.id, e.matched.namespace, e.matched.rule, e.object
            );
            let mut d = Detection::of_rule(&e.matched, description, e.part, e.archive_path.clone());
            d.retrohunt_id = Some(h.id);
            d
        })
        .collect();
    // A chunk redone after a crash raises it again: delivery is at least once anyway.
    super::alerts::raise_retro_match(txn, h.id, &h.ruleset_name, m, &found).await?;
    let Some(verdict) = m.verdict.as_deref().and_then(Verdict::parse) else { return Ok(()) };
    let mut detections: Vec<Detection> = serde_json::from_value(m.detections.clone()).unwrap_or_default();
    let mut worst = verdict;
    for d in found {
        let seen = detections.iter().any(|x| {
            x.retrohunt_id == d.retrohunt_id && x.rule == d.rule && x.part == d.part && x.archive_path == d.archive_path
        });
        if !seen {
            worst = worst.max(d.verdict);
            detections.push(d);
        }
    }
    let mut active: message::ActiveModel = m.clone().into();
    active.detections = Set(serde_json::to_value(&detections).unwrap_or_default());
    active.verdict = Set(Some(worst.as_str().to_owned()));
    active.update(txn).await?;
    Ok(())
}

/// Seconds left, from the pace so far.
pub fn eta_seconds(h: &hunt::Model, now: DateTime<Utc>) -> Option<u64> {
    let started = h.started_at?;
    let done = h.scanned + h.skipped;
    if h.state != RUNNING || done == 0 {
        return None;
    }
    let elapsed = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
    let left = (h.total - done).max(0) as f64;
    Some((elapsed * left / done as f64).ceil() as u64)
}
