//! Response bodies. Kept apart from the entities so the API can evolve without the schema.
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::entity::{audit_event, node, sensor, tenant};

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    #[schema(example = "Acme Corp")]
    pub name: String,
    /// The tenant's primary central node.
    pub pcn_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantView {
    pub fn new(t: tenant::Model, pcn_id: Uuid) -> Self {
        TenantView { id: t.id, name: t.name, pcn_id, created_at: t.created_at, updated_at: t.updated_at }
    }
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Primary central node: one per tenant; administrators signed in here manage the whole tenant.
    Pcn,
    /// Secondary central node: administrators signed in here manage only the sensors attached to it.
    Scn,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: NodeKind,
    #[schema(example = "Branch office SCN")]
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<node::Model> for NodeView {
    fn from(n: node::Model) -> Self {
        let kind = if n.kind == crate::store::nodes::PCN { NodeKind::Pcn } else { NodeKind::Scn };
        NodeView { id: n.id, tenant_id: n.tenant_id, kind, name: n.name, created_at: n.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SensorView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The central node the sensor is attached to.
    pub node_id: Uuid,
    #[schema(example = "mx-copy-1")]
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<sensor::Model> for SensorView {
    fn from(s: sensor::Model) -> Self {
        SensorView {
            id: s.id,
            tenant_id: s.tenant_id,
            node_id: s.node_id,
            name: s.name,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditActor {
    #[schema(example = "alice")]
    pub sub: String,
    #[schema(example = "administrator")]
    pub role: String,
    /// The central node the actor was signed in at.
    pub node_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTarget {
    #[schema(example = "sensor")]
    pub r#type: String,
    pub id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: AuditActor,
    /// e.g. `tenant.create`, `node.delete`, `sensor.reattach`, `smtp_integration.update`.
    #[schema(example = "smtp_integration.update")]
    pub action: String,
    pub target: AuditTarget,
    pub sensor_id: Option<Uuid>,
    /// The object before the change (absent for creations).
    pub before: Option<serde_json::Value>,
    /// The object after the change (absent for deletions).
    pub after: Option<serde_json::Value>,
    /// `X-Request-Id` of the request that made the change.
    pub request_id: String,
}

impl From<audit_event::Model> for AuditEventView {
    fn from(e: audit_event::Model) -> Self {
        AuditEventView {
            id: e.id,
            occurred_at: e.occurred_at,
            actor: AuditActor { sub: e.actor_sub, role: e.actor_role, node_id: e.actor_node },
            action: e.action,
            target: AuditTarget { r#type: e.target_type, id: e.target_id },
            sensor_id: e.sensor_id,
            before: e.before,
            after: e.after,
            request_id: e.request_id,
        }
    }
}
