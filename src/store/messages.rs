//! Received messages. A message that fits in one chunk is stored, content and all, in one
//! transaction; a larger one streams in chunk by chunk (memory stays bounded whatever the size) and
//! becomes visible (`stored`) in one transaction once complete. Either way it is stored with verdict
//! `pending`: scanning is a durable queue ([`scan_next`]) off the path to the sender's `250`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::db::{Mode, Reach, as_tenant, bitmap_scans, run, run_in};
use super::entity::{message, message_chunk, message_key};
use super::{Page, PageRequest, StoreError, TenantScope};
use crate::scan::yara::Envelope;
use crate::scan::{EngineStatus, ScanReport, Verdict};
use crate::wire::HandoffEnvelope;

pub const INCOMPLETE: &str = "incomplete";
pub const STORED: &str = "stored";
/// The verdict of a stored message not scanned yet.
pub const PENDING: &str = "pending";
/// The verdict of a message an engine could not look at within [`SCAN_ATTEMPTS`], on which the
/// others found nothing: not known to be clean (its `engines` say which failed).
pub const INCOMPLETE_VERDICT: &str = "incomplete";
/// Tries of a scan whose engine could not finish (after 2, 4, 8 … s, at most an hour apart: about
/// 70 minutes in all) before what the other engines found is recorded as incomplete.
pub const SCAN_ATTEMPTS: i32 = 12;

/// Who sent a message, to whom, through which sensor, under which idempotency key.
pub struct Arrival<'a> {
    pub tenant: Uuid,
    pub sensor: Uuid,
    pub key: &'a str,
    pub envelope: &'a HandoffEnvelope,
}

fn new_row(arrival: &Arrival<'_>, id: Uuid, status: &str) -> message::ActiveModel {
    let envelope = arrival.envelope;
    message::ActiveModel {
        id: Set(id),
        tenant_id: Set(arrival.tenant),
        sensor_id: Set(arrival.sensor),
        idempotency_key: Set(arrival.key.to_owned()),
        status: Set(status.to_owned()),
        received_at: Set(super::now()),
        client_ip: Set(envelope.client_ip.clone()),
        helo: Set(envelope.helo.clone()),
        mail_from: Set(envelope.mail_from.clone()),
        rcpt_to: Set(json!(envelope.rcpt_to)),
        tls: Set(envelope.tls),
        worker: Set(envelope.worker.clone()),
        size: Set(0),
        sha256: Set(None),
        md5: Set(None),
        header_from: Set(None),
        header_to: Set(None),
        subject: Set(None),
        message_id: Set(None),
        date: Set(None),
        verdict: Set(None),
        detections: Set(json!([])),
        parts: Set(json!([])),
        content_key: Set(None),
        scan_attempts: Set(0),
        scan_after: Set(None),
        scanned_at: Set(None),
        earlier_scans: Set(json!([])),
        engines: Set(json!([])),
    }
}

/// The row of `message_keys` that makes this message unique: its idempotency key and, when
/// deduplicated, its content key.
fn key_row(
    arrival: &Arrival<'_>,
    id: Uuid,
    received_at: DateTime<Utc>,
    content: Option<&Content>,
) -> message_key::ActiveModel {
    message_key::ActiveModel {
        tenant_id: Set(arrival.tenant),
        sensor_id: Set(arrival.sensor),
        idempotency_key: Set(arrival.key.to_owned()),
        content_key: Set(content.and_then(|c| c.dedup.as_ref()).map(|(key, _)| key.clone())),
        message_id: Set(id),
        received_at: Set(received_at),
    }
}

/// Writes a new message's row and its keys (the keys first: a key taken meanwhile fails the
/// insert before the row is written).
async fn insert_with_keys(
    txn: &DatabaseTransaction,
    arrival: &Arrival<'_>,
    row: message::ActiveModel,
    content: Option<&Content>,
) -> Result<message::Model, StoreError> {
    let (id, received_at) = (row.id.clone().unwrap(), row.received_at.clone().unwrap());
    message_key::Entity::insert(key_row(arrival, id, received_at, content))
        .exec_without_returning(txn)
        .await
        .map_err(key_in_use)?;
    Ok(sea_orm::ActiveModelTrait::insert(row, txn).await?)
}

fn key_in_use(e: sea_orm::DbErr) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict("this idempotency key is being uploaded right now".into()),
        other => other,
    }
}

/// Makes the transaction's commit wait, like a write's, until the synchronous standby has
/// everything before it (PostgreSQL: taking a transaction id makes the commit write a record, and
/// a commit returns only once the standby has it and all before it). For an answer that stores
/// nothing new — "already stored, here is its id" — about a copy another transaction committed: on
/// the primary a commit is visible before its standby confirms it, so without this the sender
/// could hear `250` for a copy a failover then loses.
async fn on_the_standby_too(txn: &DatabaseTransaction) -> Result<(), StoreError> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared("SELECT pg_current_xact_id()").await?;
    }
    Ok(())
}

