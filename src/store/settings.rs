//! SMTP integration settings: one row per sensor, versioned by `revision` (the ETag). Every
//! revision is kept in the sensor's history and announced on the revision log in the same
//! transaction.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, prelude::Expr,
};
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::{self, Reach, as_tenant};
use super::entity::{sensor, settings_revision, smtp_settings};
use super::revisions::{self, ChangeKind};
use super::{StoreError, TenantScope, scope};
use crate::policy::{SizeLimit, SizeUnit, SmtpSettings};
use crate::wire::{MessageSizeLimit, SensorConfig, SettingsDocument, SmtpIntegration};

/// Settings as stored, with their version and the sensor they belong to.
#[derive(Debug, Clone)]
pub struct SettingsRecord {
    pub tenant_id: Uuid,
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
        format!("\"{}\"", self.revision)
    }

    /// The document as the API serves it; `cap` is the platform cap "unlimited" stands for.
    pub fn served(&self, cap: u64) -> SmtpIntegration {
        SmtpIntegration::new(&self.settings, self.revision, self.updated_at, &self.updated_by, cap)
    }

    /// The document as a worker receives it on the config stream.
    pub fn config(&self, cap: u64) -> SensorConfig {
        SensorConfig {
            sensor_id: self.sensor_id,
            tenant_id: self.tenant_id,
            node_id: self.node_id,
            settings: self.served(cap),
        }
    }
}

/// A settings document read back from the database; it was valid when written, so failing to
/// parse means the data was damaged.
fn decode(document: SettingsDocument, sensor: Uuid) -> Result<SmtpSettings, StoreError> {
    document
        .parse(u64::MAX)
        .map_err(|_| StoreError::Db(DbErr::Custom(format!("stored settings of sensor {sensor} no longer parse"))))
}

