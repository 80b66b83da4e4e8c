//! Rescans: a message records when it was scanned, and keeps the results of its earlier scans when
//! it is put back through the engines (`POST …/messages/{id}/rescan`).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    ScannedAt,
    EarlierScans,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            ColumnDef::new(Messages::ScannedAt).timestamp_with_time_zone().null().to_owned(),
            ColumnDef::new(Messages::EarlierScans).json().not_null().default("[]").to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Messages::ScannedAt, Messages::EarlierScans] {
            manager.alter_table(Table::alter().table(Messages::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