/// Where the upload of a message larger than one chunk starts.
pub enum Begun {
    /// An `incomplete` row its chunks hang off.
    New(Uuid),
    /// This idempotency key was already stored: that message is the answer.
    AlreadyStored(Box<message::Model>),
}

/// Starts a message larger than one chunk, unless its idempotency key was already stored.
pub async fn begin(db: &DatabaseConnection, arrival: &Arrival<'_>) -> Result<Begun, StoreError> {
    let id = Uuid::now_v7();
    as_tenant(db, arrival.tenant, async |txn| {
        super::scope::sensor(txn, TenantScope::whole_tenant(arrival.tenant), arrival.sensor).await?;
        if let Some(stored) = earlier_copy(txn, arrival, None, None).await? {
            on_the_standby_too(txn).await?;
            return Ok(Begun::AlreadyStored(Box::new(stored)));
        }
        insert_with_keys(txn, arrival, new_row(arrival, id, INCOMPLETE), None).await?;
        Ok(Begun::New(id))
    })
    .await
}

pub async fn append_chunk(
    db: &DatabaseConnection,
    tenant: Uuid,
    id: Uuid,
    seq: i32,
    data: Vec<u8>,
) -> Result<(), StoreError> {
    let chunk = message_chunk::ActiveModel { message_id: Set(id), seq: Set(seq), data: Set(data) };
    as_tenant(db, tenant, async |txn| {
        message_chunk::Entity::insert(chunk.clone()).exec_without_returning(txn).await?;
        Ok(())
    })
    .await
}

pub async fn chunk(db: &DatabaseConnection, tenant: Uuid, id: Uuid, seq: i32) -> Result<Option<Vec<u8>>, StoreError> {
    as_tenant(db, tenant, async |txn| Ok(message_chunk::Entity::find_by_id((id, seq)).one(txn).await?.map(|c| c.data)))
        .await
}

pub async fn abandon(db: &DatabaseConnection, tenant: Uuid, id: Uuid) -> Result<(), StoreError> {
    as_tenant(db, tenant, async |txn| delete_with_keys(txn, id).await).await
}

/// Deletes a message (its chunks go with it) and the keys that pointed at it.
async fn delete_with_keys(txn: &DatabaseTransaction, id: Uuid) -> Result<(), StoreError> {
    message_key::Entity::delete_many().filter(message_key::Column::MessageId.eq(id)).exec(txn).await?;
    message::Entity::delete_by_id(id).exec(txn).await?;
    Ok(())
}

/// Digest of the raw content, computed while it streamed in.
pub struct Digest {
    pub size: u64,
    pub sha256: String,
    pub md5: String,
}

/// What makes a retry the same message: the envelope the sender chose (sender, recipients as a
/// set) and the exact bytes. Where it came in (client address, HELO, worker, TLS) is left out, so
/// a retry through another worker, or from another host of the same MTA, is still recognised.
pub fn content_key(sha256_hex: &str, envelope: &HandoffEnvelope) -> String {
    use sha2::{Digest as _, Sha256};
    let mut recipients: Vec<&str> = envelope.rcpt_to.iter().map(String::as_str).collect();
    recipients.sort_unstable();
    recipients.dedup();
    let mut key = Sha256::new();
    // Lengths first, so no choice of field values can run two fields together.
    for field in [sha256_hex, envelope.mail_from.as_str()].into_iter().chain(recipients) {
        key.update((field.len() as u64).to_be_bytes());
        key.update(field.as_bytes());
    }
    hex::encode(key.finalize())
}

/// How a finished upload ended.
pub enum Finished {
    /// Stored and visible now, verdict `pending`.
    Stored(message::Model),
    /// The same message was already stored within the dedup window (a retry whose first attempt's
    /// answer was lost): that one is the answer, and this upload is dropped.
    Duplicate(message::Model),
}

/// What the stored copy records of the content, and how to recognise a retry of it.
pub struct Content {
    pub digest: Digest,
    /// The [`content_key`] and the start of the dedup window; `None`: no deduplication.
    pub dedup: Option<(String, DateTime<Utc>)>,
}

