//! mailsensor: multitenant control plane and workers for SMTP mail-security sensors.
//!
//! `policy` decides (pure), `wire` is what the planes exchange, `store` persists, `stream` feeds
//! changes to workers, `scan_queue` scans what was stored (with `engines`, the daemons), `api` speaks HTTP, `auth` verifies callers, `sensor` is the SMTP worker.
//! ARCHITECTURE.md has the layers and which module may import which.
pub mod alerts;
pub mod api;
pub mod auth;
pub mod cli;
pub mod delivery;
pub mod dev;
pub mod engines;
pub mod policy;
pub mod scan;
pub mod scan_queue;
pub mod sensor;
pub mod server;
pub mod store;
pub mod stream;
pub mod wire;
