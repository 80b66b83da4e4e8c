//! Mail expires. Each tenant may choose its message retention (`tenants.message_retention_days`;
//! NULL: the platform default); a deleted tenant is marked (`tenants.erasing_since`) while its mail
//! is erased in the background; and on PostgreSQL `messages` and `message_chunks` become tables
//! partitioned by day, so the expiry of a whole day costs a `DROP TABLE`, whatever it held.
//!
//! - **The partition key is the id.** Message ids are UUIDv7, whose first 48 bits are the Unix
//!   time in milliseconds, and PostgreSQL orders UUIDs bytewise: a day is the id range
//!   [`mailsensor_uuid_at(day)`, `mailsensor_uuid_at(day + 1)`). So the primary key stays `(id)`,
//!   the chunks' foreign key stays `(message_id)` (the chunks are partitioned the same way), and
//!   every lookup by id prunes to one partition. A `DEFAULT` partition takes any id outside the
//!   days made so far (a clock far off), so an insert never fails for want of a partition.
//! - **The keys move out.** A unique index on a partitioned table must contain the partition key,
//!   so "one message per (sensor, idempotency key)" and "one per content key" cannot stay on
//!   `messages`: they live in `message_keys` (not partitioned, one row per message), which the
//!   intake writes in the same statement as the message and which is trimmed to the dedup window.
//!   A retry that crosses a day boundary (a partition boundary) still meets its key there.
//! - **Row-level security** is declared on the partitioned tables; queries go through them, and
//!   the roles hold no privilege on a partition itself, so no partition is reachable around it.
//! - **Partitions are made ahead and dropped** by `mailsensor_message_partitions(first, last)` and
//!   `mailsensor_drop_message_partitions(before)`, SECURITY DEFINER functions of the tables'
//!   owner (only an owner may attach or drop partitions), which `mailsensor_platform` may call.
//!
//! SQLite (`mailsensor dev`) gets `message_keys` and the retention column; its expiry deletes.
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    MessageRetentionDays,
    ErasingSince,
}

#[derive(DeriveIden)]
enum MessageKeys {
    Table,
    TenantId,
    SensorId,
    IdempotencyKey,
    ContentKey,
    MessageId,
    ReceivedAt,
}

/// The keys of the messages already stored, for both backends (the statement is portable).
const COPY_KEYS: &str =
    "INSERT INTO message_keys (tenant_id, sensor_id, idempotency_key, content_key, message_id, received_at)
     SELECT tenant_id, sensor_id, idempotency_key, content_key, id, received_at FROM messages";

const FUNCTIONS: &str = r#"
CREATE FUNCTION mailsensor_uuid_at(at timestamptz) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid $$;

CREATE FUNCTION mailsensor_message_partitions(first_day date, last_day date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    day date := first_day;
    made integer := 0;
BEGIN
    -- Replicas run this at the same moment: one at a time, so none trips over another's table.
    PERFORM pg_advisory_xact_lock(hashtext('mailsensor_message_partitions'));
    WHILE day <= last_day LOOP
        IF to_regclass('messages_p' || to_char(day, 'YYYYMMDD')) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES FROM (%L) TO (%L)',
                'messages_p' || to_char(day, 'YYYYMMDD'),
                mailsensor_uuid_at(day::timestamp AT TIME ZONE 'UTC'),
                mailsensor_uuid_at((day + 1)::timestamp AT TIME ZONE 'UTC'));
            EXECUTE format('CREATE TABLE %I PARTITION OF message_chunks FOR VALUES FROM (%L) TO (%L)',
                'message_chunks_p' || to_char(day, 'YYYYMMDD'),
                mailsensor_uuid_at(day::timestamp AT TIME ZONE 'UTC'),
                mailsensor_uuid_at((day + 1)::timestamp AT TIME ZONE 'UTC'));
            made := made + 1;
        END IF;
        day := day + 1;
    END LOOP;
    RETURN made;
END $$;

CREATE FUNCTION mailsensor_drop_message_partitions(before_day date) RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
    AS $$
DECLARE
    part record;
    dropped integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('mailsensor_message_partitions'));
    FOR part IN
        SELECT c.relname, substring(c.relname FROM 11) AS day
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'messages'::regclass AND c.relname ~ '^messages_p[0-9]{8}$'
           AND to_date(substring(c.relname FROM 11), 'YYYYMMDD') + 1 <= before_day
         ORDER BY c.relname
    LOOP
        -- The chunks first: the messages' partition is referenced by them until then.
        EXECUTE format('DROP TABLE IF EXISTS %I', 'message_chunks_p' || part.day);
        EXECUTE format('ALTER TABLE messages DETACH PARTITION %I', part.relname);
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

