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
            erasing_since: Set(None),
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
        let mut query = live();
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

/// The tenants not deleted: one being erased is gone from the API.
fn live() -> sea_orm::Select<tenant::Entity> {
    tenant::Entity::find().filter(tenant::Column::ErasingSince.is_null())
}

pub async fn get(db: &DatabaseConnection, id: Uuid) -> Result<tenant::Model, StoreError> {
    as_tenant(db, id, async |txn| {
        live().filter(tenant::Column::Id.eq(id)).one(txn).await?.ok_or(StoreError::NotFound("tenant"))
    })
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
        let before = live().filter(tenant::Column::Id.eq(id)).one(txn).await?.ok_or(StoreError::NotFound("tenant"))?;
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

/// Deletes a tenant, as far as anyone can tell at once: in one transaction it is marked as being
/// erased (gone from every read, its name free again), and its sensors and nodes go with their
/// settings, history and rulesets, so no token of its people or workers is accepted any more. Its
/// mail and everything about it are erased afterwards in batches ([`super::erasure`]), the row
/// last. The audit rows stay, as audit rows outlive what they describe.
pub async fn delete(db: &DatabaseConnection, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    as_tenant(db, id, async |txn| {
        let before = live().filter(tenant::Column::Id.eq(id)).one(txn).await?.ok_or(StoreError::NotFound("tenant"))?;
        let mut erasing: tenant::ActiveModel = before.clone().into();
        erasing.name = Set(format!("(erasing) {id}"));
        erasing.erasing_since = Set(Some(super::now()));
        erasing.update(txn).await?;
        super::entity::sensor::Entity::delete_many()
            .filter(super::entity::sensor::Column::TenantId.eq(id))
            .exec(txn)
            .await?;
        node::Entity::delete_many().filter(node::Column::TenantId.eq(id)).exec(txn).await?;
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
    run(db, Reach::Platform, async |txn| Ok(live().filter(tenant::Column::Name.eq(name)).one(txn).await?)).await
}