/// The copy of this message already stored, if any: under the same idempotency key, or — within
/// the dedup window — with the same content key, both looked up in `message_keys` (which spans
/// every partition of `messages`). `own` is the upload asking (its own key row is not an earlier
/// copy). Two copies finishing at once here queue on a lock of the content key first, so the
/// second sees the first; one stored meanwhile by [`insert_at_once`] (which takes no lock) makes
/// this one's insert fail instead, and [`store_whole`] looks again.
///
/// What a key row points at decides: a stored message is the answer; an upload under the same
/// idempotency key that broke off (still `incomplete`), or a message expired or erased since, gives
/// its key up, so this one can take it; so does a copy stored before the window its content key.
async fn earlier_copy(
    txn: &DatabaseTransaction,
    arrival: &Arrival<'_>,
    dedup: Option<&(String, DateTime<Utc>)>,
    own: Option<Uuid>,
) -> Result<Option<message::Model>, StoreError> {
    let by_key = message_key::Entity::find_by_id((arrival.sensor, arrival.key.to_owned())).one(txn).await?;
    if let Some(key) = by_key.filter(|k| Some(k.message_id) != own && k.tenant_id == arrival.tenant) {
        match message::Entity::find_by_id(key.message_id).one(txn).await? {
            Some(stored) if stored.status == STORED => return Ok(Some(stored)),
            Some(broken) => delete_with_keys(txn, broken.id).await?,
            None => {
                message_key::Entity::delete_by_id((key.sensor_id, key.idempotency_key)).exec(txn).await?;
            }
        }
    }
    let Some((content_key, since)) = dedup else { return Ok(None) };
    if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [content_key.clone().into()],
        ))
        .await?;
    }
    let by_content = message_key::Entity::find()
        .filter(message_key::Column::TenantId.eq(arrival.tenant))
        .filter(message_key::Column::SensorId.eq(arrival.sensor))
        .filter(message_key::Column::ContentKey.eq(content_key.as_str()))
        .one(txn)
        .await?;
    let Some(key) = by_content.filter(|k| Some(k.message_id) != own) else { return Ok(None) };
    if key.received_at >= *since
        && let Some(earlier) = message::Entity::find_by_id(key.message_id).one(txn).await?
        && earlier.status == STORED
    {
        return Ok(Some(earlier));
    }
    message_key::Entity::update_many()
        .col_expr(message_key::Column::ContentKey, sea_orm::sea_query::Expr::value(Option::<String>::None))
        .filter(message_key::Column::SensorId.eq(key.sensor_id))
        .filter(message_key::Column::IdempotencyKey.eq(key.idempotency_key))
        .exec(txn)
        .await?;
    Ok(None)
}

fn mark_stored(active: &mut message::ActiveModel, content: &Content) {
    active.status = Set(STORED.to_owned());
    active.verdict = Set(Some(PENDING.to_owned()));
    active.size = Set(i64::try_from(content.digest.size).unwrap_or(i64::MAX));
    active.sha256 = Set(Some(content.digest.sha256.clone()));
    active.md5 = Set(Some(content.digest.md5.clone()));
    active.content_key = Set(content.dedup.as_ref().map(|(key, _)| key.clone()));
}

/// A message that arrived whole within one chunk: its row and its content in one transaction (one
/// commit, one WAL flush), unless the same message was stored within the dedup window.
///
/// On PostgreSQL the usual case takes two statements ([`insert_at_once`]); the rest (a key stored
/// before, a copy within or past the window, a missing sensor) is settled step by step.
pub async fn store_whole(
    db: &DatabaseConnection,
    arrival: &Arrival<'_>,
    data: Vec<u8>,
    content: Content,
) -> Result<Finished, StoreError> {
    let data = if db.get_database_backend() == DatabaseBackend::Postgres {
        match insert_at_once(db, arrival, data, &content).await? {
            AtOnce::Stored(stored) => return Ok(Finished::Stored(*stored)),
            AtOnce::Unsettled(data) => data,
        }
    } else {
        data
    };
    match store_step_by_step(db, arrival, &data, &content).await {
        // A copy that [`insert_at_once`] stored (without the key's lock) while this one looked:
        // looking again finds it.
        Err(StoreError::Conflict(_)) => store_step_by_step(db, arrival, &data, &content).await,
        settled => settled,
    }
}

async fn store_step_by_step(
    db: &DatabaseConnection,
    arrival: &Arrival<'_>,
    data: &[u8],
    content: &Content,
) -> Result<Finished, StoreError> {
    as_tenant(db, arrival.tenant, async |txn| {
        super::scope::sensor(txn, TenantScope::whole_tenant(arrival.tenant), arrival.sensor).await?;
        if let Some(earlier) = earlier_copy(txn, arrival, content.dedup.as_ref(), None).await? {
            on_the_standby_too(txn).await?;
            return Ok(Finished::Duplicate(earlier));
        }
        let id = Uuid::now_v7();
        let mut row = new_row(arrival, id, STORED);
        mark_stored(&mut row, content);
        let stored = insert_with_keys(txn, arrival, row, Some(content)).await?;
        let chunk = message_chunk::ActiveModel { message_id: Set(id), seq: Set(0), data: Set(data.to_vec()) };
        message_chunk::Entity::insert(chunk).exec_without_returning(txn).await?;
        Ok(Finished::Stored(stored))
    })
    .await
}

enum AtOnce {
    Stored(Box<message::Model>),
    /// Left to the step-by-step path, which gets the content back.
    Unsettled(Vec<u8>),
}

