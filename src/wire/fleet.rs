//! What workers report about themselves: the acknowledgement of applied settings and heartbeat.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::policy::Violation;

/// What a worker reports: sent after applying a revision, and as a periodic heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerReport {
    /// Stream position (`<epoch>:<rev>`) applied.
    #[schema(nullable = false)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_token: Option<String>,
    /// The settings revision (`revision` of the last snapshot/upsert) applied.
    #[schema(nullable = false)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_settings_revision: Option<i64>,
    /// Items the worker could not apply, with the reason.
    #[schema(nullable = false)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<RejectedItem>>,
    #[schema(value_type = super::NameSchema, example = "0.1.0")]
    pub version: String,
    /// Where the worker accepts SMTP.
    #[schema(nullable = false, example = "10.0.3.7:25")]
    pub listen_address: Option<String>,
}

/// One item of the settings a worker could not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectedItem {
    #[schema(example = "/clients/3")]
    pub item: String,
    #[schema(example = "host bits set")]
    pub reason: String,
}

impl From<Violation> for RejectedItem {
    fn from(v: Violation) -> Self {
        RejectedItem { item: v.pointer, reason: v.message }
    }
}
