//! Detection rulesets: a tenant's YARA rules, attached to a node (the PCN: every sensor of the
//! tenant; an SCN: that SCN's sensors), with their history. Row-level security like every tenant
//! table (PostgreSQL only).
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DetectionRulesets {
    Table,
    Id,
    TenantId,
    NodeId,
    Name,
    Description,
    Source,
    Enabled,
    DisabledRules,
    Rules,
    Revision,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DetectionRulesetRevisions {
    Table,
    TenantId,
    RulesetId,
    Revision,
    NodeId,
    Name,
    Description,
    Source,
    Enabled,
    DisabledRules,
    CreatedAt,
    CreatedBy,
    RestoredFrom,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    TenantId,
}

const TABLES: [&str; 2] = ["detection_rulesets", "detection_ruleset_revisions"];
const CURRENT_TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DetectionRulesets::Table)
                    .col(ColumnDef::new(DetectionRulesets::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(DetectionRulesets::TenantId).uuid().not_null())
                    .col(ColumnDef::new(DetectionRulesets::NodeId).uuid().not_null())
                    .col(ColumnDef::new(DetectionRulesets::Name).string_len(200).not_null())
                    .col(ColumnDef::new(DetectionRulesets::Description).text().not_null())
                    .col(ColumnDef::new(DetectionRulesets::Source).text().not_null())
                    .col(ColumnDef::new(DetectionRulesets::Enabled).boolean().not_null())
                    .col(ColumnDef::new(DetectionRulesets::DisabledRules).json().not_null())
                    .col(ColumnDef::new(DetectionRulesets::Rules).json().not_null())
                    .col(ColumnDef::new(DetectionRulesets::Revision).big_integer().not_null())
                    .col(ColumnDef::new(DetectionRulesets::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DetectionRulesets::UpdatedAt).timestamp_with_time_zone().not_null())
                    // A ruleset goes with the node it is attached to.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_detection_rulesets_node")
                            .from(DetectionRulesets::Table, (DetectionRulesets::TenantId, DetectionRulesets::NodeId))
                            .to(Nodes::Table, (Nodes::TenantId, Nodes::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            ("ux_detection_rulesets_tenant_name", vec![DetectionRulesets::TenantId, DetectionRulesets::Name], true),
            ("ux_detection_rulesets_tenant_id", vec![DetectionRulesets::TenantId, DetectionRulesets::Id], true),
            ("ix_detection_rulesets_tenant_node", vec![DetectionRulesets::TenantId, DetectionRulesets::NodeId], false),
        ] {
            let mut index = Index::create().name(name).table(DetectionRulesets::Table).to_owned();
            for column in columns {
                index.col(column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(DetectionRulesetRevisions::Table)
                    .col(ColumnDef::new(DetectionRulesetRevisions::TenantId).uuid().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::RulesetId).uuid().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::Revision).big_integer().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::NodeId).uuid().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::Name).string_len(200).not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::Description).text().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::Source).text().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::Enabled).boolean().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::DisabledRules).json().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::CreatedBy).string().not_null())
                    .col(ColumnDef::new(DetectionRulesetRevisions::RestoredFrom).big_integer().null())
                    .primary_key(
                        Index::create()
                            .col(DetectionRulesetRevisions::TenantId)
                            .col(DetectionRulesetRevisions::RulesetId)
                            .col(DetectionRulesetRevisions::Revision),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_detection_ruleset_revisions_ruleset")
                            .from(
                                DetectionRulesetRevisions::Table,
                                (DetectionRulesetRevisions::TenantId, DetectionRulesetRevisions::RulesetId),
                            )
                            .to(DetectionRulesets::Table, (DetectionRulesets::TenantId, DetectionRulesets::Id))
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
        manager.drop_table(Table::drop().table(DetectionRulesetRevisions::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(DetectionRulesets::Table).to_owned()).await?;
        Ok(())
    }
}