/// The whole of [`store_whole`] in two statements, for the usual case: the sensor exists and
/// neither the idempotency key nor (within the window) the content key was stored before. The
/// first writes the keys and, only if they went in, the row (one statement: a CTE); the second the
/// content. A key taken — including by a concurrent copy, once it commits — leaves nothing written
/// and the message to the step-by-step path, which finds the earlier copy; so does a missing sensor.
async fn insert_at_once(
    db: &DatabaseConnection,
    arrival: &Arrival<'_>,
    data: Vec<u8>,
    content: &Content,
) -> Result<AtOnce, StoreError> {
    use sea_orm::sea_query::Value;
    use sea_orm::{ActiveModelTrait, IdenStatic, Iterable};
    let id = Uuid::now_v7();
    let mut row = new_row(arrival, id, STORED);
    mark_stored(&mut row, content);
    let received_at = row.received_at.clone().unwrap();
    let keys = key_row(arrival, id, received_at, Some(content));
    let mut values: Vec<Value> = Vec::new();
    let mut param = |value: Value| {
        values.push(value);
        format!("${}", values.len())
    };
    let key_values: Vec<String> =
        message_key::Column::iter().filter_map(|column| keys.get(column).into_value()).map(&mut param).collect();
    let (tenant, sensor) = (param(arrival.tenant.into()), param(arrival.sensor.into()));
    let (columns, row_values): (Vec<String>, Vec<String>) = message::Column::iter()
        .filter_map(|column| {
            row.get(column).into_value().map(|value| (format!("\"{}\"", column.as_str()), param(value)))
        })
        .unzip();
    let key_columns: Vec<String> = message_key::Column::iter().map(|c| c.as_str().to_owned()).collect();
    let sql = format!(
        "WITH keys AS (INSERT INTO message_keys ({}) SELECT {} WHERE EXISTS \
         (SELECT 1 FROM sensors WHERE tenant_id = {tenant} AND id = {sensor}) ON CONFLICT DO NOTHING RETURNING 1) \
         INSERT INTO messages ({}) SELECT {} FROM keys RETURNING *",
        key_columns.join(", "),
        key_values.join(", "),
        columns.join(", "),
        row_values.join(", "),
    );
    let txn = super::db::begin(db, Reach::Tenant(arrival.tenant), Mode::Durable).await?;
    let statement = sea_orm::Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values);
    let Some(row) = txn.query_one_raw(statement).await? else {
        return Ok(AtOnce::Unsettled(data));
    };
    let row = message::Model::from_query_result(&row, "")?;
    message_chunk::Entity::insert(message_chunk::ActiveModel { message_id: Set(id), seq: Set(0), data: Set(data) })
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(AtOnce::Stored(Box::new(row)))
}

/// Makes a message that streamed in chunk by chunk visible, in one transaction, unless the same
/// message was stored within the dedup window.
pub async fn finish(
    db: &DatabaseConnection,
    arrival: &Arrival<'_>,
    id: Uuid,
    content: Content,
) -> Result<Finished, StoreError> {
    as_tenant(db, arrival.tenant, async |txn| {
        let row = message::Entity::find_by_id(id).one(txn).await?.ok_or(StoreError::NotFound("message"))?;
        if let Some(earlier) = earlier_copy(txn, arrival, content.dedup.as_ref(), Some(id)).await? {
            delete_with_keys(txn, id).await?;
            return Ok(Finished::Duplicate(earlier));
        }
        if let Some((content_key, _)) = &content.dedup {
            message_key::Entity::update_many()
                .col_expr(message_key::Column::ContentKey, sea_orm::sea_query::Expr::value(content_key.clone()))
                .filter(message_key::Column::MessageId.eq(id))
                .exec(txn)
                .await?;
        }
        let mut active: message::ActiveModel = row.into();
        mark_stored(&mut active, &content);
        Ok(Finished::Stored(sea_orm::ActiveModelTrait::update(active, txn).await?))
    })
    .await
}

