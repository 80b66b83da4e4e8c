//! Message content is compressed with lz4 rather than PostgreSQL's default pglz, where the server
//! has it: several times faster to compress on the way in and to read back for the scan, which is
//! where a large message's time went. Only new content is compressed the new way; SQLite has no
//! such setting.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Sets the compression of `message_chunks.data` to `method` when the server offers lz4 (a server
/// built without it keeps pglz, as before).
async fn set_compression(manager: &SchemaManager<'_>, method: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "DO $$ BEGIN \
               IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' \
                          AND 'lz4' = ANY (enumvals)) THEN \
                 ALTER TABLE message_chunks ALTER COLUMN data SET COMPRESSION {method}; \
               END IF; \
             END $$"
        ))
        .await
        .map(|_| ())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_compression(manager, "lz4").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        set_compression(manager, "pglz").await
    }
}
