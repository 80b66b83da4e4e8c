//! What the two planes exchange, defined once: the settings document (as the API serves it, the
//! revision log stores it and the worker applies it), the stream's events, the message hand-off
//! and the workers' reports.
//!
//! Sits below `api`, `stream`, `store` and `sensor`, above `policy` only: the meaning of the
//! settings is `policy`'s, their JSON form is this module's.
pub mod fleet;
pub mod handoff;
mod name;
pub mod settings;
pub mod stream;

pub use fleet::{RejectedItem, WorkerReport};
pub use handoff::{HANDOFF_CONTENT_TYPE, HandoffEnvelope};
pub use name::NameSchema;
pub use settings::{MessageSizeLimit, Rollout, SettingsDocument, SettingsPatch, SizeLimitPatch, SmtpIntegration};
pub use stream::{ConfigPoll, EventKind, Reset, SensorConfig, SensorDeleted, StreamEvent};
