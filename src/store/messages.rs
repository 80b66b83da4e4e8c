//! Received messages. Raw content is stored in chunks as it streams in, so memory stays bounded
//! whatever the size; a message becomes visible (`stored`) in one transaction, together with its
//! scan results, only once it is complete.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::db::{Reach, as_tenant, run};
use super::entity::{message, message_chunk};
use super::{Page, PageRequest, StoreError, TenantScope};
use crate::scan::ScanReport;
use crate::wire::HandoffEnvelope;

pub const INCOMPLETE: &str = "incomplete";
pub const STORED: &str = "stored";

/// Where an upload starts: a new message, or one this idempotency key already stored.
pub enum Begun {
    New(Uuid),
    AlreadyStored(Box<message::Model>),
}

pub async fn begin(
    db: &DatabaseConnection,
    tenant: Uuid,
    sensor: Uuid,
    key: &str,
    envelope: &HandoffEnvelope,
) -> Result<Begun, StoreError> {
    as_tenant(db, tenant, async |txn| begin_in(txn, tenant, sensor, key, envelope).await).await
}

async fn begin_in(
    db: &impl ConnectionTrait,
    tenant: Uuid,
    sensor: Uuid,
    key: &str,
    envelope: &HandoffEnvelope,
) -> Result<Begun, StoreError> {
    let existing = message::Entity::find()
        .filter(message::Column::TenantId.eq(tenant))
        .filter(message::Column::SensorId.eq(sensor))
        .filter(message::Column::IdempotencyKey.eq(key))
        .one(db)
        .await?;
    match existing {
        Some(m) if m.status == STORED => return Ok(Begun::AlreadyStored(Box::new(m))),
        // An earlier attempt with this key broke off: start over.
        Some(m) => {
            message::Entity::delete_by_id(m.id).exec(db).await?;
        }
        None => {}
    }
    let id = Uuid::now_v7();
    message::Entity::insert(message::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant),
        sensor_id: Set(sensor),
        idempotency_key: Set(key.to_owned()),
        status: Set(INCOMPLETE.to_owned()),
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
    })
    .exec_without_returning(db)
    .await
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => StoreError::Conflict("this idempotency key is being uploaded right now".into()),
        other => other,
    })?;
    Ok(Begun::New(id))
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
        message_chunk::Entity::insert(chunk).exec_without_returning(txn).await?;
        Ok(())
    })
    .await
}

async fn chunk_in(conn: &impl ConnectionTrait, id: Uuid, seq: i32) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(message_chunk::Entity::find_by_id((id, seq)).one(conn).await?.map(|c| c.data))
}

pub async fn chunk(db: &DatabaseConnection, tenant: Uuid, id: Uuid, seq: i32) -> Result<Option<Vec<u8>>, StoreError> {
    as_tenant(db, tenant, async |txn| chunk_in(txn, id, seq).await).await
}

/// The whole raw message (for scanning), read chunk by chunk.
pub async fn read_raw(db: &DatabaseConnection, tenant: Uuid, id: Uuid) -> Result<Vec<u8>, StoreError> {
    as_tenant(db, tenant, async |txn| {
        let mut raw = Vec::new();
        let mut seq = 0;
        while let Some(data) = chunk_in(txn, id, seq).await? {
            raw.extend_from_slice(&data);
            seq += 1;
        }
        Ok(raw)
    })
    .await
}

pub async fn abandon(db: &DatabaseConnection, tenant: Uuid, id: Uuid) -> Result<(), StoreError> {
    as_tenant(db, tenant, async |txn| {
        message::Entity::delete_by_id(id).exec(txn).await?;
        Ok(())
    })
    .await
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
    /// Stored and visible now.
    Stored(message::Model),
    /// The same message was already stored within the dedup window (a retry whose first attempt's
    /// answer was lost): that one is the answer, and this upload is dropped.
    Duplicate(message::Model),
}

/// Makes the message visible, with its scan results, in one transaction, unless the same
/// message (`content_key`) was stored since `dedup_since`.
pub async fn finish(
    db: &DatabaseConnection,
    tenant: Uuid,
    id: Uuid,
    digest: Digest,
    report: &ScanReport,
    dedup: Option<(String, DateTime<Utc>)>,
) -> Result<Finished, StoreError> {
    as_tenant(db, tenant, async |txn| {
        let row = message::Entity::find_by_id(id).one(txn).await?.ok_or(StoreError::NotFound("message"))?;
        if let Some((key, since)) = &dedup {
            if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
                // Two copies finishing at once queue here, so the second sees the first.
                txn.execute_raw(sea_orm::Statement::from_sql_and_values(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    [key.clone().into()],
                ))
                .await?;
            }
            let earlier = message::Entity::find()
                .filter(message::Column::TenantId.eq(tenant))
                .filter(message::Column::SensorId.eq(row.sensor_id))
                .filter(message::Column::ContentKey.eq(key.as_str()))
                .filter(message::Column::ReceivedAt.gte(*since))
                .filter(message::Column::Status.eq(STORED))
                .one(txn)
                .await?;
            if let Some(earlier) = earlier {
                message::Entity::delete_by_id(id).exec(txn).await?;
                return Ok(Finished::Duplicate(earlier));
            }
        }
        let mut active: message::ActiveModel = row.into();
        active.status = Set(STORED.to_owned());
        active.size = Set(i64::try_from(digest.size).unwrap_or(i64::MAX));
        active.sha256 = Set(Some(digest.sha256));
        active.md5 = Set(Some(digest.md5));
        active.content_key = Set(dedup.map(|(key, _)| key));
        active.header_from = Set(report.headers.from.clone());
        active.header_to = Set(report.headers.to.clone());
        active.subject = Set(report.headers.subject.clone());
        active.message_id = Set(report.headers.message_id.clone());
        active.date = Set(report.headers.date.clone());
        active.verdict = Set(Some(report.verdict.as_str().to_owned()));
        active.detections = Set(serde_json::to_value(&report.detections).unwrap_or_default());
        active.parts = Set(serde_json::to_value(&report.parts).unwrap_or_default());
        Ok(Finished::Stored(sea_orm::ActiveModelTrait::update(active, txn).await?))
    })
    .await
}

/// Drops uploads that broke off and were never retried: housekeeping across tenants, the
/// platform path.
pub async fn purge_incomplete(db: &DatabaseConnection, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
    let purge = message::Entity::delete_many()
        .filter(message::Column::Status.eq(INCOMPLETE))
        .filter(message::Column::ReceivedAt.lt(older_than));
    run(db, Reach::Platform, async |txn| Ok(purge.exec(txn).await?.rows_affected)).await
}

fn scoped(scope: TenantScope) -> sea_orm::Select<message::Entity> {
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
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
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
    if let Some(until) = filter.until {
        query = query.filter(C::ReceivedAt.lt(until));
    }
    if let Some(after) = page.after {
        query = query.filter(C::Id.gt(after));
    }
    let query = query.order_by_asc(C::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |m| m.id))
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<message::Model, StoreError> {
    let query = scoped(scope).filter(message::Column::Id.eq(id));
    as_tenant(db, scope.tenant, async |txn| query.one(txn).await?.ok_or(StoreError::NotFound("message"))).await
}
