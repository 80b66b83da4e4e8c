//! Tenants, central nodes, sensors, SMTP integration settings and audit events.
//!
//! Tenant isolation lives in the schema too: every tenant row carries `tenant_id`, children point at
//! their parent through composite `(tenant_id, parent_id)` foreign keys so a row can never reference
//! another tenant's parent, and every index leads with `tenant_id`.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    TenantId,
    Kind,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Sensors {
    Table,
    Id,
    TenantId,
    NodeId,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SmtpSettings {
    Table,
    SensorId,
    TenantId,
    Enabled,
    DestinationDomains,
    Clients,
    SizeUnlimited,
    SizeValue,
    SizeUnit,
    Revision,
    UpdatedAt,
    UpdatedBy,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    OccurredAt,
    ActorSub,
    ActorRole,
    ActorNode,
    Action,
    TargetType,
    TargetId,
    SensorId,
    Before,
    After,
    RequestId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(ColumnDef::new(Tenants::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Tenants::Name).string().not_null())
                    .col(ColumnDef::new(Tenants::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Tenants::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("ux_tenants_name").table(Tenants::Table).col(Tenants::Name).unique().to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(ColumnDef::new(Nodes::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Nodes::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Nodes::Kind).string_len(3).not_null())
                    .col(ColumnDef::new(Nodes::Name).string().not_null())
                    .col(ColumnDef::new(Nodes::CreatedAt).timestamp_with_time_zone().not_null())
                    .check(Expr::col(Nodes::Kind).is_in(["pcn", "scn"]))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_nodes_tenant")
                            .from(Nodes::Table, Nodes::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Target of the composite foreign keys below.
        manager
            .create_index(
                Index::create()
                    .name("ux_nodes_tenant_id")
                    .table(Nodes::Table)
                    .col(Nodes::TenantId)
                    .col(Nodes::Id)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_nodes_tenant_name")
                    .table(Nodes::Table)
                    .col(Nodes::TenantId)
                    .col(Nodes::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Exactly one PCN per tenant; partial indexes read the same on PostgreSQL and SQLite.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_nodes_one_pcn_per_tenant ON nodes (tenant_id) WHERE kind = 'pcn'",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sensors::Table)
                    .col(ColumnDef::new(Sensors::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Sensors::TenantId).uuid().not_null())
                    .col(ColumnDef::new(Sensors::NodeId).uuid().not_null())
                    .col(ColumnDef::new(Sensors::Name).string().not_null())
                    .col(ColumnDef::new(Sensors::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(Sensors::UpdatedAt).timestamp_with_time_zone().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sensors_tenant")
                            .from(Sensors::Table, Sensors::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    // NO ACTION (checked at statement end) rather than RESTRICT, so deleting a
                    // tenant can cascade through nodes and sensors in one statement, while deleting
                    // an SCN that still has sensors fails.
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_sensors_node")
                            .from(Sensors::Table, (Sensors::TenantId, Sensors::NodeId))
                            .to(Nodes::Table, (Nodes::TenantId, Nodes::Id))
                            .on_delete(ForeignKeyAction::NoAction),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ux_sensors_tenant_id", vec![Sensors::TenantId, Sensors::Id]),
            ("ux_sensors_tenant_name", vec![Sensors::TenantId, Sensors::Name]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Sensors::Table).unique();
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("ix_sensors_tenant_node")
                    .table(Sensors::Table)
                    .col(Sensors::TenantId)
                    .col(Sensors::NodeId)
                    .col(Sensors::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SmtpSettings::Table)
                    .col(ColumnDef::new(SmtpSettings::SensorId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(SmtpSettings::TenantId).uuid().not_null())
                    .col(ColumnDef::new(SmtpSettings::Enabled).boolean().not_null())
                    .col(ColumnDef::new(SmtpSettings::DestinationDomains).json().not_null())
                    .col(ColumnDef::new(SmtpSettings::Clients).json().not_null())
                    .col(ColumnDef::new(SmtpSettings::SizeUnlimited).boolean().not_null())
                    .col(ColumnDef::new(SmtpSettings::SizeValue).big_integer().null())
                    .col(ColumnDef::new(SmtpSettings::SizeUnit).string_len(2).null())
                    .col(ColumnDef::new(SmtpSettings::Revision).big_integer().not_null())
                    .col(ColumnDef::new(SmtpSettings::UpdatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(SmtpSettings::UpdatedBy).string().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_smtp_settings_sensor")
                            .from(SmtpSettings::Table, (SmtpSettings::TenantId, SmtpSettings::SensorId))
                            .to(Sensors::Table, (Sensors::TenantId, Sensors::Id))
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_smtp_settings_tenant_sensor")
                    .table(SmtpSettings::Table)
                    .col(SmtpSettings::TenantId)
                    .col(SmtpSettings::SensorId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // Audit rows outlive what they describe, so they reference nothing by foreign key.
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    .col(ColumnDef::new(AuditEvents::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(AuditEvents::TenantId).uuid().not_null())
                    .col(ColumnDef::new(AuditEvents::OccurredAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(AuditEvents::ActorSub).string().not_null())
                    .col(ColumnDef::new(AuditEvents::ActorRole).string().not_null())
                    .col(ColumnDef::new(AuditEvents::ActorNode).uuid().null())
                    .col(ColumnDef::new(AuditEvents::Action).string().not_null())
                    .col(ColumnDef::new(AuditEvents::TargetType).string().not_null())
                    .col(ColumnDef::new(AuditEvents::TargetId).uuid().not_null())
                    .col(ColumnDef::new(AuditEvents::SensorId).uuid().null())
                    .col(ColumnDef::new(AuditEvents::Before).json().null())
                    .col(ColumnDef::new(AuditEvents::After).json().null())
                    .col(ColumnDef::new(AuditEvents::RequestId).string().not_null())
                    .to_owned(),
            )
            .await?;
        for (name, cols) in [
            ("ix_audit_tenant_id", vec![AuditEvents::TenantId, AuditEvents::Id]),
            ("ix_audit_tenant_sensor", vec![AuditEvents::TenantId, AuditEvents::SensorId, AuditEvents::Id]),
            ("ix_audit_tenant_actor", vec![AuditEvents::TenantId, AuditEvents::ActorSub, AuditEvents::Id]),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AuditEvents::Table.into_iden(),
            SmtpSettings::Table.into_iden(),
            Sensors::Table.into_iden(),
            Nodes::Table.into_iden(),
            Tenants::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
