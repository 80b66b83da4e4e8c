//! Row-level security on PostgreSQL: the database itself keeps tenants apart, behind the
//! application's own `tenant_id` filters.
//!
//! Three roles (cluster-wide, created once if missing; creating them needs CREATEROLE, or a DBA
//! creates them beforehand with the same attributes and grants the two NOLOGIN roles to
//! `mailsensor_api` and to the owner, so the owner needs no CREATEROLE):
//! - `mailsensor_tenant` (NOLOGIN): sees and writes only the rows of the tenant named by
//!   `current_setting('app.tenant_id')`; with the setting absent, no rows at all.
//! - `mailsensor_platform` (NOLOGIN): every row; only for the named cross-tenant paths (the stream
//!   tailer, the operator's tenant list, housekeeping).
//! - `mailsensor_api` (LOGIN, NOINHERIT, no password until the operator sets one): the role the
//!   server logs in as. It holds no table privileges of its own, so a query outside a path fails
//!   loudly; each transaction takes one of the two roles above with `set_config('role', …, true)`.
//!
//! The tables' owner (the role migrations run as) is bound too (`FORCE ROW LEVEL SECURITY`): a
//! future data migration reaches tenant rows only by taking `mailsensor_platform` explicitly.
//! SQLite (`mailsensor dev`) has no roles and no row security; nothing here runs there.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables whose rows belong to one tenant, with the condition that says which.
const TENANT_TABLES: &[(&str, &str)] = &[
    ("tenants", "id = {tenant}"),
    ("nodes", "tenant_id = {tenant}"),
    ("sensors", "tenant_id = {tenant}"),
    ("smtp_settings", "tenant_id = {tenant}"),
    ("smtp_settings_revisions", "tenant_id = {tenant}"),
    ("audit_events", "tenant_id = {tenant}"),
    ("revision_log", "tenant_id = {tenant}"),
    ("sensor_workers", "tenant_id = {tenant}"),
    ("messages", "tenant_id = {tenant}"),
    // A chunk belongs to its message; the subquery itself sees only the tenant's messages.
    ("message_chunks", "EXISTS (SELECT 1 FROM messages m WHERE m.id = message_chunks.message_id)"),
];

/// The tenant a transaction acts for; NULL (no rows match) when it was never set.
const CURRENT_TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::uuid";

const CREATE_ROLES: &str = r#"
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailsensor_tenant') THEN
        CREATE ROLE mailsensor_tenant NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailsensor_platform') THEN
        CREATE ROLE mailsensor_platform NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'mailsensor_api') THEN
        CREATE ROLE mailsensor_api LOGIN NOINHERIT;
    END IF;
EXCEPTION
    WHEN duplicate_object THEN NULL; -- another migrator created them at the same moment
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'mailsensor migrations need CREATEROLE to create the roles mailsensor_tenant, mailsensor_platform and mailsensor_api, or a DBA creates them first (docs/operations.md, "Setting up the database")'
            USING HINT = 'Run migrations as a role with CREATEROLE, or have a DBA create them first (docs/operations.md, "Setting up the database").';
END
$$
"#;

/// The server logs in as mailsensor_api and the migrator may run it too (a trial with one URL):
/// both must be able to take either role (a superuser migrator can already). Only memberships that
/// are missing are granted: a GRANT of a role needs its admin option (or CREATEROLE), which an
/// owner does not need once a DBA has created the roles and granted them. With CREATEROLE or as a
/// superuser the outcome is the same as granting unconditionally.
const GRANT_MEMBERSHIPS: &str = r#"
DO $$
DECLARE
    grantee text;
    granted text;
BEGIN
    FOREACH grantee IN ARRAY ARRAY['mailsensor_api', current_user::text] LOOP
        CONTINUE WHEN grantee = current_user::text AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
        FOREACH granted IN ARRAY ARRAY['mailsensor_tenant', 'mailsensor_platform'] LOOP
            IF NOT pg_has_role(grantee, granted, 'MEMBER') THEN
                EXECUTE format('GRANT %I TO %I', granted, grantee);
            END IF;
        END LOOP;
    END LOOP;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'mailsensor migrations could not make mailsensor_api and % members of mailsensor_tenant and mailsensor_platform (%); a DBA grants that first (docs/operations.md, "Setting up the database")', current_user, SQLERRM
            USING HINT = 'Run migrations as a role with CREATEROLE, or have a DBA grant the memberships first (docs/operations.md, "Setting up the database").';
END
$$
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_ROLES).await?;
        db.execute_unprepared(GRANT_MEMBERSHIPS).await?;
        db.execute_unprepared(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO mailsensor_tenant, mailsensor_platform",
        )
        .await?;
        db.execute_unprepared(
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO mailsensor_tenant, mailsensor_platform",
        )
        .await?;
        // Readiness reads which migrations are applied before any transaction takes a role.
        db.execute_unprepared("GRANT SELECT ON seaql_migrations TO mailsensor_api").await?;
        for (table, condition) in TENANT_TABLES {
            let condition = condition.replace("{tenant}", CURRENT_TENANT);
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
                 CREATE POLICY tenant_rows ON {table} TO mailsensor_tenant USING ({condition}) WITH CHECK ({condition});
                 CREATE POLICY platform_rows ON {table} TO mailsensor_platform USING (true) WITH CHECK (true);"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (table, _) in TENANT_TABLES {
            db.execute_unprepared(&format!(
                "DROP POLICY IF EXISTS tenant_rows ON {table};
                 DROP POLICY IF EXISTS platform_rows ON {table};
                 ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
                 ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;"
            ))
            .await?;
        }
        // The roles are cluster-wide and may serve other databases: they stay.
        Ok(())
    }
}
