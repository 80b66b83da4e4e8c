//! SMTP integration settings: one row per sensor, versioned by `revision` (the ETag).
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    TransactionTrait, prelude::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::audit::{self, Actor, Change};
use super::entity::{sensor, settings_revision, smtp_settings};
use super::revisions::{self, ChangeKind};
use super::{StoreError, TenantScope, sensors};
use crate::policy::{ClientRules, DomainRules, SizeLimit, SizeUnit, SmtpSettings};

/// Settings as stored, with their version.
#[derive(Debug, Clone)]
pub struct SettingsRecord {
    pub sensor_id: Uuid,
    /// The node the sensor is attached to.
    pub node_id: Uuid,
    pub settings: SmtpSettings,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl SettingsRecord {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

fn unit_str(unit: SizeUnit) -> &'static str {
    match unit {
        SizeUnit::KB => "KB",
        SizeUnit::MB => "MB",
        SizeUnit::GB => "GB",
    }
}

/// The settings document as the API shows it and the audit trail records it.
pub fn size_limit_json(limit: SizeLimit) -> Value {
    match limit {
        SizeLimit::Unlimited => json!({"unlimited": true}),
        SizeLimit::Limited { value, unit } => json!({"unlimited": false, "value": value, "unit": unit_str(unit)}),
    }
}

pub fn settings_json(s: &SmtpSettings) -> Value {
    json!({
        "enabled": s.enabled,
        "destination_domains": s.destination_domains.entries(),
        "clients": s.clients.entries(),
        "message_size_limit": size_limit_json(s.message_size_limit),
    })
}

/// What the revision log carries for a sensor's settings: the document and its revision.
pub fn change_payload(s: &SmtpSettings, revision: i64) -> Value {
    let mut doc = settings_json(s);
    doc["revision"] = json!(revision);
    doc
}

/// The same, naming the node the sensor is attached to.
pub fn change_payload_on(s: &SmtpSettings, revision: i64, node: Uuid) -> Value {
    let mut doc = change_payload(s, revision);
    doc["node_id"] = json!(node);
    doc
}

/// One settings revision as written: what, whose, when and by whom.
pub(super) struct Written<'a> {
    pub tenant: Uuid,
    pub sensor: Uuid,
    pub node: Uuid,
    pub settings: &'a SmtpSettings,
    pub revision: i64,
    pub at: DateTime<Utc>,
    pub by: &'a str,
    pub restored_from: Option<i64>,
}

/// Records a revision in the sensor's history and in the revision log, inside the caller's
/// transaction.
pub(super) async fn record_revision(conn: &impl ConnectionTrait, w: Written<'_>) -> Result<(), StoreError> {
    settings_revision::Entity::insert(settings_revision::ActiveModel {
        tenant_id: Set(w.tenant),
        sensor_id: Set(w.sensor),
        revision: Set(w.revision),
        settings: Set(settings_json(w.settings)),
        created_at: Set(w.at),
        created_by: Set(w.by.to_owned()),
        restored_from: Set(w.restored_from),
    })
    .exec_without_returning(conn)
    .await?;
    let payload = change_payload_on(w.settings, w.revision, w.node);
    revisions::append(conn, w.tenant, w.sensor, ChangeKind::Upsert, payload).await?;
    Ok(())
}

fn corrupt(what: &str, sensor: Uuid) -> StoreError {
    StoreError::Db(DbErr::Custom(format!("stored {what} of sensor {sensor} no longer parse")))
}

fn entries(value: &Value) -> Option<Vec<String>> {
    serde_json::from_value(value.clone()).ok()
}

/// Reads a stored settings document (`settings_json` form) back.
pub fn settings_from_json(doc: &Value) -> Option<SmtpSettings> {
    let domains = DomainRules::parse(&entries(&doc["destination_domains"])?).ok()?;
    let clients = ClientRules::parse(&entries(&doc["clients"])?).ok()?;
    let size = &doc["message_size_limit"];
    let message_size_limit = if size["unlimited"].as_bool()? {
        SizeLimit::Unlimited
    } else {
        let unit = SizeUnit::from_name(size["unit"].as_str()?)?;
        SizeLimit::Limited { value: size["value"].as_u64()?, unit }
    };
    Some(SmtpSettings { enabled: doc["enabled"].as_bool()?, destination_domains: domains, clients, message_size_limit })
}

