//! The revision log that feeds the config change stream, per-sensor settings history, and the
//! fleet of sensor workers with what each has applied.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RevisionHead {
    Table,
    Id,
    Rev,
    Epoch,
    OldestRetained,
}

#[derive(DeriveIden)]
enum RevisionLog {
    Table,
    Rev,
    TenantId,
    SensorId,
    Kind,
    Payload,
    CommittedAt,
}

#[derive(DeriveIden)]
enum SmtpSettingsRevisions {
    Table,
    TenantId,
    SensorId,
    Revision,
    Settings,
    CreatedAt,
    CreatedBy,
    RestoredFrom,
}

#[derive(DeriveIden)]
enum SensorWorkers {
    Table,
    TenantId,
    SensorId,
    InstanceId,
    AppliedToken,
    AppliedSettingsRevision,
    Rejected,
    Version,
    ListenAddress,
    FirstSeen,
    LastSeen,
}

#[derive(DeriveIden)]
enum Sensors {
    Table,
    Id,
    TenantId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One row. Every write transaction that workers must hear about increments `rev` with
        // UPDATE … RETURNING: the row lock orders the writers, so revisions are gapless and
        // commit in order (a sequence would hand out numbers that can commit out of order).
        manager
            .create_table(
                Table::create()
                    .table(RevisionHead::Table)
                    .col(ColumnDef::new(RevisionHead::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(RevisionHead::Rev).big_integer().not_null())
                    .col(ColumnDef::new(RevisionHead::Epoch).string_len(36).not_null())
                    .col(ColumnDef::new(RevisionHead::OldestRetained).big_integer().not_null())
                    .check(Expr::col(RevisionHead::Id).eq(1))
                    .to_owned(),
            )
            .await?;
        // A random epoch per database: restoring a backup should assign a new one
        // (`UPDATE revision_head SET epoch = …`), which sends every worker a fresh snapshot.
        let epoch = uuid::Uuid::new_v4();
        manager
            .get_connection()
            .execute_unprepared(&format!(
                "INSERT INTO revision_head (id, rev, epoch, oldest_retained) VALUES (1, 0, '{epoch}', 1)"
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RevisionLog::Table)
                    .col(ColumnDef::new(RevisionLog::Rev).big_integer().not_null().primary_key())
                    .col(ColumnDef::new(RevisionLog::TenantId).uuid().not_null())
                    .col(ColumnDef::new(RevisionLog::SensorId).uuid().not_null())
                    .col(ColumnDef::new(RevisionLog::Kind).string_len(16).not_null())
                    .col(ColumnDef::new(RevisionLog::Payload).json().not_null())
                    .col(ColumnDef::new(RevisionLog::CommittedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_revision_log_sensor_rev")
                    .table(RevisionLog::Table)
                    .col(RevisionLog::SensorId)
                    .col(RevisionLog::Rev)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_revision_log_committed_at")
                    .table(RevisionLog::Table)
                    .col(RevisionLog::CommittedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SmtpSettingsRevisions::Table)
                    .col(ColumnDef::new(SmtpSettingsRevisions::TenantId).uuid().not_null())
                    .col(ColumnDef::new(SmtpSettingsRevisions::SensorId).uuid().not_null())
                    .col(ColumnDef::new(SmtpSettingsRevisions::Revision).big_integer().not_null())
                    .col(ColumnDef::new(SmtpSettingsRevisions::Settings).json().not_null())
                    .col(ColumnDef::new(SmtpSettingsRevisions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SmtpSettingsRevisions::CreatedBy).string().not_null())
                    .col(ColumnDef::new(SmtpSettingsRevisions::RestoredFrom).big_integer().null())
                    .primary_key(
                        Index::create()
                            .col(SmtpSettingsRevisions::TenantId)
                            .col(SmtpSettingsRevisions::SensorId)
                            .col(SmtpSettingsRevisions::Revision),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_settings_revisions_sensor")
                            .from(
                                SmtpSettingsRevisions::Table,
                                (SmtpSettingsRevisions::TenantId, SmtpSettingsRevisions::SensorId),
                            )
                            .to(Sensors::Table, (Sensors::TenantId, Sensors::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SensorWorkers::Table)
                    .col(ColumnDef::new(SensorWorkers::TenantId).uuid().not_null())
                    .col(ColumnDef::new(SensorWorkers::SensorId).uuid().not_null())
                    .col(ColumnDef::new(SensorWorkers::InstanceId).string_len(128).not_null())
                    .col(ColumnDef::new(SensorWorkers::AppliedToken).string().null())
                    .col(ColumnDef::new(SensorWorkers::AppliedSettingsRevision).big_integer().null())
                    .col(ColumnDef::new(SensorWorkers::Rejected).json().not_null())
                    .col(ColumnDef::new(SensorWorkers::Version).string().not_null())
                    .col(ColumnDef::new(SensorWorkers::ListenAddress).string().null())
                    .col(ColumnDef::new(SensorWorkers::FirstSeen).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SensorWorkers::LastSeen).timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .col(SensorWorkers::TenantId)
                            .col(SensorWorkers::SensorId)
                            .col(SensorWorkers::InstanceId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sensor_workers_sensor")
                            .from(SensorWorkers::Table, (SensorWorkers::TenantId, SensorWorkers::SensorId))
                            .to(Sensors::Table, (Sensors::TenantId, Sensors::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SensorWorkers::Table.into_iden(),
            SmtpSettingsRevisions::Table.into_iden(),
            RevisionLog::Table.into_iden(),
            RevisionHead::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
