//! mailsensor: multitenant control plane and workers for SMTP mail-security sensors.
//!
//! `policy` decides (pure), `store` persists, `api` speaks HTTP, `auth` verifies callers.
pub mod api;
pub mod auth;
pub mod cli;
pub mod dev;
pub mod policy;
pub mod scan;
pub mod sensor;
pub mod server;
pub mod store;
pub mod stream;
