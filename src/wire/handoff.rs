//! The message hand-off: how a worker streams an accepted message to the API.
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Media type of a hand-off body: one line of JSON (`HandoffEnvelope`), `\n`, then the raw message.
pub const HANDOFF_CONTENT_TYPE: &str = "application/vnd.mailsensor.handoff";

/// The first line of a hand-off body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffEnvelope {
    #[schema(example = "192.0.2.10")]
    pub client_ip: String,
    #[schema(example = "mx1.example.com")]
    pub helo: String,
    /// `MAIL FROM` (empty for the null sender).
    #[schema(example = "alice@example.com")]
    pub mail_from: String,
    /// The accepted `RCPT TO` addresses.
    pub rcpt_to: Vec<String>,
    /// Whether the session used STARTTLS.
    pub tls: bool,
    /// The worker instance that received it.
    pub worker: String,
}
