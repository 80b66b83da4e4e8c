//! Schema migrations for mailsensor; the same migrations run on PostgreSQL and SQLite.
pub use sea_orm_migration::prelude::*;

mod m20261128_000001_tenancy;
mod m20261128_000002_revisions;
mod m20261128_000003_messages;
mod m20261202_000004_wire_log_payload;
mod m20261202_000005_row_level_security;
mod m20261202_000006_intake;
mod m20261202_000007_content_lz4;
mod m20261206_000008_rescan;
mod m20261206_000009_scan_engines;
mod m20261206_000010_detection_rulesets;
mod m20261206_000011_retrohunts;
mod m20261206_000012_alerts;
mod m20261206_000013_retention;
mod m20261206_000014_alert_claim;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_tenancy::Migration),
            Box::new(m20261128_000002_revisions::Migration),
            Box::new(m20261128_000003_messages::Migration),
            Box::new(m20261202_000004_wire_log_payload::Migration),
            Box::new(m20261202_000005_row_level_security::Migration),
            Box::new(m20261202_000006_intake::Migration),
            Box::new(m20261202_000007_content_lz4::Migration),
            Box::new(m20261206_000008_rescan::Migration),
            Box::new(m20261206_000009_scan_engines::Migration),
            Box::new(m20261206_000010_detection_rulesets::Migration),
            Box::new(m20261206_000011_retrohunts::Migration),
            Box::new(m20261206_000012_alerts::Migration),
            Box::new(m20261206_000013_retention::Migration),
            Box::new(m20261206_000014_alert_claim::Migration),
        ]
    }
}
