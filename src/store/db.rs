use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    DbErr, IsolationLevel, Statement, TransactionTrait,
};
use uuid::Uuid;

use super::StoreError;

/// Opens a pool. A SQLite URL without a mode gets `mode=rwc`, so `mailsensor dev` creates its file.
///
/// SQLite gets one connection: two of its deferred transactions that both read and then write
/// fail with SQLITE_BUSY instead of waiting, so the embedded database serialises every use.
///
/// On PostgreSQL a connection that lands on a read-only server (a standby, e.g. behind a proxy
/// that has not yet noticed a failover) is refused when it is made, so the pool only ever holds
/// connections to the primary; connecting gives up after 5 s.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, max_connections, None).await
}

/// [`connect`], with every statement cut off after `statement_timeout` (PostgreSQL): the server's
/// pool, so nothing waits forever on a database host that stopped answering.
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> Result<DatabaseConnection, DbErr> {
    let sqlite = url.starts_with("sqlite:");
    let max_connections = if sqlite { 1 } else { max_connections };
    let url = if sqlite && !url.contains("mode=") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}mode=rwc")
    } else {
        url.to_owned()
    };
    let peers = match sqlite {
        true => Vec::new(),
        false => super::no_delay::database_addresses(&url).await,
    };
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .min_connections(1)
        // Waiting for a connection ends, like connecting, after 5 s: the pool retries connecting
        // until then, and the retry budget (`run_in`) decides how long a request goes on trying.
        .acquire_timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if let Some(timeout) = statement_timeout {
        options.statement_timeout(timeout);
    }
    if !sqlite {
        let peers = std::sync::Arc::new(peers);
        options.map_sqlx_postgres_pool_opts(move |pool| {
            let peers = peers.clone();
            pool.after_connect(move |conn, _| {
                super::no_delay::set_to(&peers);
                Box::pin(refuse_a_standby(conn))
            })
        });
    }
    Database::connect(options).await
}

/// Fails a new connection to a server in recovery (a standby): it could not take a write.
async fn refuse_a_standby(conn: &mut sea_orm::sqlx::PgConnection) -> Result<(), sea_orm::sqlx::Error> {
    let standby: bool = sea_orm::sqlx::query_scalar("SELECT pg_is_in_recovery()").fetch_one(conn).await?;
    if standby {
        return Err(sea_orm::sqlx::Error::Protocol(
            "the server is a read-only standby, not the primary; connecting again".into(),
        ));
    }
    Ok(())
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// Ready = the database answers and no migration is pending.
///
/// Reads the bookkeeping table directly: the migrator's own check creates the table if missing,
/// which the server's role (`mailsensor_api`) may not do.
pub async fn is_ready(db: &DatabaseConnection) -> Result<(), String> {
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT version FROM seaql_migrations"))
        .await
        .map_err(|e| format!("cannot read which migrations are applied: {e}"))?;
    let applied: std::collections::HashSet<String> =
        rows.iter().filter_map(|r| r.try_get::<String>("", "version").ok()).collect();
    let pending = Migrator::migrations().iter().filter(|m| !applied.contains(m.name())).count();
    if pending == 0 { Ok(()) } else { Err(format!("{pending} migrations pending")) }
}

/// Whose rows a transaction may touch. On PostgreSQL each is a role under row-level security
/// (migration `row_level_security`), taken for the transaction only; SQLite has no roles and
/// relies on the queries' own filters alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// One tenant's rows (`mailsensor_tenant` with `app.tenant_id` set): everything a request
    /// or a worker does on behalf of a tenant.
    Tenant(Uuid),
    /// Every tenant's rows (`mailsensor_platform`): only the named cross-tenant paths — the
    /// operator's tenant list and name lookup, the stream tailer, housekeeping.
    Platform,
}

/// The role a [`Reach::Tenant`] transaction takes (migration `row_level_security`).
const TENANT_ROLE: &str = "mailsensor_tenant";
/// The role a [`Reach::Platform`] transaction takes.
const PLATFORM_ROLE: &str = "mailsensor_platform";

/// How a transaction is opened, beyond whom it acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Read committed, and its commit waits for the WAL flush: the default.
    Durable,
    /// One repeatable-read, read-only snapshot (PostgreSQL; SQLite transactions are serialised
    /// anyway and reject the setting).
    Snapshot,
    /// Its commit returns before its WAL record is flushed — only for work that is redone when
    /// lost (the scan queue: a lost verdict leaves the message pending, to be scanned again).
    Redoable,
}

/// Opens a transaction that acts as `reach`, once.
async fn begin_once(db: &DatabaseConnection, reach: Reach, mode: Mode) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return db.begin().await;
    }
    let txn = match mode {
        Mode::Snapshot => {
            db.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await?
        }
        Mode::Durable | Mode::Redoable => db.begin().await?,
    };
    let (role, tenant) = match reach {
        Reach::Tenant(tenant) => (TENANT_ROLE, tenant.to_string()),
        Reach::Platform => (PLATFORM_ROLE, String::new()),
    };
    // Every setting is local to the transaction: the pooled connection goes back as it came.
    let sql = match mode {
        Mode::Redoable => {
            "SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true), \
             set_config('synchronous_commit', 'off', true)"
        }
        Mode::Durable | Mode::Snapshot => "SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)",
    };
    txn.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, [role.into(), tenant.into()]))
        .await?;
    Ok(txn)
}