REVOKE ALL ON FUNCTION mailsensor_message_partitions(date, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION mailsensor_drop_message_partitions(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mailsensor_message_partitions(date, date) TO mailsensor_platform;
GRANT EXECUTE ON FUNCTION mailsensor_drop_message_partitions(date) TO mailsensor_platform;
"#;

/// `messages` and `message_chunks` as tables partitioned by day of their id, holding every row
/// they held before. Row security is lifted from the old tables first: the owner is bound by it
/// (`FORCE`) and could not read them otherwise.
const PARTITION: &str = r#"
ALTER TABLE messages NO FORCE ROW LEVEL SECURITY;
ALTER TABLE message_chunks NO FORCE ROW LEVEL SECURITY;
CREATE TABLE messages_partitioned (LIKE messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)
    PARTITION BY RANGE (id);
CREATE TABLE message_chunks_partitioned (LIKE message_chunks INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION)
    PARTITION BY RANGE (message_id);
CREATE TABLE messages_default PARTITION OF messages_partitioned DEFAULT;
CREATE TABLE message_chunks_default PARTITION OF message_chunks_partitioned DEFAULT;
ALTER TABLE messages RENAME TO messages_unpartitioned;
ALTER TABLE message_chunks RENAME TO message_chunks_unpartitioned;
ALTER TABLE messages_partitioned RENAME TO messages;
ALTER TABLE message_chunks_partitioned RENAME TO message_chunks;
-- The days that hold mail already, and the next week's.
SELECT mailsensor_message_partitions(
    LEAST((SELECT min(received_at) FROM messages_unpartitioned)::date, current_date - 1),
    current_date + 7);
INSERT INTO messages SELECT * FROM messages_unpartitioned;
INSERT INTO message_chunks SELECT * FROM message_chunks_unpartitioned;
DROP TABLE message_chunks_unpartitioned;
DROP TABLE messages_unpartitioned;

ALTER TABLE messages ADD CONSTRAINT messages_pkey PRIMARY KEY (id);
ALTER TABLE messages ADD CONSTRAINT fk_messages_tenant FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE;
CREATE INDEX ix_messages_tenant_id ON messages (tenant_id, id);
CREATE INDEX ix_messages_tenant_sensor ON messages (tenant_id, sensor_id, id);
CREATE INDEX ix_messages_tenant_verdict ON messages (tenant_id, verdict, id);
CREATE INDEX ix_messages_scan_queue ON messages (id) WHERE verdict = 'pending';
ALTER TABLE message_chunks ADD CONSTRAINT message_chunks_pkey PRIMARY KEY (message_id, seq);
ALTER TABLE message_chunks ADD CONSTRAINT fk_message_chunks_message
    FOREIGN KEY (message_id) REFERENCES messages (id) ON DELETE CASCADE;

GRANT SELECT, INSERT, UPDATE, DELETE ON messages, message_chunks, message_keys TO mailsensor_tenant, mailsensor_platform;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages FORCE ROW LEVEL SECURITY;
ALTER TABLE message_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_chunks FORCE ROW LEVEL SECURITY;
ALTER TABLE message_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON messages TO mailsensor_tenant USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant});
CREATE POLICY platform_rows ON messages TO mailsensor_platform USING (true) WITH CHECK (true);
CREATE POLICY tenant_rows ON message_chunks TO mailsensor_tenant
    USING (EXISTS (SELECT 1 FROM messages m WHERE m.id = message_chunks.message_id))
    WITH CHECK (EXISTS (SELECT 1 FROM messages m WHERE m.id = message_chunks.message_id));
CREATE POLICY platform_rows ON message_chunks TO mailsensor_platform USING (true) WITH CHECK (true);
CREATE POLICY tenant_rows ON message_keys TO mailsensor_tenant USING (tenant_id = {tenant}) WITH CHECK (tenant_id = {tenant});
CREATE POLICY platform_rows ON message_keys TO mailsensor_platform USING (true) WITH CHECK (true);
"#;

/// The tenant a transaction acts for; NULL (no rows match) when it was never set.
const CURRENT_TENANT: &str = "NULLIF(current_setting('app.tenant_id', true), '')::uuid";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(ColumnDef::new(Tenants::MessageRetentionDays).integer().null())
                    .to_owned(),
            )
            .await?;
        // A deleted tenant is gone from the API at once; its mail is erased in the background, in
        // batches, and the row goes last (`store::erasure`).
        manager
            .alter_table(
                Table::alter()
                    .table(Tenants::Table)
                    .add_column(ColumnDef::new(Tenants::ErasingSince).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MessageKeys::Table)
                    .col(ColumnDef::new(MessageKeys::TenantId).uuid().not_null())
                    .col(ColumnDef::new(MessageKeys::SensorId).uuid().not_null())
                    .col(ColumnDef::new(MessageKeys::IdempotencyKey).string_len(128).not_null())
                    .col(ColumnDef::new(MessageKeys::ContentKey).string_len(64).null())
                    .col(ColumnDef::new(MessageKeys::MessageId).uuid().not_null())
                    .col(ColumnDef::new(MessageKeys::ReceivedAt).timestamp_with_time_zone().not_null())
                    .primary_key(Index::create().col(MessageKeys::SensorId).col(MessageKeys::IdempotencyKey))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_message_keys_tenant")
                            .from(MessageKeys::Table, MessageKeys::TenantId)
                            .to(Tenants::Table, Tenants::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            // NULLs (no dedup) do not collide.
            (
                "ux_message_keys_content",
                vec![MessageKeys::TenantId, MessageKeys::SensorId, MessageKeys::ContentKey],
                true,
            ),
            ("ix_message_keys_message", vec![MessageKeys::MessageId], false),
            ("ix_message_keys_received", vec![MessageKeys::ReceivedAt], false),
        ] {
            let mut index = Index::create().name(name).table(MessageKeys::Table).to_owned();
            for column in columns {
                index.col(column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index).await?;
        }
        let db = manager.get_connection();
        db.execute_unprepared(COPY_KEYS).await?;
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            for index in ["ux_messages_content_key", "ux_messages_sensor_idempotency"] {
                manager.drop_index(Index::drop().name(index).table(Alias::new("messages")).to_owned()).await?;
            }
            return Ok(());
        }
        db.execute_unprepared(FUNCTIONS).await?;
        db.execute_unprepared(&PARTITION.replace("{tenant}", CURRENT_TENANT)).await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Un-partitioning is a restore from a backup taken before the upgrade (docs/operations.md).
        Err(DbErr::Migration("the partitioning of messages cannot be undone in place; restore a backup".into()))
    }
}
