//! Exactly once across retries: each stored message records a key over what makes a retry the
//! same message (sensor, envelope, bytes), looked up within the dedup window.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    TenantId,
    SensorId,
    ContentKey,
    ReceivedAt,
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
        manager
            .create_index(
                Index::create()
                    .name("ix_messages_content_key")
                    .table(Messages::Table)
                    .col(Messages::TenantId)
                    .col(Messages::SensorId)
                    .col(Messages::ContentKey)
                    .col(Messages::ReceivedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("ix_messages_content_key").table(Messages::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Messages::Table).drop_column(Messages::ContentKey).to_owned()).await
    }
}
