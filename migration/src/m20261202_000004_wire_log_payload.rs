//! The revision log now carries each upsert in the form workers receive it (`wire::SensorConfig`).
//! Older rows are in the previous form, so they are compacted away: a worker resuming from a token
//! older than what is retained gets `reset` + `snapshot`, as after any compaction.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DELETE FROM revision_log").await?;
        db.execute_unprepared("UPDATE revision_head SET oldest_retained = rev + 1 WHERE id = 1").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Rows in the new form are as unreadable to the old code: compact the same way.
        self.up(manager).await
    }
}
