//! Central nodes: one PCN per tenant (created with it) and any number of SCNs.
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::as_tenant;
use super::entity::{node, sensor};
use super::{Page, PageRequest, StoreError, TenantScope};

pub const PCN: &str = "pcn";
pub const SCN: &str = "scn";

fn scoped(scope: TenantScope) -> sea_orm::Select<node::Entity> {
    let mut query = node::Entity::find().filter(node::Column::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        query = query.filter(node::Column::Id.eq(node));
    }
    query
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<node::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        scoped(scope).filter(node::Column::Id.eq(id)).one(txn).await?.ok_or(StoreError::NotFound("node"))
    })
    .await
}

/// The node a signed-in member's token names, looked up within its tenant.
pub async fn of_member(db: &DatabaseConnection, tenant: Uuid, node: Uuid) -> Result<Option<node::Model>, StoreError> {
    as_tenant(db, tenant, async |txn| {
        Ok(node::Entity::find()
            .filter(node::Column::TenantId.eq(tenant))
            .filter(node::Column::Id.eq(node))
            .one(txn)
            .await?)
    })
    .await
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    page: PageRequest,
) -> Result<Page<node::Model>, StoreError> {
    let mut query = scoped(scope);
    if let Some(after) = page.after {
        query = query.filter(node::Column::Id.gt(after));
    }
    let rows = as_tenant(db, scope.tenant, async |txn| {
        Ok(query.clone().order_by_asc(node::Column::Id).limit(page.limit + 1).all(txn).await?)
    })
    .await?;
    Ok(Page::from_rows(rows, page, |n| n.id))
}

/// A new node of `kind` in `tenant`, inside the caller's transaction.
pub(super) async fn insert(
    conn: &impl sea_orm::ConnectionTrait,
    tenant: Uuid,
    kind: &str,
    name: &str,
) -> Result<node::Model, StoreError> {
    let node = node::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant),
        kind: Set(kind.to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(super::now()),
    };
    Ok(node.insert(conn).await?)
}

pub async fn create_scn(
    db: &DatabaseConnection,
    tenant: Uuid,
    name: &str,
    actor: &Actor,
) -> Result<node::Model, StoreError> {
    as_tenant(db, tenant, async |txn| {
        let node = insert(txn, tenant, SCN, name).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant,
                action: "node.create",
                target_type: "node",
                target_id: node.id,
                sensor_id: None,
                before: None,
                after: Some(json!({"kind": node.kind, "name": node.name})),
            },
        )
        .await?;
        Ok(node)
    })
    .await
}

pub async fn delete_scn(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    actor: &Actor,
) -> Result<(), StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let node = scoped(scope).filter(node::Column::Id.eq(id)).one(txn).await?.ok_or(StoreError::NotFound("node"))?;
        if node.kind == PCN {
            return Err(StoreError::Conflict(
                "a tenant's PCN cannot be deleted on its own; delete the tenant instead".into(),
            ));
        }
        let attached = sensor::Entity::find()
            .filter(sensor::Column::TenantId.eq(scope.tenant))
            .filter(sensor::Column::NodeId.eq(id))
            .count(txn)
            .await?;
        if attached > 0 {
            return Err(StoreError::Conflict(format!(
                "{attached} sensor(s) are attached to this SCN; re-attach or delete them first"
            )));
        }
        node::Entity::delete_by_id(id).exec(txn).await?;
        audit::record(
            txn,
            actor,
            AuditEntry {
                tenant: scope.tenant,
                action: "node.delete",
                target_type: "node",
                target_id: id,
                sensor_id: None,
                before: Some(json!({"kind": node.kind, "name": node.name})),
                after: None,
            },
        )
        .await?;
        Ok(())
    })
    .await
}