/// Narrows a transaction begun with [`Reach::Platform`] to one tenant's rows from here on (a
/// cross-tenant claim that then works on one tenant's data, under row-level security).
pub(super) async fn narrow_to_tenant(txn: &DatabaseTransaction, tenant: Uuid) -> Result<(), DbErr> {
    if txn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let sql = "SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)";
    let values = [TENANT_ROLE.into(), tenant.to_string().into()];
    txn.execute_raw(Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)).await?;
    Ok(())
}

/// Turns PostgreSQL's bitmap scans off (or back on) for the rest of `txn`. Where a day's
/// partition has no statistics yet (or autovacuum is off), PostgreSQL picks a bitmap scan for
/// reads that must walk an index in its order and stop early (the scan queue's claim, a
/// retro-hunt's chunks); the callers say why at their call. Nothing on SQLite.
pub(super) async fn bitmap_scans(txn: &impl ConnectionTrait, on: bool) -> Result<(), DbErr> {
    if txn.get_database_backend() == DatabaseBackend::Postgres {
        txn.execute_unprepared(if on {
            "SET LOCAL enable_bitmapscan = on"
        } else {
            "SET LOCAL enable_bitmapscan = off"
        })
        .await?;
    }
    Ok(())
}

/// `column = 'value'` with the value written into the statement, not bound as a parameter: for
/// the comparisons that are a partial index's predicate (the scan queue's `verdict = 'pending'`,
/// the outbox's `state = 'pending'`). A prepared statement runs on PostgreSQL's generic plan once
/// that looks no dearer than the custom ones, and a generic plan cannot prove a predicate from
/// `$1`: the scan queue's claim then walked today's partition by its primary key, past every
/// message already scanned (4,000 rows a claim, 9.6 ms, a third of a core at ~950 rescans/s in
/// `SOURCE=requeue bench/alerts.sh`), and the depth gauges counted their whole tables every second.
pub(super) fn equals_literal(
    column: impl sea_orm::sea_query::IntoColumnRef,
    value: &'static str,
) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::{Expr, ExprTrait};
    debug_assert!(value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{value:?} is not a plain word");
    Expr::col(column).eq(Expr::cust(format!("'{value}'")))
}

/// How long a transaction that could not run (the connection went, the server is a standby, a
/// serialization failure) is tried again before [`StoreError::Unavailable`] (milliseconds).
static RETRY_BUDGET_MS: AtomicU64 = AtomicU64::new(10_000);