/// How the scan of one claimed message ended.
#[derive(Debug)]
pub enum Scanned {
    /// Scanned; its verdict recorded.
    Done { verdict: &'static str },
    /// The scan failed; it is retried after a backoff.
    Failed { id: Uuid, attempts: i32, error: String },
}

/// At most this many messages per claim: each claim costs a transaction, a lookup and a read of
/// the content, shared by the batch.
const SCAN_BATCH: u64 = 32;
/// A claim keeps messages only while their content adds up to this much (and always keeps one),
/// so a worker holds a bounded amount in memory. The rest stay locked (skipped by other workers)
/// until this claim commits and are claimed again then; only large messages make that happen.
const SCAN_BATCH_BYTES: i64 = 4 * 1024 * 1024;

/// One claim of the scan queue.
pub struct ScanTurn {
    pub outcomes: Vec<Scanned>,
    /// The claim was full (or cut short by size): more are likely waiting, claim again at once.
    pub more_waiting: bool,
}

/// A claimed message, as the scan gets it: its content, its envelope as the YARA rules see it, and
/// the SMTP transaction that brought it (for rspamd).
pub struct ToScan {
    pub raw: Vec<u8>,
    pub envelope: Envelope,
    pub delivery: Delivery,
    /// The tenant's detection rulesets in force for its sensor, sorted.
    pub rulesets: Vec<super::rulesets::InForce>,
}

/// The SMTP transaction that brought a message, as the sensor handed it off.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub client_ip: String,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

/// Claims pending messages no other worker holds (`FOR UPDATE SKIP LOCKED`; a crash releases them
/// for another), scans their contents with `scan` and records the results, all in one transaction:
/// the scan queue's cross-tenant path (`mailsensor_platform`). No outcomes: nothing is waiting (or
/// every waiting message is claimed by another worker).
///
/// `known` says which ruleset revisions the caller holds compiled already; the content of the
/// others in force for the claimed messages is handed to `scan` with them.
pub async fn scan_next(
    db: &DatabaseConnection,
    known: impl Fn(Uuid, i64) -> bool,
    scan: impl AsyncFnOnce(Vec<ToScan>, Vec<super::rulesets::Loaded>) -> Vec<Result<ScanReport, String>>,
) -> Result<ScanTurn, StoreError> {
    use sea_orm::sea_query::{LockBehavior, LockType};
    // A verdict can always be computed again: a crash that loses it leaves the message pending,
    // to be scanned again. So its commit need not wait for the WAL flush, which leaves the disk to
    // the hand-offs that do.
    run_in(db, Reach::Platform, Mode::Redoable, async |txn| {
        let now = super::now();
        // A plain scan of the queue's index (`ix_messages_scan_queue`: the waiting messages by
        // id), never a bitmap scan. Every verdict leaves a dead entry in that index until a
        // vacuum; a plain index scan marks each one it meets as dead, so the next claims skip it,
        // while a bitmap scan visits every such entry's table page on every claim: 17.6 ms a
        // claim, 36 % of a core at 1,000 rescans/s (pg_stat_statements, `SOURCE=requeue
        // bench/alerts.sh`). On again right after: the batch's chunks read without bitmap scans
        // took eight times as long.
        bitmap_scans(txn, false).await?;
        let mut claimed = message::Entity::find()
            .filter(super::db::equals_literal((message::Entity, message::Column::Verdict), PENDING))
            .filter(message::Column::Status.eq(STORED))
            .filter(Condition::any().add(message::Column::ScanAfter.is_null()).add(message::Column::ScanAfter.lte(now)))
            // Oldest first, in the order of the queue's index: read in that order, nothing sorted.
            .order_by_asc(message::Column::Id)
            .limit(SCAN_BATCH)
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .all(txn)
            .await?;
        bitmap_scans(txn, true).await?;
        let mut bytes = 0;
        let keep = claimed
            .iter()
            .take_while(|m| {
                bytes += m.size;
                bytes <= SCAN_BATCH_BYTES
            })
            .count();
        let more_waiting = claimed.len() as u64 == SCAN_BATCH || keep < claimed.len();
        claimed.truncate(keep.max(1));
        if claimed.is_empty() {
            return Ok(ScanTurn { outcomes: Vec::new(), more_waiting });
        }
        let chunks = message_chunk::Entity::find()
            .filter(message_chunk::Column::MessageId.is_in(claimed.iter().map(|m| m.id)))
            .order_by_asc(message_chunk::Column::MessageId)
            .order_by_asc(message_chunk::Column::Seq)
            .all(txn)
            .await?;
        let mut raws: Vec<ToScan> = claimed
            .iter()
            .map(|m| {
                let rcpt_to: Vec<String> = serde_json::from_value(m.rcpt_to.clone()).unwrap_or_default();
                ToScan {
                    raw: Vec::new(),
                    envelope: Envelope::of(Some(&m.mail_from), &rcpt_to),
                    delivery: Delivery {
                        client_ip: m.client_ip.clone(),
                        helo: m.helo.clone(),
                        mail_from: m.mail_from.clone(),
                        rcpt_to,
                    },
                    rulesets: Vec::new(),
                }
            })
            .collect();
        let sensors: Vec<(Uuid, Uuid)> = claimed.iter().map(|m| (m.tenant_id, m.sensor_id)).collect();
        let (in_force, loaded) = super::rulesets::in_force(txn, &sensors, known).await?;
        for (message, to_scan) in claimed.iter().zip(raws.iter_mut()) {
            to_scan.rulesets = in_force.get(&message.sensor_id).cloned().unwrap_or_default();
        }
        for chunk in chunks {
            if let Some(at) = claimed.iter().position(|m| m.id == chunk.message_id) {
                raws[at].raw.extend_from_slice(&chunk.data);
            }
        }
        let reports = scan(raws, loaded).await;
        let mut outcomes = Vec::with_capacity(claimed.len());
        let mut done = Vec::with_capacity(claimed.len());
        for (row, report) in claimed.into_iter().zip(reports) {
            let (active, outcome) = scan_result(row, report, now);
            match outcome {
                Scanned::Done { .. } => done.push(active),
                // Rare: one statement each.
                Scanned::Failed { .. } => drop(sea_orm::ActiveModelTrait::update(active, txn).await?),
            }
            outcomes.push(outcome);
        }
        let scanned = write_verdicts(txn, done, now).await?;
        // In the verdicts' transaction: an alert for each verdict that commits, none for one that does not.
        super::alerts::raise_detected(txn, &scanned).await?;
        Ok(ScanTurn { outcomes, more_waiting })
    })
    .await
}

/// Writes the verdicts of a batch (rows from [`scan_result`] at `scanned_at`) and returns the rows as written, in
/// the batch's order. On PostgreSQL in one statement: one round trip per batch instead of one per
/// message, in a transaction whose row locks hold the batch's messages meanwhile.
async fn write_verdicts(
    txn: &DatabaseTransaction,
    done: Vec<message::ActiveModel>,
    scanned_at: DateTime<Utc>,
) -> Result<Vec<message::Model>, StoreError> {
    if txn.get_database_backend() != DatabaseBackend::Postgres || done.len() < 2 {
        let mut written = Vec::with_capacity(done.len());
        for active in done {
            written.push(sea_orm::ActiveModelTrait::update(active, txn).await?);
        }
        return Ok(written);
    }
    // Every row comes from a whole claimed row, so each of these values is there.
    let order: Vec<Uuid> = done.iter().map(|m| m.id.clone().unwrap()).collect();
    let records: Vec<serde_json::Value> = done
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id.unwrap(),
                "header_from": m.header_from.unwrap(),
                "header_to": m.header_to.unwrap(),
                "subject": m.subject.unwrap(),
                "message_id": m.message_id.unwrap(),
                "date": m.date.unwrap(),
                "verdict": m.verdict.unwrap(),
                "detections": m.detections.unwrap(),
                "parts": m.parts.unwrap(),
                "engines": m.engines.unwrap(),
            })
        })
        .collect();
    // `m.id = ANY($3)`: the batch's rows are reached by the primary key whatever the planner
    // guesses of the JSON's size (it assumes 100 records for a set-returning function).
    let sql = "UPDATE messages AS m SET header_from = x.header_from, header_to = x.header_to, subject = x.subject, \
               message_id = x.message_id, date = x.date, verdict = x.verdict, detections = x.detections, \
               parts = x.parts, engines = x.engines, scanned_at = $2, scan_attempts = 0, scan_after = NULL \
               FROM json_to_recordset($1::json) AS x(id uuid, header_from text, header_to text, subject text, \
               message_id text, date text, verdict text, detections json, parts json, engines json) \
               WHERE m.id = x.id AND m.id = ANY($3) RETURNING m.*";
    let statement = sea_orm::Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        [serde_json::Value::Array(records).into(), scanned_at.into(), order.clone().into()],
    );
    let mut written: std::collections::HashMap<Uuid, message::Model> =
        message::Model::find_by_statement(statement).all(txn).await?.into_iter().map(|m| (m.id, m)).collect();
    order.iter().map(|id| written.remove(id).ok_or(StoreError::Db(sea_orm::DbErr::RecordNotUpdated))).collect()
}

