//! Retro-hunts: a tenant's rules run over the mail it already stored, as a job worked off in chunks
//! by any replica; and what each found. Row-level security like every tenant table (PostgreSQL).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Retrohunts {
    Table,
    Id,
    TenantId,
    NodeId,
    State,
    RulesetId,
    RulesetName,
    Source,
    Since,
    Until,
    SensorIds,
    MatchCap,
    Total,
    Scanned,
    Skipped,
    Bytes,
    Matches,
    CapReached,
    Cursor,
    Error,
    CreatedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum RetrohuntMatches {
    Table,
    Id,
    TenantId,
    RetrohuntId,
    MessageId,
    Seq,
    ReceivedAt,
    SensorId,
    Namespace,
    Rule,
    Object,
    Part,
    ArchivePath,
    Strings,
}

const TABLES: [&str; 2] = ["retrohunts", "retrohunt_matches"];
const CURRENT_TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Retrohunts::Table)
                    .col(ColumnDef::new(Retrohunts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Retrohunts::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Retrohunts::NodeId).uuid().not_null())
                    .col(ColumnDef::new(Retrohunts::State).string_len(16).not_null())
                    .col(ColumnDef::new(Retrohunts::RulesetId).uuid().null())
                    .col(ColumnDef::new(Retrohunts::RulesetName).string_len(200).not_null())
                    .col(ColumnDef::new(Retrohunts::Source).text().not_null())
                    .col(ColumnDef::new(Retrohunts::Since).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Retrohunts::Until).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Retrohunts::SensorIds).json().not_null())
                    .col(ColumnDef::new(Retrohunts::MatchCap).big_integer().not_null())
                    .col(ColumnDef::new(Retrohunts::Total).big_integer().not_null())
                    .col(ColumnDef::new(Retrohunts::Scanned).big_integer().not_null())
                    .col(ColumnDef::new(Retrohunts::Skipped).big_integer().not_null())
                    .col(ColumnDef::new(Retrohunts::Bytes).big_integer().not_null())
                    .col(ColumnDef::new(Retrohunts::Matches).big_integer().not_null())
                    .col(ColumnDef::new(Retrohunts::CapReached).boolean().not_null())
                    .col(ColumnDef::new(Retrohunts::Cursor).uuid().null())
                    .col(ColumnDef::new(Retrohunts::Error).text().null())
                    .col(ColumnDef::new(Retrohunts::CreatedBy).string().not_null())
                    .col(ColumnDef::new(Retrohunts::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Retrohunts::StartedAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(Retrohunts::FinishedAt).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_retrohunts_tenant_id")
                    .table(Retrohunts::Table)
                    .col(Retrohunts::TenantId)
                    .col(Retrohunts::Id)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ix_retrohunts_state").table(Retrohunts::Table).col(Retrohunts::State).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RetrohuntMatches::Table)
                    .col(ColumnDef::new(RetrohuntMatches::Id).uuid().not_null().unique_key())
                    .col(ColumnDef::new(RetrohuntMatches::TenantId).uuid().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::RetrohuntId).uuid().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::MessageId).uuid().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::Seq).integer().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::ReceivedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::SensorId).uuid().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::Namespace).string().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::Rule).string().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::Object).text().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::Part).integer().null())
                    .col(ColumnDef::new(RetrohuntMatches::ArchivePath).json().not_null())
                    .col(ColumnDef::new(RetrohuntMatches::Strings).json().not_null())
                    // A chunk redone after a crash writes the same keys: never a match twice.
                    .primary_key(
                        Index::create()
                            .col(RetrohuntMatches::TenantId)
                            .col(RetrohuntMatches::RetrohuntId)
                            .col(RetrohuntMatches::MessageId)
                            .col(RetrohuntMatches::Seq),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_retrohunt_matches_retrohunt")
                            .from(RetrohuntMatches::Table, (RetrohuntMatches::TenantId, RetrohuntMatches::RetrohuntId))
                            .to(Retrohunts::Table, (Retrohunts::TenantId, Retrohunts::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RetrohuntMatches::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Retrohunts::Table).to_owned()).await?;
        Ok(())
    }
}
