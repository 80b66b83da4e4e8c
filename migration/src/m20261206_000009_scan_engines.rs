//! Each message records how every engine's look at it went (status, version, rules or signatures,
//! time taken), so a verdict says what it rests on and a message an engine could not look at is
//! never taken for clean.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Engines,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let column = ColumnDef::new(Messages::Engines).json().not_null().default("[]").to_owned();
        manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::Engines).to_owned()).await
    }
}
