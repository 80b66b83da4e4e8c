//! What travels on the stream, shared by the API (which writes it) and the client (which reads it).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::smtp_integration::MessageSizeLimit;
use crate::policy::{SettingsDraft, SmtpSettings, Violation};

/// A sensor's settings as a worker applies them (`snapshot` and `upsert` events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SensorConfig {
    pub sensor_id: Uuid,
    pub tenant_id: Uuid,
    /// The node the sensor is attached to.
    pub node_id: Uuid,
    /// The settings' own revision (their ETag), for acknowledgements.
    pub settings_revision: i64,
    pub enabled: bool,
    pub destination_domains: Vec<String>,
    pub clients: Vec<String>,
    pub message_size_limit: MessageSizeLimit,
    /// The limit in bytes ("unlimited" = the platform cap).
    pub max_message_bytes: u64,
}

impl SensorConfig {
    /// Checks the document with the same `policy` code the API validated it with.
    pub fn settings(&self) -> Result<SmtpSettings, Vec<Violation>> {
        let limit = &self.message_size_limit;
        let draft = SettingsDraft {
            enabled: self.enabled,
            destination_domains: self.destination_domains.clone(),
            clients: self.clients.clone(),
            message_size_limit: crate::policy::SizeLimitDraft {
                unlimited: Some(limit.unlimited),
                value: limit.value.and_then(|v| i64::try_from(v).ok()),
                unit: limit.unit.map(|u| format!("{u:?}")),
            },
        };
        SmtpSettings::parse(&draft, self.max_message_bytes.max(1))
    }
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
    /// `reset`, `snapshot`, `synced`, `upsert`, `delete` or `bookmark`.
    #[schema(example = "upsert")]
    pub event: String,
    /// Resume token `<epoch>:<rev>` (on `synced`, `upsert`, `delete`, `bookmark`).
    #[schema(example = "6f1c0c8e-2f0e-4d3c-9a43-7f3f2b1b6d3e:42")]
    pub id: Option<String>,
    /// `SensorConfig` for snapshot/upsert, `SensorDeleted` for delete, `Reset` for reset, `{}` otherwise.
    pub data: serde_json::Value,
}

/// Long-poll answer: the events, and the token to pass as `after` next time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConfigPoll {
    pub events: Vec<StreamEvent>,
    #[schema(example = "6f1c0c8e-2f0e-4d3c-9a43-7f3f2b1b6d3e:42")]
    pub next: String,
}
