//! Intake at the machine's limit:
//! - exactly once across retries: each stored message records a key over what makes a retry the
//!   same message (sensor, envelope, bytes), looked up within the dedup window;
//! - scanning off the `250` path: a stored message waits with verdict `pending` until a scan
//!   worker claims it (`FOR UPDATE SKIP LOCKED`); failures retry with backoff (`scan_attempts`,
//!   `scan_after`).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    TenantId,
    SensorId,
    ContentKey,
    ScanAttempts,
    ScanAfter,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(ColumnDef::new(Messages::ContentKey).string_len(64).null())
                    .to_owned(),
            )
            .await?;
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            ColumnDef::new(Messages::ScanAttempts).integer().not_null().default(0).to_owned(),
            ColumnDef::new(Messages::ScanAfter).timestamp_with_time_zone().null().to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await?;
        }
        // The queue: only pending messages, in arrival order (both backends take partial indexes).
        manager
            .get_connection()
            .execute_unprepared("CREATE INDEX ix_messages_scan_queue ON messages (id) WHERE verdict = 'pending'")
            .await?;
        manager
            .create_index(
                // Unique, so a lookup by key takes this index whatever the table's statistics say
                // (a fresh, fast-growing table otherwise gets a scan of the sensor's messages). A
                // copy stored before the window gives its key up when the key comes again
                // (`store::messages`); NULLs (no key) do not collide.
                Index::create()
                    .name("ux_messages_content_key")
                    .table(Messages::Table)
                    .col(Messages::TenantId)
                    .col(Messages::SensorId)
                    .col(Messages::ContentKey)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX ix_messages_scan_queue").await?;
        for column in [Messages::ScanAttempts, Messages::ScanAfter] {
            manager.alter_table(Table::alter().table(Messages::Table).drop_column(column).to_owned()).await?;
        }
        manager.drop_index(Index::drop().name("ux_messages_content_key").table(Messages::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::ContentKey).to_owned()).await
    }
}
