//! The revision log: every change a sensor worker must hear about, numbered by one head row.
use chrono::{DateTime, Utc};
use std::sync::LazyLock;
use std::time::Duration;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde_json::Value;
use uuid::Uuid;

use super::StoreError;
use super::db::{Reach, as_tenant, run};
use super::entity::revision_log;

/// PostgreSQL channel whose notifications (payload: the revision) wake every replica's tailer.
const NOTIFY_CHANNEL: &str = "mailsensor_revisions";

/// Counts this process's commits that appended to the log, so its tailer reads the log at once
/// (on SQLite the only wake-up; PostgreSQL also notifies other replicas).
static COMMITS: LazyLock<tokio::sync::watch::Sender<u64>> = LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Changes whenever a transaction that appended to the log has committed in this process.
pub fn commits() -> tokio::sync::watch::Receiver<u64> {
    COMMITS.subscribe()
}

/// Wakes this process's tailers once a transaction that appended to the log has committed.
pub(super) fn committed() {
    COMMITS.send_modify(|n| *n = n.wrapping_add(1));
}

/// Calls `wake` for every revision another replica (or this one) commits, on a dedicated
/// PostgreSQL connection that LISTENs; reconnects on failure and wakes once after each (re)connect,
/// since anything committed while not listening went unheard. Returns at once on SQLite, where
/// one process owns the database and [`commits`] says everything.
pub async fn listen(db: DatabaseConnection, wake: impl Fn()) {
    use sea_orm::sqlx::postgres::PgListener;
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return;
    }
    loop {
        let pool = db.get_postgres_connection_pool().clone();
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(NOTIFY_CHANNEL).await {
                Err(e) => tracing::warn!(error = %e, "LISTEN failed"),
                Ok(()) => {
                    wake();
                    loop {
                        match listener.recv().await {
                            Ok(_) => wake(),
                            Err(e) => {
                                tracing::warn!(error = %e, "notification connection lost; reconnecting");
                                break;
                            }
                        }
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot open the notification connection; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Upsert,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Upsert => "upsert",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One committed revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    pub rev: i64,
    pub tenant_id: Uuid,
    pub sensor_id: Uuid,
    pub kind: ChangeKind,
    /// For an upsert: the sensor's settings as workers receive them (`wire::SensorConfig`).
    pub payload: Value,
}

impl From<revision_log::Model> for Revision {
    fn from(m: revision_log::Model) -> Self {
        Revision {
            rev: m.rev,
            tenant_id: m.tenant_id,
            sensor_id: m.sensor_id,
            kind: if m.kind == "delete" { ChangeKind::Delete } else { ChangeKind::Upsert },
            payload: m.payload,
        }
    }
}

/// The head row: latest revision, the database's epoch, and the oldest revision still retained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub rev: i64,
    pub epoch: String,
    pub oldest_retained: i64,
}

fn statement(conn: &impl ConnectionTrait, sql: &str) -> Statement {
    Statement::from_string(conn.get_database_backend(), sql.to_owned())
}

/// Appends a change inside the caller's transaction and returns its revision. The head row's
/// lock orders concurrent writers, so revisions are gapless and become visible in order.
pub async fn append(
    txn: &impl ConnectionTrait,
    tenant_id: Uuid,
    sensor_id: Uuid,
    kind: ChangeKind,
    payload: Value,
) -> Result<i64, StoreError> {
    let row = txn
        .query_one_raw(statement(txn, "UPDATE revision_head SET rev = rev + 1 WHERE id = 1 RETURNING rev"))
        .await?
        .ok_or_else(|| StoreError::Db(DbErr::Custom("revision_head row is missing".into())))?;
    let rev: i64 = row.try_get("", "rev")?;
    revision_log::Entity::insert(revision_log::ActiveModel {
        rev: Set(rev),
        tenant_id: Set(tenant_id),
        sensor_id: Set(sensor_id),
        kind: Set(kind.as_str().to_owned()),
        payload: Set(payload),
        committed_at: Set(super::now()),
    })
    .exec_without_returning(txn)
    .await?;
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        // Delivered at commit, and only then; the tailer re-reads the table regardless.
        txn.execute_unprepared(&format!("SELECT pg_notify('{NOTIFY_CHANNEL}', '{rev}')")).await?;
    }
    Ok(rev)
}

/// The head: one platform-wide row, read on the platform path.
pub async fn head(db: &DatabaseConnection) -> Result<Head, StoreError> {
    run(db, Reach::Platform, async |txn| head_in(txn).await).await
}

pub(super) async fn head_in(conn: &impl ConnectionTrait) -> Result<Head, StoreError> {
    let row = conn
        .query_one_raw(statement(conn, "SELECT rev, epoch, oldest_retained FROM revision_head WHERE id = 1"))
        .await?
        .ok_or_else(|| StoreError::Db(DbErr::Custom("revision_head row is missing".into())))?;
    Ok(Head {
        rev: row.try_get("", "rev")?,
        epoch: row.try_get("", "epoch")?,
        oldest_retained: row.try_get("", "oldest_retained")?,
    })
}

/// Changes of every sensor after `after`, oldest first: the stream tailer's platform path.
pub async fn after(db: &DatabaseConnection, after: i64, limit: u64) -> Result<Vec<Revision>, StoreError> {
    let query = revision_log::Entity::find()
        .filter(revision_log::Column::Rev.gt(after))
        .order_by_asc(revision_log::Column::Rev)
        .limit(limit);
    let rows = run(db, Reach::Platform, async |txn| Ok(query.all(txn).await?)).await?;
    Ok(rows.into_iter().map(Revision::from).collect())
}

/// One sensor's changes in `(after, upto]`, oldest first, at most `limit` of them.
pub async fn for_sensor(
    db: &DatabaseConnection,
    tenant: Uuid,
    sensor: Uuid,
    after: i64,
    upto: i64,
    limit: u64,
) -> Result<Vec<Revision>, StoreError> {
    let query = revision_log::Entity::find()
        .filter(revision_log::Column::TenantId.eq(tenant))
        .filter(revision_log::Column::SensorId.eq(sensor))
        .filter(revision_log::Column::Rev.gt(after))
        .filter(revision_log::Column::Rev.lte(upto))
        .order_by_asc(revision_log::Column::Rev)
        .limit(limit);
    let rows = as_tenant(db, tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(rows.into_iter().map(Revision::from).collect())
}

/// Whether the sensor's deletion is among its changes in `(after, upto]`.
pub async fn deleted_between(
    db: &DatabaseConnection,
    tenant: Uuid,
    sensor: Uuid,
    after: i64,
    upto: i64,
) -> Result<bool, StoreError> {
    use sea_orm::PaginatorTrait;
    let query = revision_log::Entity::find()
        .filter(revision_log::Column::TenantId.eq(tenant))
        .filter(revision_log::Column::SensorId.eq(sensor))
        .filter(revision_log::Column::Kind.eq(ChangeKind::Delete.as_str()))
        .filter(revision_log::Column::Rev.gt(after))
        .filter(revision_log::Column::Rev.lte(upto));
    let deletes = as_tenant(db, tenant, async |txn| Ok(query.clone().count(txn).await?)).await?;
    Ok(deletes > 0)
}

/// Drops log rows committed before `cutoff` and records the oldest revision kept, so a resume
/// token older than that gets a fresh snapshot instead of a replay with a hole in it.
/// Housekeeping across tenants: the platform path.
pub async fn compact(db: &DatabaseConnection, cutoff: DateTime<Utc>) -> Result<u64, StoreError> {
    let txn = super::db::begin(db, Reach::Platform, super::db::Mode::Durable).await?;
    // Lock the head first: writers append under the same lock, so nothing commits in between.
    let head = txn
        .query_one_raw(statement(&txn, "UPDATE revision_head SET rev = rev WHERE id = 1 RETURNING rev"))
        .await?
        .ok_or_else(|| StoreError::Db(DbErr::Custom("revision_head row is missing".into())))?;
    let head_rev: i64 = head.try_get("", "rev")?;
    // Delete a prefix of revisions, never a revision with an older one left behind it (replica
    // clocks may disagree, so `committed_at` alone is not monotonic in `rev`).
    let newest_expired = revision_log::Entity::find()
        .filter(revision_log::Column::CommittedAt.lt(cutoff))
        .order_by_desc(revision_log::Column::Rev)
        .one(&txn)
        .await?;
    let deleted = match newest_expired {
        Some(row) => {
            revision_log::Entity::delete_many()
                .filter(revision_log::Column::Rev.lte(row.rev))
                .exec(&txn)
                .await?
                .rows_affected
        }
        None => 0,
    };
    let oldest = revision_log::Entity::find().order_by_asc(revision_log::Column::Rev).one(&txn).await?;
    let oldest_retained = oldest.map(|m| m.rev).unwrap_or(head_rev + 1);
    txn.execute_raw(Statement::from_sql_and_values(
        txn.get_database_backend(),
        match txn.get_database_backend() {
            DatabaseBackend::Postgres => "UPDATE revision_head SET oldest_retained = $1 WHERE id = 1",
            _ => "UPDATE revision_head SET oldest_retained = ? WHERE id = 1",
        },
        [oldest_retained.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(deleted)
}