/// What a scan (or its failure at `now`) changes in a claimed message's row.
fn scan_result(
    row: message::Model,
    report: Result<ScanReport, String>,
    now: DateTime<Utc>,
) -> (message::ActiveModel, Scanned) {
    let id = row.id;
    let attempts = row.scan_attempts + 1;
    let mut active: message::ActiveModel = row.into();
    let failed: Vec<String> = match &report {
        Ok(report) => report
            .engines
            .iter()
            .filter(|e| e.status != EngineStatus::Ok)
            .map(|e| format!("{} {}: {}", e.engine, e.status.as_str(), e.error.as_deref().unwrap_or("failed")))
            .collect(),
        Err(_) => Vec::new(),
    };
    // An engine that could not look is retried; only past the budget is what the others found
    // recorded, as incomplete.
    let report = match report {
        Ok(_) if !failed.is_empty() && attempts < SCAN_ATTEMPTS => Err(failed.join("; ")),
        other => other,
    };
    let outcome = match report {
        Ok(report) => {
            // Never clean because an engine could not look.
            let verdict = match (failed.is_empty(), report.verdict) {
                (false, Verdict::Clean) => INCOMPLETE_VERDICT,
                (_, verdict) => verdict.as_str(),
            };
            active.header_from = Set(report.headers.from.clone());
            active.header_to = Set(report.headers.to.clone());
            active.subject = Set(report.headers.subject.clone());
            active.message_id = Set(report.headers.message_id.clone());
            active.date = Set(report.headers.date.clone());
            active.verdict = Set(Some(verdict.to_owned()));
            active.engines = Set(serde_json::to_value(&report.engines).unwrap_or_default());
            active.detections = Set(serde_json::to_value(&report.detections).unwrap_or_default());
            active.parts = Set(serde_json::to_value(&report.parts).unwrap_or_default());
            active.scanned_at = Set(Some(now));
            active.scan_attempts = Set(0);
            active.scan_after = Set(None);
            Scanned::Done { verdict }
        }
        Err(error) => {
            // 2, 4, 8 … seconds, at most an hour: a scan that fails for good does not spin.
            let backoff = 1i64 << attempts.clamp(1, 11);
            active.scan_attempts = Set(attempts);
            active.scan_after = Set(Some(now + chrono::Duration::seconds(backoff.min(3600))));
            Scanned::Failed { id, attempts, error }
        }
    };
    (active, outcome)
}

/// How many stored messages wait for their scan.
pub async fn scan_queue_depth(db: &DatabaseConnection) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait;
    let query =
        message::Entity::find().filter(super::db::equals_literal((message::Entity, message::Column::Verdict), PENDING));
    run(db, Reach::Platform, async |txn| Ok(query.count(txn).await?)).await
}