fn json(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

fn document_json(settings: &SmtpSettings) -> serde_json::Value {
    json(SettingsDocument::from(settings))
}

/// The settings row's size columns.
struct SizeColumns {
    unlimited: bool,
    value: Option<i64>,
    unit: Option<String>,
}

impl From<SizeLimit> for SizeColumns {
    fn from(limit: SizeLimit) -> Self {
        match limit {
            SizeLimit::Unlimited => SizeColumns { unlimited: true, value: None, unit: None },
            SizeLimit::Limited { value, unit } => SizeColumns {
                unlimited: false,
                value: Some(i64::try_from(value).unwrap_or(i64::MAX)),
                unit: Some(unit.as_str().to_owned()),
            },
        }
    }
}

/// Settings decoded before, by sensor and revision. A revision's settings never change, so a hot
/// read need not check every entry again; the cache is only consulted for a row just read in the
/// caller's scope, so it decides nothing about who sees what.
static DECODED: std::sync::LazyLock<std::sync::Mutex<Decoded>> = std::sync::LazyLock::new(Default::default);
/// Past this many list entries in all (each settings document counts 1 + its domains + its
/// clients) the cache starts over: memory stays bounded whatever the fleet and its lists.
const DECODED_MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
struct Decoded {
    by_revision: std::collections::HashMap<(Uuid, i64), SmtpSettings>,
    entries: usize,
}

/// The settings of `key` (sensor, revision) if decoded before.
fn decoded(key: (Uuid, i64)) -> Option<SmtpSettings> {
    DECODED.lock().unwrap_or_else(|e| e.into_inner()).by_revision.get(&key).cloned()
}

fn remember(key: (Uuid, i64), settings: &SmtpSettings) {
    let weight = 1 + settings.destination_domains.entries().len() + settings.clients.entries().len();
    let mut decoded = DECODED.lock().unwrap_or_else(|e| e.into_inner());
    if decoded.entries + weight > DECODED_MAX_ENTRIES {
        *decoded = Decoded::default();
    }
    if weight <= DECODED_MAX_ENTRIES && decoded.by_revision.insert(key, settings.clone()).is_none() {
        decoded.entries += weight;
    }
}

fn from_row(row: smtp_settings::Model, node_id: Uuid) -> Result<SettingsRecord, StoreError> {
    let key = (row.sensor_id, row.revision);
    let settings = match decoded(key) {
        Some(settings) => settings,
        None => {
            let settings = decode_row(&row)?;
            remember(key, &settings);
            settings
        }
    };
    Ok(SettingsRecord {
        tenant_id: row.tenant_id,
        sensor_id: row.sensor_id,
        node_id,
        settings,
        revision: row.revision,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
    })
}

fn decode_row(row: &smtp_settings::Model) -> Result<SmtpSettings, StoreError> {
    let damaged = || StoreError::Db(DbErr::Custom(format!("stored settings of sensor {} are damaged", row.sensor_id)));
    let document = SettingsDocument {
        enabled: row.enabled,
        destination_domains: serde_json::from_value(row.destination_domains.clone()).map_err(|_| damaged())?,
        clients: serde_json::from_value(row.clients.clone()).map_err(|_| damaged())?,
        message_size_limit: MessageSizeLimit {
            unlimited: row.size_unlimited,
            value: row.size_value.and_then(|v| u64::try_from(v).ok()),
            unit: row.size_unit.as_deref().and_then(SizeUnit::from_name),
        },
    };
    decode(document, row.sensor_id)
}

/// Tells the sensor's workers about `record`, inside the caller's transaction.
pub(super) async fn announce(conn: &impl ConnectionTrait, record: &SettingsRecord, cap: u64) -> Result<(), StoreError> {
    let payload = json(record.config(cap));
    revisions::append(conn, record.tenant_id, record.sensor_id, ChangeKind::Upsert, payload).await?;
    Ok(())
}

/// Keeps `record` in the sensor's history and announces it, inside the caller's transaction.
async fn record_revision(
    conn: &impl ConnectionTrait,
    record: &SettingsRecord,
    restored_from: Option<i64>,
    cap: u64,
) -> Result<(), StoreError> {
    settings_revision::Entity::insert(settings_revision::ActiveModel {
        tenant_id: Set(record.tenant_id),
        sensor_id: Set(record.sensor_id),
        revision: Set(record.revision),
        settings: Set(document_json(&record.settings)),
        created_at: Set(record.updated_at),
        created_by: Set(record.updated_by.clone()),
        restored_from: Set(restored_from),
    })
    .exec_without_returning(conn)
    .await?;
    announce(conn, record, cap).await
}

/// A new sensor's settings: the defaults, as revision 1.
pub(super) async fn insert_defaults(
    conn: &impl ConnectionTrait,
    sensor: &sensor::Model,
    actor: &str,
    cap: u64,
) -> Result<SettingsRecord, StoreError> {
    let record = SettingsRecord {
        tenant_id: sensor.tenant_id,
        sensor_id: sensor.id,
        node_id: sensor.node_id,
        settings: SmtpSettings::default(),
        revision: 1,
        updated_at: sensor.created_at,
        updated_by: actor.to_owned(),
    };
    let s = &record.settings;
    let size = SizeColumns::from(s.message_size_limit);
    smtp_settings::Entity::insert(smtp_settings::ActiveModel {
        sensor_id: Set(record.sensor_id),
        tenant_id: Set(record.tenant_id),
        enabled: Set(s.enabled),
        destination_domains: Set(json(s.destination_domains.entries())),
        clients: Set(json(s.clients.entries())),
        size_unlimited: Set(size.unlimited),
        size_value: Set(size.value),
        size_unit: Set(size.unit),
        revision: Set(record.revision),
        updated_at: Set(record.updated_at),
        updated_by: Set(record.updated_by.clone()),
    })
    .exec_without_returning(conn)
    .await?;
    record_revision(conn, &record, None, cap).await?;
    Ok(record)
}

/// The settings of a sensor in `scope`. `lock`: hold the row until the transaction ends, so
/// concurrent writers queue up instead of failing (PostgreSQL; SQLite serialises writers anyway).
pub(super) async fn read(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    sensor_id: Uuid,
    lock: bool,
) -> Result<SettingsRecord, StoreError> {
    let lock = lock && conn.get_database_backend() == DatabaseBackend::Postgres;
    // Scope is decided by the sensor row (node attachment), the settings row follows it. Locking
    // the sensor row first (shared) keeps the order a sensor delete takes (sensor, then settings
    // by cascade), so the two cannot deadlock.
    let mut sensor = scope::sensors(scope).filter(sensor::Column::Id.eq(sensor_id));
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
    from_row(row, sensor.node_id)
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, sensor_id: Uuid) -> Result<SettingsRecord, StoreError> {
    as_tenant(db, scope.tenant, async |txn| read(txn, scope, sensor_id, false).await).await
}

/// What a member's token reaches of one sensor's settings: whether its node still exists and is
/// the PCN, and the settings if the sensor is in the scope that gives.
pub struct MemberRead {
    /// `None`: the node named in the token no longer exists.
    pub at_pcn: Option<bool>,
    pub settings: Option<SettingsRecord>,
}

/// The hot read of the settings API in one statement: the member's node (existence and kind,
/// which decide the scope), the sensor within that scope, and its settings' revision. The settings
/// themselves come from the decoded ones of that revision; only the first read of a revision
/// reads (and decodes) the document, in a second statement.
pub async fn read_as_member(
    db: &DatabaseConnection,
    tenant: Uuid,
    node: Uuid,
    sensor_id: Uuid,
) -> Result<MemberRead, StoreError> {
    const READ: &str = "SELECT n.kind AS node_kind, s.node_id AS sensor_node, \
                st.revision, st.updated_at, st.updated_by \
         FROM nodes n \
         LEFT JOIN sensors s ON s.tenant_id = n.tenant_id AND s.id = $3 AND (n.kind = 'pcn' OR s.node_id = n.id) \
         LEFT JOIN smtp_settings st ON st.tenant_id = s.tenant_id AND st.sensor_id = s.id \
         WHERE n.tenant_id = $1 AND n.id = $2";
    let backend = db.get_database_backend();
    let row = if backend == DatabaseBackend::Postgres {
        let read = db::PreparedRead { name: "mailsensor_member_settings", types: "(uuid, uuid, uuid)", sql: READ };
        db::read_at_once(db, tenant, &read, &[tenant, node, sensor_id]).await?.into_iter().next()
    } else {
        let statement = Statement::from_sql_and_values(backend, READ, [tenant.into(), node.into(), sensor_id.into()]);
        as_tenant(db, tenant, async |txn| Ok(txn.query_one_raw(statement.clone()).await?)).await?
    };
    let Some(row) = row else { return Ok(MemberRead { at_pcn: None, settings: None }) };
    let at_pcn = row.try_get::<String>("", "node_kind")? == super::nodes::PCN;
    let (Some(node_id), Some(revision)) =
        (row.try_get::<Option<Uuid>>("", "sensor_node")?, row.try_get::<Option<i64>>("", "revision")?)
    else {
        return Ok(MemberRead { at_pcn: Some(at_pcn), settings: None });
    };
    let settings = match decoded((sensor_id, revision)) {
        Some(settings) => SettingsRecord {
            tenant_id: tenant,
            sensor_id,
            node_id,
            settings,
            revision,
            updated_at: row.try_get("", "updated_at")?,
            updated_by: row.try_get("", "updated_by")?,
        },
        None => match get(db, TenantScope::of_member(tenant, node, at_pcn), sensor_id).await {
            Err(StoreError::NotFound(_)) => return Ok(MemberRead { at_pcn: Some(at_pcn), settings: None }),
            other => other?,
        },
    };
    Ok(MemberRead { at_pcn: Some(at_pcn), settings: Some(settings) })
}

/// The settings as of the revision-log head, read in one consistent snapshot: a subscriber that
/// starts from them and follows the log after `head` misses nothing.
pub async fn snapshot(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor_id: Uuid,
) -> Result<(i64, SettingsRecord), StoreError> {
    let txn = db::begin(db, Reach::Tenant(scope.tenant), db::Mode::Snapshot).await?;
    let head = revisions::head_in(&txn).await?;
    let record = read(&txn, scope, sensor_id, false).await?;
    txn.commit().await?;
    Ok((head.rev, record))
}

/// A settings write: by whom, and on what condition.
pub struct Write<'a> {
    pub actor: &'a Actor,
    /// The revision the writer read (If-Match): a write based on anything older is refused as
    /// stale, so two administrators never overwrite each other unseen. `None`: over whatever is current.
    pub expected: Option<i64>,
    /// Set when the write restores this earlier revision.
    pub restored_from: Option<i64>,
    /// The platform cap, for the document workers receive.
    pub cap: u64,
}

