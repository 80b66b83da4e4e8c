//! Mail expires: what a tenant keeps, and the expiry run that removes the rest.
//!
//! A tenant's messages (their content and scan results with them), the retro-hunt results about
//! them and its alert events are kept for its retention: the days its administrator chose within
//! the platform cap, or the platform default. An expiry run (every replica, every
//! [`EXPIRE_EVERY`]; migration `retention` says how the tables are laid out):
//!
//! 1. makes the days of `messages` ahead (PostgreSQL: one partition per day, a week ahead);
//! 2. drops every day older than the longest retention any tenant has — a `DROP TABLE` per day,
//!    whatever it held (PostgreSQL);
//! 3. deletes, tenant by tenant, what is older than that tenant's own retention and was not in a
//!    dropped day, in transactions of at most [`BATCH`] rows (SQLite: everything goes this way);
//! 4. trims the message keys (`message_keys`) to the dedup window.
//!
//! All of it runs on the platform path or in the tenant's own context; `now` is a parameter so a
//! test (or a benchmark) can run it as of a later day.
use chrono::{DateTime, Duration, NaiveDate, Utc};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter,
    QuerySelect, Set, Statement,
};
use uuid::Uuid;

use super::db::{Reach, as_tenant, run};
use super::entity::{alert_attempt, alert_event, message, message_key, retrohunt_match, tenant};
use super::{Actor, StoreError};

/// How often each replica runs the expiry: well within the hour the retention promises.
pub const EXPIRE_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Rows per transaction when deleting: bounded, so no transaction holds many locks or much WAL.
pub const BATCH: u64 = 1000;
/// Days of `messages` made ahead of today.
const DAYS_AHEAD: i64 = 7;

/// The operator's bounds: a tenant chooses within `1..=max_days`; `default_days` is the choice of
/// a tenant that made none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub default_days: u32,
    pub max_days: u32,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy { default_days: 30, max_days: 90 }
    }
}

impl RetentionPolicy {
    /// The days a tenant's mail is kept: its choice (clamped to a cap lowered since), or the default.
    pub fn days(&self, chosen: Option<i32>) -> u32 {
        chosen.map_or(self.default_days, |d| u32::try_from(d).unwrap_or(1)).clamp(1, self.max_days.max(1))
    }
}

/// A tenant's retention as stored: its choice (`None`: the platform default) and the version of
/// the tenant's settings (for `ETag`/`If-Match`: the time of their last change, in microseconds).
pub async fn chosen(db: &DatabaseConnection, tenant: Uuid) -> Result<(Option<i32>, i64), StoreError> {
    as_tenant(db, tenant, async |txn| {
        let row = tenant::Entity::find_by_id(tenant).one(txn).await?.ok_or(StoreError::NotFound("tenant"))?;
        Ok((row.message_retention_days, row.updated_at.timestamp_micros()))
    })
    .await
}

/// The `ETag` of a tenant's settings at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Sets (or, with `None`, clears) a tenant's retention, if its settings are still at `expected`
/// (when given); audited. Returns the new version. The caller checked the bounds.
pub async fn choose(
    db: &DatabaseConnection,
    tenant: Uuid,
    days: Option<i32>,
    expected: Option<i64>,
    actor: &Actor,
) -> Result<i64, StoreError> {
    as_tenant(db, tenant, async |txn| {
        let mut find = tenant::Entity::find_by_id(tenant);
        if txn.get_database_backend() == DatabaseBackend::Postgres {
            find = find.lock_exclusive();
        }
        let row = find.one(txn).await?.ok_or(StoreError::NotFound("tenant"))?;
        let version = row.updated_at.timestamp_micros();
        if expected.is_some_and(|e| e != version) {
            return Err(StoreError::Stale { current_etag: etag(version) });
        }
        let before = row.message_retention_days;
        let mut active: tenant::ActiveModel = row.into();
        active.message_retention_days = Set(days);
        // A new version even within the same microsecond as the last (a clock that did not move).
        let now = super::now().max(chrono::DateTime::from_timestamp_micros(version + 1).unwrap_or_default());
        active.updated_at = Set(now);
        active.update(txn).await?;
        super::audit::record(
            txn,
            actor,
            super::audit::AuditEntry {
                tenant,
                action: "tenant.retention",
                target_type: "tenant",
                target_id: tenant,
                sensor_id: None,
                before: Some(serde_json::json!({"message_retention_days": before})),
                after: Some(serde_json::json!({"message_retention_days": days})),
            },
        )
        .await?;
        Ok(now.timestamp_micros())
    })
    .await
}

