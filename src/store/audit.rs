//! Audit events: written in the same transaction as the change they describe.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::audit_event;
use super::{Page, PageRequest, StoreError, TenantScope};

/// Who did it, as the audit trail records it.
#[derive(Debug, Clone)]
pub struct Actor {
    pub sub: String,
    pub role: String,
    pub node: Option<Uuid>,
    pub request_id: String,
}

/// What changed, as the audit trail records it.
pub struct AuditEntry<'a> {
    pub tenant: Uuid,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: Uuid,
    pub sensor_id: Option<Uuid>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

pub async fn record(conn: &impl ConnectionTrait, actor: &Actor, change: AuditEntry<'_>) -> Result<(), StoreError> {
    audit_event::Entity::insert(audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(change.tenant),
        occurred_at: Set(super::now()),
        actor_sub: Set(actor.sub.clone()),
        actor_role: Set(actor.role.clone()),
        actor_node: Set(actor.node),
        action: Set(change.action.to_owned()),
        target_type: Set(change.target_type.to_owned()),
        target_id: Set(change.target_id),
        sensor_id: Set(change.sensor_id),
        before: Set(change.before),
        after: Set(change.after),
        request_id: Set(actor.request_id.clone()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub sensor_id: Option<Uuid>,
    pub actor: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    filter: &AuditFilter,
    page: PageRequest,
) -> Result<Page<audit_event::Model>, StoreError> {
    use audit_event::Column as C;
    let mut query = audit_event::Entity::find().filter(C::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        // An SCN sees what was done at it, to it, and to the sensors attached to it.
        let attached = super::scope::sensors_attached_to(scope.tenant, node);
        query = query.filter(
            Condition::any()
                .add(C::ActorNode.eq(node))
                .add(C::TargetId.eq(node))
                .add(C::SensorId.in_subquery(attached)),
        );
    }
    if let Some(sensor_id) = filter.sensor_id {
        query = query.filter(C::SensorId.eq(sensor_id));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(C::ActorSub.eq(actor.as_str()));
    }
    if let Some(since) = filter.since {
        query = query.filter(C::OccurredAt.gte(since));
    }
    if let Some(until) = filter.until {
        query = query.filter(C::OccurredAt.lt(until));
    }
    if let Some(after) = page.after {
        query = query.filter(C::Id.gt(after));
    }
    let query = query.order_by_asc(C::Id).limit(page.limit + 1);
    let rows = super::db::as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}
