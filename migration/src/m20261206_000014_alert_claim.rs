//! The delivery workers claim each destination's waiting deliveries from a range of their own.
//!
//! `ix_alert_deliveries_waiting` holds only what is waiting (`state = 'pending'`), by destination
//! and then due time, so a claim reads the oldest due deliveries of one destination after another
//! and never walks past another destination's backlog. It replaces the two indexes by due time:
//! `ix_alert_deliveries_pending` (PostgreSQL) and `ix_alert_deliveries_due`, which held every
//! delivery ever made and was written on every attempt.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX ix_alert_deliveries_waiting ON alert_deliveries (destination_id, next_attempt_at) \
             WHERE state = 'pending'",
        )
        .await?;
        db.execute_unprepared("DROP INDEX ix_alert_deliveries_due").await?;
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("DROP INDEX ix_alert_deliveries_pending").await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(
                "CREATE INDEX ix_alert_deliveries_pending ON alert_deliveries (next_attempt_at) WHERE state = 'pending'",
            )
            .await?;
        }
        db.execute_unprepared("CREATE INDEX ix_alert_deliveries_due ON alert_deliveries (state, next_attempt_at)")
            .await?;
        db.execute_unprepared("DROP INDEX ix_alert_deliveries_waiting").await?;
        Ok(())
    }
}
