//! Received messages: envelope, raw content in chunks, and the scan results.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    TenantId,
    SensorId,
    IdempotencyKey,
    Status,
    ReceivedAt,
    ClientIp,
    Helo,
    MailFrom,
    RcptTo,
    Tls,
    Worker,
    Size,
    Sha256,
    Md5,
    HeaderFrom,
    HeaderTo,
    Subject,
    MessageId,
    Date,
    Verdict,
    Detections,
    Parts,
}

#[derive(DeriveIden)]
enum MessageChunks {
    Table,
    MessageId,
    Seq,
    Data,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Messages reference their tenant, not their sensor: like audit rows, they outlive the
        // sensor that received them.
        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(ColumnDef::new(Messages::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Messages::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Messages::SensorId).uuid().not_null())
                    .col(ColumnDef::new(Messages::IdempotencyKey).string_len(128).not_null())
                    .col(ColumnDef::new(Messages::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Messages::ReceivedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Messages::ClientIp).string().not_null())
                    .col(ColumnDef::new(Messages::Helo).string().not_null())
                    .col(ColumnDef::new(Messages::MailFrom).string().not_null())
                    .col(ColumnDef::new(Messages::RcptTo).json().not_null())
                    .col(ColumnDef::new(Messages::Tls).boolean().not_null())
                    .col(ColumnDef::new(Messages::Worker).string().not_null())
                    .col(ColumnDef::new(Messages::Size).big_integer().not_null())
                    .col(ColumnDef::new(Messages::Sha256).string_len(64).null())
                    .col(ColumnDef::new(Messages::Md5).string_len(32).null())
                    .col(ColumnDef::new(Messages::HeaderFrom).text().null())
                    .col(ColumnDef::new(Messages::HeaderTo).text().null())
                    .col(ColumnDef::new(Messages::Subject).text().null())
                    .col(ColumnDef::new(Messages::MessageId).text().null())
                    .col(ColumnDef::new(Messages::Date).string().null())
                    .col(ColumnDef::new(Messages::Verdict).string_len(16).null())
                    .col(ColumnDef::new(Messages::Detections).json().not_null())
                    .col(ColumnDef::new(Messages::Parts).json().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_messages_tenant")
                            .from(Messages::Table, Messages::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols, unique) in [
            ("ux_messages_sensor_idempotency", vec![Messages::SensorId, Messages::IdempotencyKey], true),
            ("ix_messages_tenant_id", vec![Messages::TenantId, Messages::Id], false),
            ("ix_messages_tenant_sensor", vec![Messages::TenantId, Messages::SensorId, Messages::Id], false),
            ("ix_messages_tenant_verdict", vec![Messages::TenantId, Messages::Verdict, Messages::Id], false),
        ] {
            let mut index = Index::create();
            index.name(name).table(Messages::Table);
            if unique {
                index.unique();
            }
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(MessageChunks::Table)
                    .col(ColumnDef::new(MessageChunks::MessageId).uuid().not_null())
                    .col(ColumnDef::new(MessageChunks::Seq).integer().not_null())
                    .col(ColumnDef::new(MessageChunks::Data).blob().not_null())
                    .primary_key(Index::create().col(MessageChunks::MessageId).col(MessageChunks::Seq))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_message_chunks_message")
                            .from(MessageChunks::Table, MessageChunks::MessageId)
                            .to(Messages::Table, Messages::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MessageChunks::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Messages::Table).to_owned()).await?;
        Ok(())
    }
}