/// What an expiry run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Days of `messages` dropped whole (PostgreSQL).
    pub days_dropped: u64,
    pub messages: u64,
    pub retrohunt_matches: u64,
    pub alert_events: u64,
    pub alert_attempts: u64,
    pub keys: u64,
}

/// The smallest UUIDv7 of `at`: every id made at or after `at` sorts at or above it.
pub fn uuid_at(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// One expiry run as of `now`; `keys_kept` is the dedup window (how long a message's keys must
/// still recognise a retry).
pub async fn expire(
    db: &DatabaseConnection,
    policy: RetentionPolicy,
    keys_kept: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Expired, StoreError> {
    let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
    let mut expired = Expired::default();
    if postgres {
        make_days(db, (now - Duration::days(1)).date_naive(), (now + Duration::days(DAYS_AHEAD)).date_naive()).await?;
    }
    let tenants = run(db, Reach::Platform, async |txn| {
        Ok(tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .column(tenant::Column::MessageRetentionDays)
            .into_tuple::<(Uuid, Option<i32>)>()
            .all(txn)
            .await?)
    })
    .await?;
    let longest = tenants.iter().map(|(_, chosen)| policy.days(*chosen)).max().unwrap_or(policy.max_days);
    if postgres {
        let before = (now - Duration::days(i64::from(longest))).date_naive();
        expired.days_dropped = drop_days(db, before).await?;
    }
    for (tenant, chosen) in tenants {
        let cutoff = now - Duration::days(i64::from(policy.days(chosen)));
        let by_id = postgres.then(|| uuid_at(cutoff));
        expired.messages += in_batches(db, Reach::Tenant(tenant), |limit| {
            let mut older = Query::select()
                .column(message::Column::Id)
                .from(message::Entity)
                .and_where(message::Column::TenantId.eq(tenant))
                .limit(limit)
                .to_owned();
            match by_id {
                // The id's own order: the index on (tenant_id, id) and the partitions' bounds.
                Some(bound) => older.and_where(message::Column::Id.lt(bound)),
                None => older.and_where(message::Column::ReceivedAt.lt(cutoff)),
            };
            message::Entity::delete_many().filter(message::Column::Id.in_subquery(older))
        })
        .await?;
        expired.retrohunt_matches += rows_of::<retrohunt_match::Entity>(
            db,
            tenant,
            [retrohunt_match::Column::Id, retrohunt_match::Column::TenantId],
            Some((retrohunt_match::Column::ReceivedAt, cutoff)),
        )
        .await?;
        expired.alert_events += rows_of::<alert_event::Entity>(
            db,
            tenant,
            [alert_event::Column::Id, alert_event::Column::TenantId],
            Some((alert_event::Column::OccurredAt, cutoff)),
        )
        .await?;
        expired.alert_attempts += rows_of::<alert_attempt::Entity>(
            db,
            tenant,
            [alert_attempt::Column::Id, alert_attempt::Column::TenantId],
            Some((alert_attempt::Column::AttemptedAt, cutoff)),
        )
        .await?;
    }
    let keys_cutoff = now - Duration::from_std(keys_kept).unwrap_or(Duration::days(1));
    expired.keys = in_batches(db, Reach::Platform, |limit| {
        let older = Query::select()
            .column(message_key::Column::MessageId)
            .from(message_key::Entity)
            .and_where(message_key::Column::ReceivedAt.lt(keys_cutoff))
            .limit(limit)
            .to_owned();
        message_key::Entity::delete_many().filter(message_key::Column::MessageId.in_subquery(older))
    })
    .await?;
    Ok(expired)
}

/// Deletes, a batch at a time in the tenant's own context, the rows of `E` whose tenant column
/// (`[id, tenant]` name the two columns) is `tenant` and, if given, whose time column is before the
/// cutoff. Returns how many went.
pub(super) async fn rows_of<E: EntityTrait>(
    db: &DatabaseConnection,
    tenant: Uuid,
    [id, tenant_column]: [E::Column; 2],
    older: Option<(E::Column, DateTime<Utc>)>,
) -> Result<u64, StoreError> {
    in_batches(db, Reach::Tenant(tenant), |limit| {
        let mut batch =
            Query::select().column(id).from(E::default()).and_where(tenant_column.eq(tenant)).limit(limit).to_owned();
        if let Some((at, cutoff)) = older {
            batch.and_where(at.lt(cutoff));
        }
        E::delete_many().filter(id.in_subquery(batch))
    })
    .await
}

/// Runs the delete `batch(BATCH)` builds, one transaction each, until one removes fewer than
/// [`BATCH`] rows; returns how many went in all.
pub(super) async fn in_batches<E: EntityTrait>(
    db: &DatabaseConnection,
    reach: Reach,
    batch: impl Fn(u64) -> sea_orm::DeleteMany<E>,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let delete = batch(BATCH);
        let removed = run(db, reach, async |txn| Ok(delete.exec(txn).await?.rows_affected)).await?;
        total += removed;
        if removed < BATCH {
            return Ok(total);
        }
    }
}

/// Makes the days `first..=last` of `messages` (and of `message_chunks`) that do not exist yet.
pub async fn make_days(db: &DatabaseConnection, first: NaiveDate, last: NaiveDate) -> Result<u64, StoreError> {
    let made = run(db, Reach::Platform, async |txn| {
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT mailsensor_message_partitions($1, $2)::bigint AS made",
                [first.into(), last.into()],
            ))
            .await?;
        Ok(row.and_then(|r| r.try_get::<i64>("", "made").ok()).unwrap_or(0))
    })
    .await?;
    Ok(u64::try_from(made).unwrap_or(0))
}

