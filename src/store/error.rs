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
    #[error(transparent)]
    Db(DbErr),
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
            _ => StoreError::Db(e),
        }
    }
}
