//! The sensor worker (data plane): speaks SMTP, enforces the settings it follows on the config
//! stream with the same `policy` code the API uses, and hands every accepted message to the API.
//! It keeps nothing on disk: everything it knows comes from the stream, everything it accepts
//! goes to the API, and `250` is said only once the API has stored the message.
//!
//! It imports `policy`, `wire` and its own modules only (see ARCHITECTURE.md).
mod acknowledge;
mod api_health;
mod context;
mod data;
pub mod follower;
mod handoff;
mod io;
mod limits;
mod metrics;
mod network;
mod smtp_session;
pub mod tls;
mod worker;

pub use context::WorkerLimits;
pub use worker::{RunningWorker, WorkerConfig, start};