fn from_row(row: smtp_settings::Model) -> Result<SettingsRecord, StoreError> {
    let domains = entries(&row.destination_domains)
        .and_then(|e| DomainRules::parse(&e).ok())
        .ok_or_else(|| corrupt("destination domains", row.sensor_id))?;
    let clients = entries(&row.clients)
        .and_then(|e| ClientRules::parse(&e).ok())
        .ok_or_else(|| corrupt("clients", row.sensor_id))?;
    let size = if row.size_unlimited {
        SizeLimit::Unlimited
    } else {
        let unit = match row.size_unit.as_deref() {
            Some("KB") => SizeUnit::KB,
            Some("MB") => SizeUnit::MB,
            Some("GB") => SizeUnit::GB,
            _ => return Err(corrupt("size unit", row.sensor_id)),
        };
        let value = row.size_value.and_then(|v| u64::try_from(v).ok()).ok_or_else(|| corrupt("size", row.sensor_id))?;
        SizeLimit::Limited { value, unit }
    };
    Ok(SettingsRecord {
        sensor_id: row.sensor_id,
        node_id: Uuid::nil(),
        settings: SmtpSettings {
            enabled: row.enabled,
            destination_domains: domains,
            clients,
            message_size_limit: size,
        },
        revision: row.revision,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
    })
}

fn size_columns(limit: SizeLimit) -> (bool, Option<i64>, Option<String>) {
    match limit {
        SizeLimit::Unlimited => (true, None, None),
        SizeLimit::Limited { value, unit } => {
            (false, Some(i64::try_from(value).unwrap_or(i64::MAX)), Some(unit_str(unit).to_owned()))
        }
    }
}

pub(super) async fn insert_defaults(
    conn: &impl ConnectionTrait,
    sensor: &sensor::Model,
    actor: &str,
) -> Result<(), StoreError> {
    let defaults = SmtpSettings::default();
    let (unlimited, value, unit) = size_columns(defaults.message_size_limit);
    smtp_settings::Entity::insert(smtp_settings::ActiveModel {
        sensor_id: Set(sensor.id),
        tenant_id: Set(sensor.tenant_id),
        enabled: Set(defaults.enabled),
        destination_domains: Set(json!(defaults.destination_domains.entries())),
        clients: Set(json!(defaults.clients.entries())),
        size_unlimited: Set(unlimited),
        size_value: Set(value),
        size_unit: Set(unit),
        revision: Set(1),
        updated_at: Set(sensor.created_at),
        updated_by: Set(actor.to_owned()),
    })
    .exec_without_returning(conn)
    .await?;
    let written = Written {
        tenant: sensor.tenant_id,
        sensor: sensor.id,
        node: sensor.node_id,
        settings: &defaults,
        revision: 1,
        at: sensor.created_at,
        by: actor,
        restored_from: None,
    };
    record_revision(conn, written).await
}

pub async fn read(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    sensor_id: Uuid,
) -> Result<SettingsRecord, StoreError> {
    read_locking(conn, scope, sensor_id, false).await
}

/// `lock`: hold the settings row until the transaction ends, so concurrent writers queue up
/// instead of failing (PostgreSQL; SQLite serialises writers anyway).
async fn read_locking(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    sensor_id: Uuid,
    lock: bool,
) -> Result<SettingsRecord, StoreError> {
    use sea_orm::QuerySelect;
    let lock = lock && conn.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    // Scope is decided by the sensor row (node attachment), the settings row follows it. Locking
    // the sensor row first (shared) keeps the order a sensor delete takes (sensor, then settings
    // by cascade), so the two cannot deadlock.
    let mut sensor = sensors::scoped(scope).filter(sensor::Column::Id.eq(sensor_id));
    if lock {
        sensor = sensor.lock_shared();
    }
    let sensor = sensor.one(conn).await?.ok_or(StoreError::NotFound("sensor"))?;
    let mut query = smtp_settings::Entity::find()
        .filter(smtp_settings::Column::TenantId.eq(scope.tenant))
        .filter(smtp_settings::Column::SensorId.eq(sensor_id));
    if lock {
        query = query.lock_exclusive();
    }
    let row = query.one(conn).await?.ok_or(StoreError::NotFound("sensor"))?;
    Ok(SettingsRecord { node_id: sensor.node_id, ..from_row(row)? })
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, sensor_id: Uuid) -> Result<SettingsRecord, StoreError> {
    read(db, scope, sensor_id).await
}