/// Sets how long [`run_in`] keeps trying a transaction that could not run (`serve
/// --database-retry-budget-secs`): about as long as a failover takes.
pub fn set_retry_budget(budget: Duration) {
    RETRY_BUDGET_MS.store(u64::try_from(budget.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Opens a transaction that acts as `reach`, trying again while no writable database answers (the
/// connection refused, the server a read-only standby, a failover under way) for up to the
/// retry budget; past it, [`StoreError::Unavailable`].
pub(super) async fn begin(
    db: &DatabaseConnection,
    reach: Reach,
    mode: Mode,
) -> Result<DatabaseTransaction, StoreError> {
    let mut backoff = Backoff::new();
    loop {
        match begin_once(db, reach, mode).await.map_err(StoreError::from) {
            Err(StoreError::Unavailable(why)) if backoff.wait(&why).await => {}
            other => return other,
        }
    }
}

/// The pauses between tries of what could not run: 50 ms, 100 ms … at most 1 s apart, until the
/// retry budget is spent.
struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { deadline: Instant::now() + retry_budget(), pause: Duration::from_millis(50) }
    }

    /// Waits before the next try and says `true`, or says `false` when the budget would run out.
    async fn wait(&mut self, why: &str) -> bool {
        if Instant::now() + self.pause >= self.deadline {
            return false;
        }
        tracing::debug!(error = %why, "the database could not run a transaction; trying it again");
        metrics::counter!("mailsensor_database_retries_total").increment(1);
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        true
    }
}

fn retry_budget() -> Duration {
    Duration::from_millis(RETRY_BUDGET_MS.load(Ordering::Relaxed))
}

/// Runs `work` in one transaction acting as `reach`, committed if it succeeds. Opening it waits
/// out a failover ([`begin`]); a failure after that is the caller's, as
/// [`StoreError::Unavailable`] when the database went away mid-way ([`run_retried`] runs the whole
/// transaction again instead).
pub(super) async fn run_in<T>(
    db: &DatabaseConnection,
    reach: Reach,
    mode: Mode,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let txn = begin(db, reach, mode).await?;
    let out = work(&txn).await?;
    txn.commit().await?;
    Ok(out)
}

/// Runs `work` in one durable transaction acting as `reach`; one that could not run — its
/// connection went (a failover, a restart), it landed on a read-only standby, it lost a
/// serialization race — is run again whole, after 50 ms, 100 ms … (at most 1 s apart), within the
/// retry budget; past it, [`StoreError::Unavailable`]. A commit that fails that way is not run
/// again: whether it took effect is unknown, and the caller's own retry (an idempotent hand-off, a
/// client's) must settle it.
pub(super) async fn run_retried<T>(
    db: &DatabaseConnection,
    reach: Reach,
    work: impl AsyncFn(&DatabaseTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut backoff = Backoff::new();
    loop {
        let failed = match begin_once(db, reach, Mode::Durable).await {
            Err(e) => StoreError::from(e),
            Ok(txn) => match work(&txn).await {
                Ok(out) => return txn.commit().await.map(|()| out).map_err(StoreError::from),
                // Dropping the transaction rolls it back.
                Err(e) => e,
            },
        };
        match failed {
            StoreError::Unavailable(why) if backoff.wait(&why).await => {}
            e => return Err(e),
        }
    }
}

/// [`run_in`] a durable transaction.
pub(super) async fn run<T>(
    db: &DatabaseConnection,
    reach: Reach,
    work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_in(db, reach, Mode::Durable, work).await
}

/// [`run_retried`] for one tenant: what a request or a worker does on behalf of a tenant is run
/// again whole when it could not run (a failover), within the retry budget.
pub(super) async fn as_tenant<T>(
    db: &DatabaseConnection,
    tenant: Uuid,
    work: impl AsyncFn(&DatabaseTransaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    run_retried(db, Reach::Tenant(tenant), work).await
}

/// A read prepared once per pooled connection (SQL `PREPARE`), for [`read_at_once`].
pub(super) struct PreparedRead {
    /// Unique among the prepared reads; `sqlx_*` names are sqlx's own.
    pub name: &'static str,
    /// The parameters' types, e.g. `(uuid, uuid)`.
    pub types: &'static str,
    /// The query, with `$1`, `$2` … for the parameters.
    pub sql: &'static str,
}

/// A hot read as `tenant` in one round trip (PostgreSQL only): one multi-statement simple query
/// opens a transaction, takes the role and the tenant for it with `SET LOCAL`, runs the prepared
/// `read` and commits. A connection that has not prepared it yet prepares it in the same round
/// trip, after one miss.
///
/// A connection goes back to the pool only after a read on it succeeded: one on which a read
/// failed, or was dropped half way (the client went away), may be left inside a transaction, and is
/// closed instead ([`ClosedUnlessDone`]). The simple protocol takes no bound parameters, so the
/// arguments are inlined: they are ids formatted from [`Uuid`]s, never a client's text.
pub(super) async fn read_at_once(
    db: &DatabaseConnection,
    tenant: Uuid,
    read: &PreparedRead,
    args: &[Uuid],
) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
    use sea_orm::sqlx;
    let args: Vec<String> = args.iter().map(|id| format!("'{id}'")).collect();
    let begin = format!("BEGIN; SET LOCAL ROLE {TENANT_ROLE}; SET LOCAL app.tenant_id = '{tenant}';");
    let execute = format!("EXECUTE {}({}); COMMIT;", read.name, args.join(", "));
    let pool = db.get_postgres_connection_pool();
    let conn = pool.acquire().await.map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    let mut conn = ClosedUnlessDone(Some(conn));
    // One connection for both tries, so the second prepares where the first missed.
    let mut rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{begin} {execute}"))).fetch_all(conn.get()).await;
    if let Err(sqlx::Error::Database(e)) = &rows
        && e.code().as_deref() == Some("26000")
    {
        let prepare = format!("PREPARE {}{} AS {};", read.name, read.types, read.sql);
        let again = format!("ROLLBACK; {begin} {prepare} {execute}");
        rows = sqlx::raw_sql(sqlx::AssertSqlSafe(again)).fetch_all(conn.get()).await;
    }
    let rows = rows.map_err(|e| DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    conn.done();
    Ok(rows.into_iter().map(sea_orm::QueryResult::from).collect())
}

/// A pooled connection that is closed when dropped, unless [`ClosedUnlessDone::done`] said it
/// is back in a clean state.
struct ClosedUnlessDone(Option<sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Postgres>>);

impl ClosedUnlessDone {
    fn get(&mut self) -> &mut sea_orm::sqlx::PgConnection {
        self.0.as_mut().expect("the connection is held until done")
    }

    /// Returns the connection to the pool.
    fn done(mut self) {
        drop(self.0.take());
    }
}

impl Drop for ClosedUnlessDone {
    fn drop(&mut self) {
        if let Some(conn) = self.0.as_mut() {
            conn.close_on_drop();
        }
    }
}
