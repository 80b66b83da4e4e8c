//! The config stream's events, as the API writes them and the worker's follower reads them.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::SmtpIntegration;

/// What an event says; its `data` follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Forget what you have; a `snapshot` follows (`data`: `Reset`).
    Reset,
    /// The settings now (`data`: `SensorConfig`).
    Snapshot,
    /// The snapshot is complete; its id is the resume token (`data`: `{}`).
    Synced,
    /// The settings changed (`data`: `SensorConfig`).
    Upsert,
    /// The sensor is gone; stop accepting mail for it (`data`: `SensorDeleted`).
    Delete,
    /// Nothing happened; the id moves on (`data`: `{}`).
    Bookmark,
}

impl EventKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Reset => "reset",
            EventKind::Snapshot => "snapshot",
            EventKind::Synced => "synced",
            EventKind::Upsert => "upsert",
            EventKind::Delete => "delete",
            EventKind::Bookmark => "bookmark",
        }
    }

    pub fn from_name(name: &str) -> Option<EventKind> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }

    /// Whether an event of this kind carries a resume token as its id.
    pub const fn has_token(self) -> bool {
        matches!(self, EventKind::Synced | EventKind::Upsert | EventKind::Delete | EventKind::Bookmark)
    }
}

/// A sensor's settings as a worker applies them (`snapshot` and `upsert` events): exactly what
/// `GET …/smtp-integration` serves, and whose they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SensorConfig {
    pub sensor_id: Uuid,
    pub tenant_id: Uuid,
    /// The node the sensor is attached to.
    pub node_id: Uuid,
    #[serde(flatten)]
    pub settings: SmtpIntegration,
}

/// `delete`: the sensor is gone; a worker stops accepting mail for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SensorDeleted {
    pub sensor_id: Uuid,
}

/// `reset`: forget what you have; a `snapshot` follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reset {
    #[schema(example = "no resume token")]
    pub reason: String,
}

/// One event as the long-poll endpoint returns it (the SSE stream sends the same three parts as
/// `event:`, `id:` and `data:` lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamEvent {
    #[schema(example = "upsert")]
    pub event: EventKind,
    /// Resume token `<epoch>:<rev>` (on `synced`, `upsert`, `delete`, `bookmark`).
    #[schema(example = "6f1c0c8e-2f0e-4d3c-9a43-7f3f2b1b6d3e:42")]
    pub id: Option<String>,
    /// `SensorConfig` for snapshot/upsert, `SensorDeleted` for delete, `Reset` for reset, `{}` otherwise.
    #[schema(schema_with = event_data)]
    pub data: serde_json::Value,
}

/// The schema of an event's `data`: one of the event payloads, or `{}`.
fn event_data() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::AnyOfBuilder;
    use utoipa::openapi::{ObjectBuilder, Ref};
    AnyOfBuilder::new()
        .item(Ref::from_schema_name(SensorConfig::name()))
        .item(Ref::from_schema_name(SensorDeleted::name()))
        .item(Ref::from_schema_name(Reset::name()))
        .item(ObjectBuilder::new().title(Some("NoData")).description(Some("`synced` and `bookmark`: `{}`")))
        .build()
        .into()
}

impl StreamEvent {
    /// Server-Sent Events framing.
    pub fn to_sse(&self) -> String {
        let mut out = format!("event: {}\n", self.event.as_str());
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {id}\n"));
        }
        out.push_str(&format!("data: {}\n\n", self.data));
        out
    }
}

/// Long-poll answer: the events, and the token to pass as `after` next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigPoll {
    pub events: Vec<StreamEvent>,
    #[schema(example = "6f1c0c8e-2f0e-4d3c-9a43-7f3f2b1b6d3e:42")]
    pub next: String,
}
