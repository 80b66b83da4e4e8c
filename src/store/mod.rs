//! Persistence: sea-orm entities and tenant-scoped queries. All SQL of the control plane lives here.
pub mod alerts;
pub mod audit;
mod db;
pub mod entity;
pub mod erasure;
mod error;
pub mod messages;
mod no_delay;
pub mod nodes;
mod page;
pub mod retention;
pub mod retrohunts;
pub mod revisions;
pub mod rulesets;
mod scope;
pub mod sensors;
pub mod settings;
pub mod tenants;
pub mod workers;

pub use audit::Actor;
pub use db::{connect, connect_with, is_ready, migrate, set_retry_budget};
pub use error::StoreError;
pub use page::{Page, PageRequest};
pub use scope::TenantScope;

/// The current time at the precision every backend stores (PostgreSQL keeps microseconds), so a
/// value returned from a write equals the value read back later.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
