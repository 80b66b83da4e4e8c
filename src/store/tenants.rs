//! Tenants and their PCN: the platform operator's business.
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::entity::{node, tenant};
use super::{Page, PageRequest, StoreError};

pub async fn create(
    db: &DatabaseConnection,
    name: &str,
    pcn_name: &str,
    actor: &Actor,
) -> Result<(tenant::Model, node::Model), StoreError> {
    let txn = db.begin().await?;
    let now = super::now();
    let tenant = tenant::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let pcn = node::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant.id),
        kind: Set("pcn".to_owned()),
        name: Set(pcn_name.to_owned()),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
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
    txn.commit().await?;
    Ok((tenant, pcn))
}

/// `only`: restrict to one tenant (a tenant member lists just its own).
pub async fn list(
    db: &DatabaseConnection,
    only: Option<Uuid>,
    page: PageRequest,
) -> Result<Page<tenant::Model>, StoreError> {
    let mut query = tenant::Entity::find();
    if let Some(id) = only {
        query = query.filter(tenant::Column::Id.eq(id));
    }
    if let Some(after) = page.after {
        query = query.filter(tenant::Column::Id.gt(after));
    }
    let rows = query.order_by_asc(tenant::Column::Id).limit(page.limit + 1).all(db).await?;
    Ok(Page::from_rows(rows, page, |t| t.id))
}

pub async fn get(db: &DatabaseConnection, id: Uuid) -> Result<tenant::Model, StoreError> {
    tenant::Entity::find_by_id(id).one(db).await?.ok_or(StoreError::NotFound("tenant"))
}

pub async fn pcn_of(db: &DatabaseConnection, tenant_id: Uuid) -> Result<node::Model, StoreError> {
    node::Entity::find()
        .filter(node::Column::TenantId.eq(tenant_id))
        .filter(node::Column::Kind.eq("pcn"))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound("tenant"))
}

pub async fn rename(db: &DatabaseConnection, id: Uuid, name: &str, actor: &Actor) -> Result<tenant::Model, StoreError> {
    let txn = db.begin().await?;
    let before = tenant::Entity::find_by_id(id).one(&txn).await?.ok_or(StoreError::NotFound("tenant"))?;
    let mut active: tenant::ActiveModel = before.clone().into();
    active.name = Set(name.to_owned());
    active.updated_at = Set(super::now());
    let after = active.update(&txn).await?;
    audit::record(
        &txn,
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
    txn.commit().await?;
    Ok(after)
}

/// Deletes the tenant with its nodes, sensors and settings (foreign keys cascade). The audit row
/// stays, as audit rows outlive what they describe.
pub async fn delete(db: &DatabaseConnection, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    let txn = db.begin().await?;
    let before = tenant::Entity::find_by_id(id).one(&txn).await?.ok_or(StoreError::NotFound("tenant"))?;
    tenant::Entity::delete_by_id(id).exec(&txn).await?;
    audit::record(
        &txn,
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
    txn.commit().await?;
    Ok(())
}

/// The PCN of each of `tenants`, in one query.
pub async fn pcn_ids(
    db: &DatabaseConnection,
    tenants: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Uuid>, StoreError> {
    let rows = node::Entity::find()
        .filter(node::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(node::Column::Kind.eq("pcn"))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|n| (n.tenant_id, n.id)).collect())
}

pub async fn find_by_name(db: &DatabaseConnection, name: &str) -> Result<Option<tenant::Model>, StoreError> {
    Ok(tenant::Entity::find().filter(tenant::Column::Name.eq(name)).one(db).await?)
}
