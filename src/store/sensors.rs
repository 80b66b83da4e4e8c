//! Sensors, each attached to one central node and owning one SMTP integration settings row.
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::as_tenant;
use super::entity::sensor;
use super::revisions::{self, ChangeKind};
use super::{Page, PageRequest, StoreError, TenantScope, scope, settings};
use crate::wire::{SensorDeleted, SettingsDocument};

/// One sensor in `scope`; outside it reads exactly like missing.
pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<sensor::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| scope::sensor(txn, scope, id).await).await
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    node_filter: Option<Uuid>,
    page: PageRequest,
) -> Result<Page<sensor::Model>, StoreError> {
    let mut query = scope::sensors(scope);
    if let Some(node) = node_filter {
        query = query.filter(sensor::Column::NodeId.eq(node));
    }
    if let Some(after) = page.after {
        query = query.filter(sensor::Column::Id.gt(after));
    }
    let query = query.order_by_asc(sensor::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |s| s.id))
}

fn sensor_json(s: &sensor::Model) -> serde_json::Value {
    json!({"name": s.name, "node_id": s.node_id})
}

pub async fn create(
    db: &DatabaseConnection,
    scope: TenantScope,
    name: &str,
    node_id: Uuid,
    actor: &Actor,
    cap: u64,
) -> Result<sensor::Model, StoreError> {
    let sensor = as_tenant(db, scope.tenant, async |txn| {
        scope::node_in_scope(txn, scope, node_id, "attach sensors to").await?;
        let now = super::now();
        let sensor = sensor::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(scope.tenant),
            node_id: Set(node_id),
            name: Set(name.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(txn)
        .await?;
        let settings = settings::insert_defaults(txn, &sensor, &actor.sub, cap).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: scope.tenant,
                action: "sensor.create",
                target_type: "sensor",
                target_id: sensor.id,
                sensor_id: Some(sensor.id),
                before: None,
                after: Some(json!({
                    "name": sensor.name,
                    "node_id": sensor.node_id,
                    "smtp_integration": SettingsDocument::from(&settings.settings),
                })),
            },
        )
        .await?;
        Ok(sensor)
    })
    .await?;
    revisions::committed();
    Ok(sensor)
}

/// Rename and/or re-attach to another node in scope.
pub async fn update(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    name: Option<&str>,
    node_id: Option<Uuid>,
    actor: &Actor,
    cap: u64,
) -> Result<sensor::Model, StoreError> {
    let out = as_tenant(db, scope.tenant, async |txn| {
        let before = scope::sensor(txn, scope, id).await?;
        if let Some(node_id) = node_id {
            scope::node_in_scope(txn, scope, node_id, "attach sensors to").await?;
        }
        let mut active: sensor::ActiveModel = before.clone().into();
        if let Some(name) = name {
            active.name = Set(name.to_owned());
        }
        if let Some(node_id) = node_id {
            active.node_id = Set(node_id);
        }
        active.updated_at = Set(super::now());
        let after = active.update(txn).await?;
        let reattached = before.node_id != after.node_id;
        if reattached {
            // Workers hear of the new attachment; the settings themselves are unchanged.
            let current = settings::read(txn, scope, id, false).await?;
            settings::announce(txn, &settings::SettingsRecord { node_id: after.node_id, ..current }, cap).await?;
        }
        let action = if reattached { "sensor.reattach" } else { "sensor.rename" };
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: scope.tenant,
                action,
                target_type: "sensor",
                target_id: id,
                sensor_id: Some(id),
                before: Some(sensor_json(&before)),
                after: Some(sensor_json(&after)),
            },
        )
        .await?;
        Ok(after)
    })
    .await?;
    revisions::committed();
    Ok(out)
}

pub async fn delete(db: &DatabaseConnection, scope: TenantScope, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = scope::sensor(txn, scope, id).await?;
        sensor::Entity::delete_by_id(id).exec(txn).await?;
        let deleted = serde_json::to_value(SensorDeleted { sensor_id: id }).unwrap_or_default();
        revisions::append(txn, scope.tenant, id, ChangeKind::Delete, deleted).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: scope.tenant,
                action: "sensor.delete",
                target_type: "sensor",
                target_id: id,
                sensor_id: Some(id),
                before: Some(sensor_json(&before)),
                after: None,
            },
        )
        .await?;
        Ok(())
    })
    .await?;
    revisions::committed();
    Ok(())
}