/// Replaces the settings with `new`, as a new revision; settings equal to the current ones are
/// answered as they are, with nothing written.
pub async fn replace(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor_id: Uuid,
    new: &SmtpSettings,
    write: Write<'_>,
) -> Result<SettingsRecord, StoreError> {
    let txn = db::begin(db, Reach::Tenant(scope.tenant), db::Mode::Durable).await?;
    let current = read(&txn, scope, sensor_id, true).await?;
    if write.expected.is_some_and(|expected| expected != current.revision) {
        return Err(StoreError::Stale { current_etag: current.etag() });
    }
    if current.settings == *new {
        // Nothing changes: no revision, no audit event, nothing for the workers.
        txn.rollback().await?;
        return Ok(current);
    }
    let record = SettingsRecord {
        settings: new.clone(),
        revision: current.revision + 1,
        updated_at: super::now(),
        updated_by: write.actor.sub.clone(),
        ..current.clone()
    };
    let size = SizeColumns::from(new.message_size_limit);
    // Conditional on the revision read above: a concurrent writer makes this touch no row.
    let updated = smtp_settings::Entity::update_many()
        .col_expr(smtp_settings::Column::Enabled, Expr::value(new.enabled))
        .col_expr(smtp_settings::Column::DestinationDomains, Expr::value(json(new.destination_domains.entries())))
        .col_expr(smtp_settings::Column::Clients, Expr::value(json(new.clients.entries())))
        .col_expr(smtp_settings::Column::SizeUnlimited, Expr::value(size.unlimited))
        .col_expr(smtp_settings::Column::SizeValue, Expr::value(size.value))
        .col_expr(smtp_settings::Column::SizeUnit, Expr::value(size.unit))
        .col_expr(smtp_settings::Column::Revision, Expr::value(record.revision))
        .col_expr(smtp_settings::Column::UpdatedAt, Expr::value(record.updated_at))
        .col_expr(smtp_settings::Column::UpdatedBy, Expr::value(record.updated_by.clone()))
        .filter(smtp_settings::Column::TenantId.eq(scope.tenant))
        .filter(smtp_settings::Column::SensorId.eq(sensor_id))
        .filter(smtp_settings::Column::Revision.eq(current.revision))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        // Only reachable without the row lock: report what is really current now.
        txn.rollback().await?;
        let now_current = get(db, scope, sensor_id).await?;
        return Err(StoreError::Stale { current_etag: now_current.etag() });
    }
    record_revision(&txn, &record, write.restored_from, write.cap).await?;
    audit::record(
        &txn,
        write.actor,
        AuditEntry {
            tenant: scope.tenant,
            action: if write.restored_from.is_some() { "smtp_integration.restore" } else { "smtp_integration.update" },
            target_type: "sensor",
            target_id: sensor_id,
            sensor_id: Some(sensor_id),
            before: Some(document_json(&current.settings)),
            after: Some(document_json(new)),
        },
    )
    .await?;
    txn.commit().await?;
    revisions::committed();
    Ok(record)
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
    let document: SettingsDocument = serde_json::from_value(m.settings).map_err(|_| {
        StoreError::Db(DbErr::Custom(format!("stored settings history of sensor {} is damaged", m.sensor_id)))
    })?;
    Ok(HistoryEntry {
        revision: m.revision,
        settings: decode(document, m.sensor_id)?,
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
    let mut query = settings_revision::Entity::find()
        .filter(settings_revision::Column::TenantId.eq(scope.tenant))
        .filter(settings_revision::Column::SensorId.eq(sensor_id));
    if let Some(before) = before {
        query = query.filter(settings_revision::Column::Revision.lt(before));
    }
    let query = query.order_by_desc(settings_revision::Column::Revision).limit(limit + 1);
    let mut rows = as_tenant(db, scope.tenant, async |txn| {
        scope::sensor(txn, scope, sensor_id).await?;
        Ok(query.clone().all(txn).await?)
    })
    .await?;
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
    as_tenant(db, scope.tenant, async |txn| {
        scope::sensor(txn, scope, sensor_id).await?;
        let row = settings_revision::Entity::find()
            .filter(settings_revision::Column::TenantId.eq(scope.tenant))
            .filter(settings_revision::Column::SensorId.eq(sensor_id))
            .filter(settings_revision::Column::Revision.eq(revision))
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("revision"))?;
        history_entry(row)
    })
    .await
}
