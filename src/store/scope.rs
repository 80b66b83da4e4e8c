//! What part of one tenant a caller may see, and the sensor queries every store module filters by.
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::StoreError;
use super::entity::{node, sensor};
use crate::policy::Violation;

/// What part of one tenant a caller may see. Every tenant query filters by it, so an object
/// outside it is simply not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantScope {
    pub tenant: Uuid,
    /// Signed in at an SCN: only that node and the sensors attached to it.
    pub node: Option<Uuid>,
    /// A sensor's own token: only that sensor.
    pub sensor: Option<Uuid>,
}

impl TenantScope {
    pub fn whole_tenant(tenant: Uuid) -> Self {
        TenantScope { tenant, node: None, sensor: None }
    }

    /// A member's scope: signed in at the PCN, the whole tenant; at an SCN, that node and its sensors.
    pub fn of_member(tenant: Uuid, node: Uuid, at_pcn: bool) -> Self {
        TenantScope { tenant, node: (!at_pcn).then_some(node), sensor: None }
    }

    /// A scope in which no node or sensor of `tenant` is found: for a principal whose reach does
    /// not extend to such objects, so that one that exists answers exactly like a missing one.
    pub fn nothing_of(tenant: Uuid) -> Self {
        TenantScope { tenant, node: Some(Uuid::nil()), sensor: Some(Uuid::nil()) }
    }
}

/// The sensors in `scope`.
pub(super) fn sensors(scope: TenantScope) -> sea_orm::Select<sensor::Entity> {
    let mut query = sensor::Entity::find().filter(sensor::Column::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        query = query.filter(sensor::Column::NodeId.eq(node));
    }
    if let Some(id) = scope.sensor {
        query = query.filter(sensor::Column::Id.eq(id));
    }
    query
}

/// One sensor in `scope`; outside it reads exactly like missing.
pub(super) async fn sensor(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    id: Uuid,
) -> Result<sensor::Model, StoreError> {
    sensors(scope).filter(sensor::Column::Id.eq(id)).one(conn).await?.ok_or(StoreError::NotFound("sensor"))
}

/// Ids of the sensors attached to `node`, as a subquery for "what an SCN sees".
pub(super) fn sensors_attached_to(tenant: Uuid, node: Uuid) -> sea_orm::sea_query::SelectStatement {
    use sea_orm::QueryTrait;
    sensor::Entity::find()
        .select_only()
        .column(sensor::Column::Id)
        .filter(sensor::Column::TenantId.eq(tenant))
        .filter(sensor::Column::NodeId.eq(node))
        .into_query()
}

/// A node named in a request body (`/node_id`) must be inside the caller's scope; one outside
/// reads as absent. `what` is what the caller does with it, for the error.
pub(super) async fn node_in_scope(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    node_id: Uuid,
    what: &str,
) -> Result<(), StoreError> {
    let mut query =
        node::Entity::find().filter(node::Column::TenantId.eq(scope.tenant)).filter(node::Column::Id.eq(node_id));
    if let Some(own) = scope.node {
        query = query.filter(node::Column::Id.eq(own));
    }
    match query.one(conn).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::Invalid(vec![Violation::new(
            "/node_id",
            format!("no node {node_id} in this tenant that you may {what}"),
        )])),
    }
}
