//! Tenants and their PCN: the platform operator's business.
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::{Reach, as_tenant, run};
use super::entity::{node, tenant};
use super::{Page, PageRequest, StoreError};

pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    pcn_name: &str,
    actor: &Actor,
) -> Result<(tenant::Model, node::Model), StoreError> {
    // The new tenant's own context: creating it needs no cross-tenant reach.
    let id = Uuid::now_v7();
    as_tenant(db, id, async |txn| {
        let now = super::now();
        let tenant = tenant::ActiveModel {
            id: Set(id),
            name: Set(name.to_owned()),
            created_at: Set(now),
            updated_at: Set(now),
            message_retention_days: Set(None),
        }
        .insert(txn)
        .await?;
        let pcn = super::nodes::insert(txn, tenant.id, super::nodes::PCN, pcn_name).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: tenant.id,
                action: "tenant.create",
                target_type: "tenant",
                target_id: tenant.id,
                sensor_id: None,
                before: None,
                after: Some(json!({"name": tenant.name, "pcn": {"id": pcn.id, "name": pcn.name}})),
            },
        )
        .await?;
        Ok((tenant, pcn))
    })
    .await
}

/// Tenants with the id of their PCN. `only`: restrict to one tenant (a tenant member lists just
/// its own, in its own context); without it, this is the operator's cross-tenant list.
pub async fn list(
    db: &DatabaseConnection,
    only: Option<Uuid>,
    page: PageRequest,
) -> Result<Page<(tenant::Model, Uuid)>, StoreError> {
    let reach = only.map_or(Reach::Platform, Reach::Tenant);
    run(db, reach, async |txn| {
        let mut query = tenant::Entity::find();
        if let Some(id) = only {
            query = query.filter(tenant::Column::Id.eq(id));
        }
        if let Some(after) = page.after {
            query = query.filter(tenant::Column::Id.gt(after));
        }
        let rows = query.order_by_asc(tenant::Column::Id).limit(page.limit + 1).all(txn).await?;
        let ids: Vec<Uuid> = rows.iter().map(|t| t.id).collect();
        let pcns: std::collections::HashMap<Uuid, Uuid> = node::Entity::find()
            .filter(node::Column::TenantId.is_in(ids))
            .filter(node::Column::Kind.eq("pcn"))
            .all(txn)
            .await?
            .into_iter()
            .map(|n| (n.tenant_id, n.id))
            .collect();
        let rows = rows.into_iter().map(|t| (pcns.get(&t.id).copied().unwrap_or_default(), t));
        Ok(Page::from_rows(rows.map(|(pcn, t)| (t, pcn)).collect(), page, |(t, _)| t.id))
    })
    .await
}

pub async fn get(db: &DatabaseConnection, id: Uuid) -> Result<tenant::Model, StoreError> {
    as_tenant(db, id, async |txn| tenant::Entity::find_by_id(id).one(txn).await?.ok_or(StoreError::NotFound("tenant")))
        .await
}

pub async fn pcn_of(db: &DatabaseConnection, tenant_id: Uuid) -> Result<node::Model, StoreError> {
    as_tenant(db, tenant_id, async |txn| {
        node::Entity::find()
            .filter(node::Column::TenantId.eq(tenant_id))
            .filter(node::Column::Kind.eq("pcn"))
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("tenant"))
    })
    .await
}

pub async fn rename(db: &DatabaseConnection, id: Uuid, name: &str, actor: &Actor) -> Result<tenant::Model, StoreError> {
    as_tenant(db, id, async |txn| {
        let before = tenant::Entity::find_by_id(id).one(txn).await?.ok_or(StoreError::NotFound("tenant"))?;
        let mut active: tenant::ActiveModel = before.clone().into();
        active.name = Set(name.to_owned());
        active.updated_at = Set(super::now());
        let after = active.update(txn).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: id,
                action: "tenant.rename",
                target_type: "tenant",
                target_id: id,
                sensor_id: None,
                before: Some(json!({"name": before.name})),
                after: Some(json!({"name": after.name})),
            },
        )
        .await?;
        Ok(after)
    })
    .await
}

/// Deletes the tenant with its nodes, sensors and settings (foreign keys cascade). The audit row
/// stays, as audit rows outlive what they describe.
pub async fn delete(db: &DatabaseConnection, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    as_tenant(db, id, async |txn| {
        let before = tenant::Entity::find_by_id(id).one(txn).await?.ok_or(StoreError::NotFound("tenant"))?;
        tenant::Entity::delete_by_id(id).exec(txn).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: id,
                action: "tenant.delete",
                target_type: "tenant",
                target_id: id,
                sensor_id: None,
                before: Some(json!({"name": before.name})),
                after: None,
            },
        )
        .await?;
        Ok(())
    })
    .await
}

/// Cross-tenant by nature (names are unique across the platform): the platform path.
pub async fn find_by_name(db: &DatabaseConnection, name: &str) -> Result<Option<tenant::Model>, StoreError> {
    run(db, Reach::Platform, async |txn| {
        Ok(tenant::Entity::find().filter(tenant::Column::Name.eq(name)).one(txn).await?)
    })
    .await
}