/// Drops the days of `messages` that end on or before `before` (their content first).
async fn drop_days(db: &DatabaseConnection, before: NaiveDate) -> Result<u64, StoreError> {
    let dropped = run(db, Reach::Platform, async |txn| {
        let row = txn
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT mailsensor_drop_message_partitions($1)::bigint AS dropped",
                [before.into()],
            ))
            .await?;
        Ok(row.and_then(|r| r.try_get::<i64>("", "dropped").ok()).unwrap_or(0))
    })
    .await?;
    Ok(u64::try_from(dropped).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_v7_sorts_after_the_bound_of_its_time_and_before_the_next_ms() {
        let now = Utc::now();
        let id = Uuid::now_v7();
        assert!(uuid_at(now - Duration::milliseconds(1)) <= id);
        assert!(id < uuid_at(now + Duration::seconds(1)));
        assert_eq!(
            uuid_at(DateTime::from_timestamp_millis(0x0123_4567_89ab).unwrap()).to_string(),
            "01234567-89ab-0000-0000-000000000000"
        );
    }

    #[test]
    fn a_choice_is_kept_within_the_cap() {
        let policy = RetentionPolicy { default_days: 30, max_days: 90 };
        assert_eq!(policy.days(None), 30);
        assert_eq!(policy.days(Some(7)), 7);
        assert_eq!(policy.days(Some(365)), 90, "a cap lowered since the choice clamps it");
        assert_eq!(RetentionPolicy { default_days: 30, max_days: 14 }.days(None), 14);
    }
}