/// Drops uploads that broke off and were never retried: housekeeping across tenants, the
/// platform path.
pub async fn purge_incomplete(db: &DatabaseConnection, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
    let purge = message::Entity::delete_many()
        .filter(message::Column::Status.eq(INCOMPLETE))
        .filter(message::Column::ReceivedAt.lt(older_than));
    run(db, Reach::Platform, async |txn| Ok(purge.exec(txn).await?.rows_affected)).await
}

pub(super) fn scoped(scope: TenantScope) -> sea_orm::Select<message::Entity> {
    let mut query = message::Entity::find()
        .filter(message::Column::TenantId.eq(scope.tenant))
        .filter(message::Column::Status.eq(STORED));
    if let Some(node) = scope.node {
        let attached = super::scope::sensors_attached_to(scope.tenant, node);
        query = query.filter(Condition::all().add(message::Column::SensorId.in_subquery(attached)));
    }
    if let Some(own) = scope.sensor {
        query = query.filter(message::Column::SensorId.eq(own));
    }
    query
}

#[derive(Debug, Default, Clone)]
pub struct MessageFilter {
    pub sensor_id: Option<Uuid>,
    pub verdict: Option<String>,
    /// Only messages with a detection by this engine (`builtin`, `yara`).
    pub engine: Option<String>,
    /// Only messages with a detection of this rule: a YARA rule's name, or a built-in kind.
    pub rule: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Messages with one detection matching the filter's engine and rule, both optional. Detections
/// stored before engines were named are the built-in checks'. A scan of the tenant's messages in
/// the range asked for (no index looks inside the detections).
fn detection_filter(backend: DatabaseBackend, filter: &MessageFilter) -> Option<sea_orm::sea_query::SimpleExpr> {
    use sea_orm::sea_query::Expr;
    if filter.engine.is_none() && filter.rule.is_none() {
        return None;
    }
    let postgres = backend == DatabaseBackend::Postgres;
    let elements = match postgres {
        true => "json_array_elements(messages.detections) AS d(value)",
        false => "json_each(messages.detections) AS d",
    };
    let field = |name: &str| match postgres {
        true => format!("(d.value->>'{name}')"),
        false => format!("json_extract(d.value, '$.{name}')"),
    };
    // (condition, value) pairs; `{}` in a condition is its value's placeholder.
    let mut asked = Vec::new();
    if let Some(engine) = &filter.engine {
        asked.push((format!("COALESCE({}, 'builtin') = {{}}", field("engine")), engine));
    }
    if let Some(rule) = &filter.rule {
        asked.push((format!("{} = {{}}", field("rule")), rule));
        asked.push((format!("{} = {{}}", field("kind")), rule));
    }
    let mut values = Vec::new();
    let mut conditions = Vec::new();
    for (condition, value) in asked {
        values.push(value.clone());
        let placeholder = if postgres { format!("${}", values.len()) } else { "?".to_owned() };
        conditions.push(condition.replace("{}", &placeholder));
    }
    // The rule is either a YARA rule's name or a built-in kind.
    if filter.rule.is_some() {
        let kind = conditions.pop().unwrap_or_default();
        let rule = conditions.pop().unwrap_or_default();
        conditions.push(format!("({rule} OR {kind})"));
    }
    let sql = format!("EXISTS (SELECT 1 FROM {elements} WHERE {})", conditions.join(" AND "));
    Some(Expr::cust_with_values(sql, values))
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    filter: &MessageFilter,
    page: PageRequest,
) -> Result<Page<message::Model>, StoreError> {
    use message::Column as C;
    let mut query = scoped(scope);
    if let Some(sensor) = filter.sensor_id {
        query = query.filter(C::SensorId.eq(sensor));
    }
    if let Some(verdict) = &filter.verdict {
        query = query.filter(C::Verdict.eq(verdict.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(C::ReceivedAt.gte(since));
    }
    if let Some(found) = detection_filter(db.get_database_backend(), filter) {
        query = query.filter(found);
    }
    if let Some(until) = filter.until {
        query = query.filter(C::ReceivedAt.lt(until));
    }
    if let Some(after) = page.after {
        query = query.filter(C::Id.gt(after));
    }
    let query = query.order_by_asc(C::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |m| m.id))
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<message::Model, StoreError> {
    let query = scoped(scope).filter(message::Column::Id.eq(id));
    as_tenant(db, scope.tenant, async |txn| query.clone().one(txn).await?.ok_or(StoreError::NotFound("message"))).await
}

/// An earlier scan's result, kept when the message is scanned again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlierScan {
    pub scanned_at: Option<DateTime<Utc>>,
    pub verdict: String,
    pub detections: serde_json::Value,
    #[serde(default)]
    pub engines: serde_json::Value,
}

/// How many earlier results a message keeps; older ones are dropped first.
pub const EARLIER_SCANS_KEPT: usize = 20;

/// Puts a scanned message in scope back in the scan queue, to be scanned with the rules of the
/// moment; its current result moves to `earlier_scans`. A message still pending stays as it is
/// (it is about to be scanned anyway). Audited in the same transaction.
pub async fn rescan(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    actor: &super::Actor,
) -> Result<message::Model, StoreError> {
    let query = scoped(scope).filter(message::Column::Id.eq(id));
    let txn = super::db::begin(db, Reach::Tenant(scope.tenant), Mode::Durable).await?;
    let row = query.lock_exclusive().one(&txn).await?.ok_or(StoreError::NotFound("message"))?;
    let Some(verdict) = row.verdict.clone().filter(|v| v != PENDING && row.status == STORED) else {
        txn.commit().await?;
        return Ok(row);
    };
    let mut earlier: Vec<EarlierScan> = serde_json::from_value(row.earlier_scans.clone()).unwrap_or_default();
    earlier.push(EarlierScan {
        scanned_at: row.scanned_at,
        verdict: verdict.clone(),
        detections: row.detections.clone(),
        engines: row.engines.clone(),
    });
    let drop = earlier.len().saturating_sub(EARLIER_SCANS_KEPT);
    earlier.drain(..drop);
    let (tenant, sensor) = (row.tenant_id, row.sensor_id);
    let mut active: message::ActiveModel = row.into();
    active.verdict = Set(Some(PENDING.to_owned()));
    active.detections = Set(json!([]));
    active.engines = Set(json!([]));
    active.scanned_at = Set(None);
    active.scan_attempts = Set(0);
    active.scan_after = Set(None);
    active.earlier_scans = Set(serde_json::to_value(&earlier).unwrap_or_default());
    let updated = sea_orm::ActiveModelTrait::update(active, &txn).await?;
    super::audit::record(
        &txn,
        actor,
        super::audit::AuditEntry {
            tenant,
            action: "message.rescan",
            target_type: "message",
            target_id: id,
            sensor_id: Some(sensor),
            before: Some(json!({"verdict": verdict})),
            after: Some(json!({"verdict": PENDING})),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{EngineRun, EngineStatus};

    fn pending_row(scan_attempts: i32) -> message::Model {
        message::Model {
            id: Uuid::now_v7(),
            tenant_id: Uuid::now_v7(),
            sensor_id: Uuid::now_v7(),
            idempotency_key: "k".into(),
            status: STORED.into(),
            received_at: Utc::now(),
            client_ip: "192.0.2.1".into(),
            helo: "mx".into(),
            mail_from: "a@example.org".into(),
            rcpt_to: json!(["b@example.com"]),
            tls: false,
            worker: "w1".into(),
            size: 10,
            sha256: None,
            md5: None,
            header_from: None,
            header_to: None,
            subject: None,
            message_id: None,
            date: None,
            verdict: Some(PENDING.into()),
            detections: json!([]),
            parts: json!([]),
            content_key: None,
            scan_attempts,
            scan_after: None,
            scanned_at: None,
            earlier_scans: json!([]),
            engines: json!([]),
        }
    }

    /// A clean report whose YARA engine timed out.
    fn yara_timed_out() -> ScanReport {
        let mut report = crate::scan::scan(b"Subject: x\r\n\r\nhello\r\n");
        let mut run = EngineRun::new("yara", EngineStatus::Timeout, "yara-x".into(), None, 10_000);
        run.error = Some("gave up".into());
        report.engines.push(run);
        report
    }

    #[test]
    fn an_engine_that_could_not_look_is_retried_then_recorded_incomplete_never_clean() {
        let now = Utc::now();
        for attempts_before in 0..SCAN_ATTEMPTS - 1 {
            let (active, outcome) = scan_result(pending_row(attempts_before), Ok(yara_timed_out()), now);
            assert!(
                matches!(outcome, Scanned::Failed { ref error, .. } if error.contains("yara timeout")),
                "{outcome:?}"
            );
            assert_eq!(active.scan_attempts, Set(attempts_before + 1));
            assert!(matches!(active.scan_after, Set(Some(after)) if after > now));
        }
        let (active, outcome) = scan_result(pending_row(SCAN_ATTEMPTS - 1), Ok(yara_timed_out()), now);
        assert!(matches!(outcome, Scanned::Done { verdict: INCOMPLETE_VERDICT }), "{outcome:?}");
        assert_eq!(active.verdict, Set(Some(INCOMPLETE_VERDICT.to_owned())));
        let engines = match active.engines {
            Set(engines) => engines,
            other => panic!("{other:?}"),
        };
        assert_eq!(engines[1]["status"], "timeout");

        // Something found is recorded as found, incomplete or not: at least that bad.
        let mut malicious = yara_timed_out();
        malicious.verdict = crate::scan::Verdict::Malicious;
        let (active, _) = scan_result(pending_row(SCAN_ATTEMPTS - 1), Ok(malicious), now);
        assert_eq!(active.verdict, Set(Some("malicious".to_owned())));

        // Every engine fine: recorded at the first try.
        let (active, outcome) = scan_result(pending_row(0), Ok(crate::scan::scan(b"Subject: x\r\n\r\nhi\r\n")), now);
        assert!(matches!(outcome, Scanned::Done { verdict: "clean" }), "{outcome:?}");
        assert!(matches!(active.scanned_at, Set(Some(_))));
    }
}
