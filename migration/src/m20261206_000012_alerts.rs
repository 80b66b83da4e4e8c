//! Alerts: destinations (webhook, syslog, e-mail) per tenant, the events a verdict or a retro-hunt
//! raises (written in the transaction that causes them: the outbox), one delivery per (event,
//! destination) claimed by any replica's delivery workers, and each attempt's log. Row-level
//! security like every tenant table (PostgreSQL).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AlertDestinations {
    Table,
    Id,
    TenantId,
    NodeId,
    Name,
    Kind,
    Config,
    Secret,
    PreviousSecret,
    PreviousSecretUntil,
    Filters,
    State,
    DisabledReason,
    FailingSince,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertSequences {
    Table,
    TenantId,
    Last,
}

#[derive(DeriveIden)]
enum AlertEvents {
    Table,
    Id,
    TenantId,
    Sequence,
    Kind,
    OccurredAt,
    NodeId,
    SensorId,
    MessageId,
    Payload,
}

#[derive(DeriveIden)]
enum AlertDeliveries {
    Table,
    Id,
    TenantId,
    EventId,
    DestinationId,
    State,
    Attempts,
    NextAttemptAt,
    LastStatus,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum AlertAttempts {
    Table,
    Id,
    TenantId,
    DeliveryId,
    DestinationId,
    Attempt,
    AttemptedAt,
    Outcome,
    Status,
    Error,
    LatencyMs,
    Response,
}

const TABLES: [&str; 5] =
    ["alert_destinations", "alert_sequences", "alert_events", "alert_deliveries", "alert_attempts"];
const CURRENT_TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AlertDestinations::Table)
                    .col(ColumnDef::new(AlertDestinations::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AlertDestinations::TenantId).uuid().not_null())
                    .col(ColumnDef::new(AlertDestinations::NodeId).uuid().not_null())
                    .col(ColumnDef::new(AlertDestinations::Name).string_len(200).not_null())
                    .col(ColumnDef::new(AlertDestinations::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(AlertDestinations::Config).json().not_null())
                    .col(ColumnDef::new(AlertDestinations::Secret).text().null())
                    .col(ColumnDef::new(AlertDestinations::PreviousSecret).text().null())
                    .col(ColumnDef::new(AlertDestinations::PreviousSecretUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(AlertDestinations::Filters).json().not_null())
                    .col(ColumnDef::new(AlertDestinations::State).string_len(16).not_null())
                    .col(ColumnDef::new(AlertDestinations::DisabledReason).text().null())
                    .col(ColumnDef::new(AlertDestinations::FailingSince).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(AlertDestinations::CreatedBy).string().not_null())
                    .col(ColumnDef::new(AlertDestinations::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AlertDestinations::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_alert_destinations_tenant_id")
                    .table(AlertDestinations::Table)
                    .col(AlertDestinations::TenantId)
                    .col(AlertDestinations::Id)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertSequences::Table)
                    .col(ColumnDef::new(AlertSequences::TenantId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AlertSequences::Last).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertEvents::Table)
                    .col(ColumnDef::new(AlertEvents::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AlertEvents::TenantId).uuid().not_null())
                    .col(ColumnDef::new(AlertEvents::Sequence).big_integer().not_null())
                    .col(ColumnDef::new(AlertEvents::Kind).string_len(40).not_null())
                    .col(ColumnDef::new(AlertEvents::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AlertEvents::NodeId).uuid().null())
                    .col(ColumnDef::new(AlertEvents::SensorId).uuid().null())
                    .col(ColumnDef::new(AlertEvents::MessageId).uuid().null())
                    .col(ColumnDef::new(AlertEvents::Payload).json().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ux_alert_events_tenant_id", vec![AlertEvents::TenantId, AlertEvents::Id]),
            ("ux_alert_events_tenant_sequence", vec![AlertEvents::TenantId, AlertEvents::Sequence]),
        ] {
            let mut index = Index::create().name(name).table(AlertEvents::Table).unique().to_owned();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_events_tenant_occurred")
                    .table(AlertEvents::Table)
                    .col(AlertEvents::TenantId)
                    .col(AlertEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertDeliveries::Table)
                    .col(ColumnDef::new(AlertDeliveries::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AlertDeliveries::TenantId).uuid().not_null())
                    .col(ColumnDef::new(AlertDeliveries::EventId).uuid().not_null())
                    .col(ColumnDef::new(AlertDeliveries::DestinationId).uuid().not_null())
                    .col(ColumnDef::new(AlertDeliveries::State).string_len(16).not_null())
                    .col(ColumnDef::new(AlertDeliveries::Attempts).integer().not_null())
                    .col(ColumnDef::new(AlertDeliveries::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AlertDeliveries::LastStatus).integer().null())
                    .col(ColumnDef::new(AlertDeliveries::LastError).text().null())
                    .col(ColumnDef::new(AlertDeliveries::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AlertDeliveries::DeliveredAt).timestamp_with_time_zone().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_deliveries_destination")
                            .from(AlertDeliveries::Table, (AlertDeliveries::TenantId, AlertDeliveries::DestinationId))
                            .to(AlertDestinations::Table, (AlertDestinations::TenantId, AlertDestinations::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_deliveries_event")
                            .from(AlertDeliveries::Table, (AlertDeliveries::TenantId, AlertDeliveries::EventId))
                            .to(AlertEvents::Table, (AlertEvents::TenantId, AlertEvents::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_alert_deliveries_destination_event")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::TenantId)
                    .col(AlertDeliveries::DestinationId)
                    .col(AlertDeliveries::EventId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_deliveries_due")
                    .table(AlertDeliveries::Table)
                    .col(AlertDeliveries::State)
                    .col(AlertDeliveries::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertAttempts::Table)
                    .col(ColumnDef::new(AlertAttempts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AlertAttempts::TenantId).uuid().not_null())
                    .col(ColumnDef::new(AlertAttempts::DeliveryId).uuid().not_null())
                    .col(ColumnDef::new(AlertAttempts::DestinationId).uuid().not_null())
                    .col(ColumnDef::new(AlertAttempts::Attempt).integer().not_null())
                    .col(ColumnDef::new(AlertAttempts::AttemptedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AlertAttempts::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(AlertAttempts::Status).integer().null())
                    .col(ColumnDef::new(AlertAttempts::Error).text().null())
                    .col(ColumnDef::new(AlertAttempts::LatencyMs).big_integer().not_null())
                    .col(ColumnDef::new(AlertAttempts::Response).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_alert_attempts_destination")
                            .from(AlertAttempts::Table, (AlertAttempts::TenantId, AlertAttempts::DestinationId))
                            .to(AlertDestinations::Table, (AlertDestinations::TenantId, AlertDestinations::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_alert_attempts_delivery")
                    .table(AlertAttempts::Table)
                    .col(AlertAttempts::TenantId)
                    .col(AlertAttempts::DeliveryId)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for table in TABLES {
            let condition = format!("tenant_id = {CURRENT_TENANT}");
            db.execute_unprepared(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO mailsensor_tenant, mailsensor_platform;
                 ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
                 CREATE POLICY tenant_rows ON {table} TO mailsensor_tenant USING ({condition}) WITH CHECK ({condition});
                 CREATE POLICY platform_rows ON {table} TO mailsensor_platform USING (true) WITH CHECK (true);"
            ))
            .await?;
        }
        // The delivery workers' claim looks only at what is waiting.
        db.execute_unprepared(
            "CREATE INDEX ix_alert_deliveries_pending ON alert_deliveries (next_attempt_at) WHERE state = 'pending'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["alert_attempts", "alert_deliveries", "alert_events", "alert_sequences", "alert_destinations"] {
            manager.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
