//! The events and their payloads. An event is stored with its `data`; the envelope (`id`, `type`,
//! `sequence`, `timestamp`, `tenant_id`) comes from its row when it is sent.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::scan::{Detection, Part};

/// A message's verdict reached a destination's threshold.
pub const MESSAGE_DETECTED: &str = "message.detected";
/// A retro-hunt's rules matched a stored message.
pub const RETROHUNT_MATCHED: &str = "retrohunt.matched";
/// A retro-hunt ended (finished, aborted or failed).
pub const RETROHUNT_FINISHED: &str = "retrohunt.finished";
/// A destination was disabled (its receiver said `410 Gone`, or it failed for days).
pub const DESTINATION_DISABLED: &str = "destination.disabled";
/// Sent by `POST …/alert-destinations/{id}/test` to that destination only.
pub const DESTINATION_TEST: &str = "destination.test";
/// Every kind of event, as `type` names it.
pub const EVENT_KINDS: [&str; 5] =
    [MESSAGE_DETECTED, RETROHUNT_MATCHED, RETROHUNT_FINISHED, DESTINATION_DISABLED, DESTINATION_TEST];

/// An alert event as every destination receives it (a webhook's body; syslog and e-mail render
/// it). Receivers de-duplicate by `id`: delivery is at least once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertEvent {
    /// Unique per event; a webhook's `webhook-id` header is the same.
    pub id: Uuid,
    /// `message.detected`, `retrohunt.matched`, `retrohunt.finished`, `destination.disabled` or
    /// `destination.test`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Increases by one with every event of the tenant.
    pub sequence: i64,
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    pub tenant_id: Uuid,
    #[schema(value_type = AlertData)]
    pub data: serde_json::Value,
}

/// What an event is about, by its `type` (each shape closed, so exactly one fits).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AlertData {
    MessageDetected(MessageDetected),
    RetrohuntMatched(RetrohuntMatched),
    RetrohuntFinished(RetrohuntFinished),
    DestinationDisabled(DestinationDisabled),
    DestinationTest(DestinationTest),
}

/// `message.detected`: the message and what was found in it — never its content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageDetected {
    pub message: AlertMessage,
    pub detections: Vec<AlertDetection>,
}

/// `retrohunt.matched`: a retro-hunt's rules matched a message stored before.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrohuntMatched {
    pub retrohunt_id: Uuid,
    pub ruleset_name: String,
    pub message: AlertMessage,
    /// What the hunt's rules matched (the message's own earlier detections are not repeated).
    pub detections: Vec<AlertDetection>,
}

/// `retrohunt.finished`: a retro-hunt ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrohuntFinished {
    pub retrohunt_id: Uuid,
    pub ruleset_name: String,
    /// `finished`, `aborted` or `failed`.
    pub state: String,
    pub scanned: i64,
    pub matches: i64,
    pub cap_reached: bool,
    /// The retro-hunt in the API.
    pub href: String,
}

/// `destination.disabled`: a destination stopped receiving alerts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationDisabled {
    pub destination_id: Uuid,
    pub name: String,
    pub reason: String,
}

/// `destination.test`: a test event, asked for through the API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationTest {
    pub destination_id: Uuid,
    pub name: String,
    pub requested_by: String,
}

/// The message an alert is about: its envelope and headers, never its content.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertMessage {
    pub id: Uuid,
    pub sensor_id: Uuid,
    pub sensor_name: String,
    pub node_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub client_ip: String,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub header_from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: i64,
    pub sha256: Option<String>,
    /// `incomplete`, `spam`, `suspicious` or `malicious`.
    pub verdict: String,
    /// The message in the API.
    pub href: String,
}

/// One finding, as an alert carries it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertDetection {
    /// `builtin`, `yara`, `clamav` or `rspamd`.
    pub engine: String,
    pub kind: String,
    pub rule: Option<String>,
    pub namespace: Option<String>,
    pub tags: Vec<String>,
    pub description: String,
    pub verdict: String,
    /// The attachment (and archive members) it was found in, e.g. `invoice.zip/eicar.com`.
    pub object: Option<String>,
    /// SHA-256 of that attachment.
    pub sha256: Option<String>,
    pub retrohunt_id: Option<Uuid>,
}

impl AlertDetection {
    /// `detection` of a message whose parts are `parts`.
    pub fn of(detection: &Detection, parts: &[Part]) -> Self {
        let part = detection.part.and_then(|i| parts.iter().find(|p| p.index == i));
        let mut object: Vec<String> = part.and_then(|p| p.name.clone()).into_iter().collect();
        object.extend(detection.archive_path.iter().cloned());
        AlertDetection {
            engine: detection.engine.clone(),
            kind: detection.kind.clone(),
            rule: detection.rule.clone(),
            namespace: detection.namespace.clone(),
            tags: detection.tags.clone(),
            description: detection.description.clone(),
            verdict: detection.verdict.as_str().to_owned(),
            object: (!object.is_empty()).then(|| object.join("/")),
            sha256: part.map(|p| p.sha256.clone()),
            retrohunt_id: detection.retrohunt_id,
        }
    }
}

/// The API path of a tenant's message.
pub fn message_href(tenant: Uuid, message: Uuid) -> String {
    format!("/v1/tenants/{tenant}/messages/{message}")
}
