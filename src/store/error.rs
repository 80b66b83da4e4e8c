use sea_orm::{DbErr, SqlErr};

use crate::policy::Violation;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Missing, or outside the caller's scope: the two are deliberately indistinguishable.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("stale write; current ETag {current_etag}")]
    Stale { current_etag: String },
    #[error("invalid reference")]
    Invalid(Vec<Violation>),
    /// No writable database could be reached within the retry budget (a failover, an outage): the
    /// caller may try again shortly.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Db(DbErr),
}

/// SQLSTATEs after which the whole transaction may simply be run again: the connection went
/// (class 08, an administrator or crash shutdown, a server not accepting connections yet, too
/// many connections), the server turned out to be a read-only standby (25006), or the transaction
/// lost a serialization race or a deadlock (40001, 40P01).
const TRANSIENT_STATES: &[&str] = &["57P01", "57P02", "57P03", "53300", "25006", "40001", "40P01"];

/// Whether `e` says nothing about the transaction itself, only that it could not run now.
pub(crate) fn is_transient(e: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(err)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(err)) => err,
        _ => return false,
    };
    match sqlx.as_ref() {
        Sqlx::Io(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => {
            db.code().is_some_and(|code| code.starts_with("08") || TRANSIENT_STATES.contains(&code.as_ref()))
        }
        _ => false,
    }
}

/// Constraint names (PostgreSQL) and column lists (SQLite) mapped to what a client should hear.
const UNIQUE_MESSAGES: &[(&str, &str, &str)] = &[
    ("ux_tenants_name", "tenants.name", "a tenant with this name already exists"),
    ("ux_nodes_tenant_name", "nodes.tenant_id, nodes.name", "a node with this name already exists in the tenant"),
    (
        "ux_sensors_tenant_name",
        "sensors.tenant_id, sensors.name",
        "a sensor with this name already exists in the tenant",
    ),
    (
        "ux_detection_rulesets_tenant_name",
        "detection_rulesets.tenant_id, detection_rulesets.name",
        "a detection ruleset with this name already exists in the tenant",
    ),
];

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(text)) => {
                let message = UNIQUE_MESSAGES
                    .iter()
                    .find(|(constraint, columns, _)| text.contains(constraint) || text.contains(columns))
                    .map(|(_, _, message)| (*message).to_owned())
                    .unwrap_or_else(|| "the object conflicts with an existing one".to_owned());
                StoreError::Conflict(message)
            }
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                StoreError::Conflict("the object is still referenced by others".to_owned())
            }
            _ if is_transient(&e) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Db(e),
        }
    }
}