/// Replaces the settings. `expected`: the revision the caller read (If-Match); a write based on
/// anything older is refused as stale, so two administrators never overwrite each other unseen.
pub async fn replace(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor_id: Uuid,
    new: &SmtpSettings,
    expected: Option<i64>,
    restored_from: Option<i64>,
    actor: &Actor,
) -> Result<SettingsRecord, StoreError> {
    let txn = db.begin().await?;
    let current = read_locking(&txn, scope, sensor_id, true).await?;
    if let Some(expected) = expected
        && expected != current.revision
    {
        return Err(StoreError::Stale { current_etag: current.etag() });
    }
    let (unlimited, value, unit) = size_columns(new.message_size_limit);
    let now = super::now();
    let revision = current.revision + 1;
    // Conditional on the revision read above: a concurrent writer makes this touch no row.
    let updated = smtp_settings::Entity::update_many()
        .col_expr(smtp_settings::Column::Enabled, Expr::value(new.enabled))
        .col_expr(smtp_settings::Column::DestinationDomains, Expr::value(json!(new.destination_domains.entries())))
        .col_expr(smtp_settings::Column::Clients, Expr::value(json!(new.clients.entries())))
        .col_expr(smtp_settings::Column::SizeUnlimited, Expr::value(unlimited))
        .col_expr(smtp_settings::Column::SizeValue, Expr::value(value))
        .col_expr(smtp_settings::Column::SizeUnit, Expr::value(unit))
        .col_expr(smtp_settings::Column::Revision, Expr::value(revision))
        .col_expr(smtp_settings::Column::UpdatedAt, Expr::value(now))
        .col_expr(smtp_settings::Column::UpdatedBy, Expr::value(actor.sub.clone()))
        .filter(smtp_settings::Column::TenantId.eq(scope.tenant))
        .filter(smtp_settings::Column::SensorId.eq(sensor_id))
        .filter(smtp_settings::Column::Revision.eq(current.revision))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        // Only reachable without the row lock: report what is really current now.
        txn.rollback().await?;
        let now_current = read(db, scope, sensor_id).await?;
        return Err(StoreError::Stale { current_etag: now_current.etag() });
    }
    let written = Written {
        tenant: scope.tenant,
        sensor: sensor_id,
        node: current.node_id,
        settings: new,
        revision,
        at: now,
        by: &actor.sub,
        restored_from,
    };
    record_revision(&txn, written).await?;
    audit::record(
        &txn,
        actor,
        Change {
            tenant: scope.tenant,
            action: if restored_from.is_some() { "smtp_integration.restore" } else { "smtp_integration.update" },
            target_type: "sensor",
            target_id: sensor_id,
            sensor_id: Some(sensor_id),
            before: Some(settings_json(&current.settings)),
            after: Some(settings_json(new)),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(SettingsRecord {
        sensor_id,
        node_id: current.node_id,
        settings: new.clone(),
        revision,
        updated_at: now,
        updated_by: actor.sub.clone(),
    })
}

/// One entry of a sensor's settings history.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub revision: i64,
    pub settings: SmtpSettings,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub restored_from: Option<i64>,
}

fn history_entry(m: settings_revision::Model) -> Result<HistoryEntry, StoreError> {
    let settings = settings_from_json(&m.settings).ok_or_else(|| corrupt("settings history", m.sensor_id))?;
    Ok(HistoryEntry {
        revision: m.revision,
        settings,
        created_at: m.created_at,
        created_by: m.created_by,
        restored_from: m.restored_from,
    })
}

/// Newest first; `before` is the revision the previous page ended at.
pub async fn history(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor_id: Uuid,
    before: Option<i64>,
    limit: u64,
) -> Result<(Vec<HistoryEntry>, Option<i64>), StoreError> {
    use sea_orm::{QueryOrder, QuerySelect};
    sensors::get(db, scope, sensor_id).await?;
    let mut query = settings_revision::Entity::find()
        .filter(settings_revision::Column::TenantId.eq(scope.tenant))
        .filter(settings_revision::Column::SensorId.eq(sensor_id));
    if let Some(before) = before {
        query = query.filter(settings_revision::Column::Revision.lt(before));
    }
    let mut rows = query.order_by_desc(settings_revision::Column::Revision).limit(limit + 1).all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.revision) } else { None };
    Ok((rows.into_iter().map(history_entry).collect::<Result<_, _>>()?, next))
}

pub async fn history_entry_at(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor_id: Uuid,
    revision: i64,
) -> Result<HistoryEntry, StoreError> {
    sensors::get(db, scope, sensor_id).await?;
    let row = settings_revision::Entity::find()
        .filter(settings_revision::Column::TenantId.eq(scope.tenant))
        .filter(settings_revision::Column::SensorId.eq(sensor_id))
        .filter(settings_revision::Column::Revision.eq(revision))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound("revision"))?;
    history_entry(row)
}
