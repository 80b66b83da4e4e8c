//! Row-level security on PostgreSQL: the database keeps tenants apart even where a query forgets
//! its own `tenant_id` filter. Every other test already runs the server as `mailsensor_api`;
//! these issue deliberately unfiltered SQL as that role, the way a bug would.
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait};
use uuid::Uuid;

use crate::helpers::*;

const PG: sea_orm::DatabaseBackend = sea_orm::DatabaseBackend::Postgres;

/// Every table that holds tenant rows: all tables but the migration bookkeeping and the one
/// platform-wide revision head. Read from the catalog, so a new table is covered (and must have
/// its policies) without anyone editing this test.
async fn tenant_tables(owner: &DatabaseConnection) -> Vec<String> {
    let rows = owner
        .query_all_raw(Statement::from_string(
            PG,
            "SELECT relname::text AS name FROM pg_class
             WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition
               AND relname NOT IN ('seaql_migrations', 'revision_head')
             ORDER BY relname",
        ))
        .await
        .unwrap();
    rows.iter().map(|r| r.try_get::<String>("", "name").unwrap()).collect()
}

/// A connection as the server logs in, and a transaction on it that took `role` (and, if given,
/// the tenant) exactly as the store's paths do.
async fn as_role(w: &World, role: &str, tenant: Option<Uuid>) -> (DatabaseConnection, DatabaseTransaction) {
    let api = sea_orm::Database::connect(as_api_role(&w.app.url)).await.unwrap();
    let txn = api.begin().await.unwrap();
    txn.execute_raw(Statement::from_sql_and_values(
        PG,
        "SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)",
        [role.into(), tenant.map(|t| t.to_string()).unwrap_or_default().into()],
    ))
    .await
    .unwrap();
    (api, txn)
}

async fn count(conn: &impl ConnectionTrait, sql: &str) -> Result<i64, DbErr> {
    let row = conn.query_one_raw(Statement::from_string(PG, sql.to_owned())).await?.unwrap();
    row.try_get::<i64>("", "n")
}

async fn affected(conn: &impl ConnectionTrait, sql: String) -> u64 {
    conn.execute_raw(Statement::from_string(PG, sql)).await.unwrap().rows_affected()
}

/// Tenants A and B with messages (so `messages` and `message_chunks` hold rows of both).
async fn populated() -> (World, Uuid) {
    let w = world(Backend::Postgres).await;
    message_of(&w, &w.a, w.a.pcn_sensor).await;
    let b_message = message_of(&w, &w.b, w.b.pcn_sensor).await;
    for (tenant, sensor) in [(&w.a, w.a.pcn_sensor), (&w.b, w.b.pcn_sensor)] {
        let path = format!("/v1/sensors/{sensor}/workers/w1");
        let r = w.app.put(&path, &w.sensor_token(tenant, sensor), serde_json::json!({"version": "1"})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        // A detection ruleset, and so a row of its history.
        let officer = w.member(tenant, mailsensor::auth::Role::SeniorSecurityOfficer, tenant.pcn);
        let rulesets = format!("/v1/tenants/{}/detection-rulesets", tenant.id);
        let body = serde_json::json!({"name": "rows", "source": "rule rows { condition: true }"});
        let r = w.app.post(&rulesets, &officer, body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        // A retro-hunt that matches the tenant's message, and so a row of its results.
        let hunt = serde_json::json!({"source": "rule rows { condition: true }",
            "since": "2026-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"});
        let r = w.app.post(&format!("/v1/tenants/{}/retrohunts", tenant.id), &officer, hunt).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let path = r.header("location").unwrap().to_owned();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while w.app.get(&path, &officer).await.body["progress"]["matches"].as_i64() < Some(1) {
            assert!(std::time::Instant::now() < deadline, "the retro-hunt found nothing");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // An alert destination, a test event (and the tenant's sequence), its delivery, and an
        // attempt: loopback without the operator's flag, refused at once and logged.
        let admin = w.member(tenant, mailsensor::auth::Role::Administrator, tenant.pcn);
        let destinations = format!("/v1/tenants/{}/alert-destinations", tenant.id);
        let body = serde_json::json!({"name": "rows", "webhook": {"url": "http://localhost:1/hook"}});
        let r = w.app.post(&destinations, &admin, body).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let deliveries = format!("{destinations}/{}/deliveries", r.body["id"].as_str().unwrap());
        let r = w.app.post(&deliveries.replace("/deliveries", "/test"), &admin, serde_json::json!({})).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while w.app.get(&deliveries, &admin).await.body["items"][0]["log"].as_array().is_none_or(Vec::is_empty) {
            assert!(std::time::Instant::now() < deadline, "no delivery attempt was logged");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    (w, b_message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_table_is_bound_even_for_its_owner() {
    let w = world(Backend::Postgres).await;
    let tables = tenant_tables(&w.app.owner).await;
    assert!(tables.len() >= 10, "{tables:?}");
    for table in &tables {
        let bound = count(
            &w.app.owner,
            &format!(
                "SELECT count(*) AS n FROM pg_class c
                 WHERE c.oid = 'public.{table}'::regclass AND c.relrowsecurity AND c.relforcerowsecurity
                   AND (SELECT count(*) FROM pg_policies p WHERE p.tablename = '{table}'
                        AND p.policyname IN ('tenant_rows', 'platform_rows')) = 2"
            ),
        )
        .await
        .unwrap();
        assert_eq!(bound, 1, "table {table} lacks FORCE ROW LEVEL SECURITY or its two policies");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_role_alone_may_not_read_any_table() {
    let (w, _) = populated().await;
    let api = sea_orm::Database::connect(as_api_role(&w.app.url)).await.unwrap();
    for table in tenant_tables(&w.app.owner).await {
        let refused = count(&api, &format!("SELECT count(*) AS n FROM {table}")).await;
        let error = refused.expect_err(&format!("mailsensor_api read {table} without taking a role"));
        assert!(error.to_string().contains("permission denied"), "{table}: {error}");
    }
}

/// The days of `messages` and `message_chunks` (their partitions) are reachable only through the
/// tables, whose row security they would otherwise get around: neither role may read one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_reachable_only_through_their_table() {
    let (w, _) = populated().await;
    let rows = w
        .app
        .owner
        .query_all_raw(Statement::from_string(
            PG,
            "SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent IN ('messages'::regclass, 'message_chunks'::regclass) ORDER BY 1",
        ))
        .await
        .unwrap();
    let partitions: Vec<String> = rows.iter().map(|r| r.try_get::<String>("", "name").unwrap()).collect();
    assert!(partitions.len() >= 2 * 9, "a default and the days around today, twice: {partitions:?}");
    for role in ["mailsensor_tenant", "mailsensor_platform"] {
        for partition in &partitions {
            let (_api, txn) = as_role(&w, role, Some(w.a.id)).await;
            let refused = count(&txn, &format!("SELECT count(*) AS n FROM {partition}")).await;
            let error = refused.expect_err(&format!("{role} read {partition} directly"));
            assert!(error.to_string().contains("permission denied"), "{partition}: {error}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_tenant_set_no_row_is_visible() {
    let (w, _) = populated().await;
    let (_api, txn) = as_role(&w, "mailsensor_tenant", None).await;
    let (_api2, platform) = as_role(&w, "mailsensor_platform", None).await;
    for table in tenant_tables(&w.app.owner).await {
        let sql = format!("SELECT count(*) AS n FROM {table}");
        assert_eq!(count(&txn, &sql).await.unwrap(), 0, "{table} shows rows with no tenant set");
        // The rows are there: the platform path sees them.
        assert!(count(&platform, &sql).await.unwrap() > 0, "{table} is empty: the test proves nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_context_binds_queries_that_forget_their_filter() {
    let (w, b_message) = populated().await;
    let (a, b) = (w.a.id, w.b.id);
    let (_api, txn) = as_role(&w, "mailsensor_tenant", Some(a)).await;

    // Reads: no WHERE tenant_id at all, and still only A's rows.
    for table in tenant_tables(&w.app.owner).await {
        let column = if table == "tenants" { "id" } else { "tenant_id" };
        if table == "message_chunks" {
            let all = count(&txn, "SELECT count(*) AS n FROM message_chunks").await.unwrap();
            let own = count(
                &txn,
                &format!(
                    "SELECT count(*) AS n FROM message_chunks c JOIN messages m ON m.id = c.message_id
                     WHERE m.tenant_id = '{a}'"
                ),
            )
            .await
            .unwrap();
            assert!(all > 0 && all == own, "message_chunks: {all} visible, {own} of them A's");
            let foreign =
                count(&txn, &format!("SELECT count(*) AS n FROM message_chunks WHERE message_id = '{b_message}'"))
                    .await
                    .unwrap();
            assert_eq!(foreign, 0, "B's message content is readable in A's context");
            continue;
        }
        let visible = count(&txn, &format!("SELECT count(*) AS n FROM {table}")).await.unwrap();
        let others = count(&txn, &format!("SELECT count(*) AS n FROM {table} WHERE {column} <> '{a}'")).await.unwrap();
        assert!(visible > 0, "{table}: nothing of A visible, the test proves nothing");
        assert_eq!(others, 0, "{table}: another tenant's rows are visible in A's context");
    }

    // Writes aimed at B touch nothing, and a row claiming to be B's is refused.
    let s = w.b.pcn_sensor;
    assert_eq!(affected(&txn, format!("UPDATE sensors SET name = 'hijacked' WHERE id = '{s}'")).await, 0);
    assert_eq!(affected(&txn, "UPDATE smtp_settings SET enabled = false".into()).await, 2, "only A's two sensors");
    assert_eq!(affected(&txn, format!("DELETE FROM messages WHERE id = '{b_message}'")).await, 0);
    assert_eq!(affected(&txn, format!("DELETE FROM message_chunks WHERE message_id = '{b_message}'")).await, 0);
    assert_eq!(affected(&txn, format!("DELETE FROM tenants WHERE id = '{b}'")).await, 0);
    let smuggled = txn
        .execute_raw(Statement::from_string(
            PG,
            format!(
                "INSERT INTO nodes (id, tenant_id, kind, name, created_at)
                 VALUES ('{}', '{b}', 'scn', 'smuggled', now())",
                Uuid::now_v7()
            ),
        ))
        .await
        .expect_err("a row for tenant B was written in A's context");
    assert!(smuggled.to_string().contains("row-level security"), "{smuggled}");
    drop(txn);

    // B is untouched, as its owner sees it.
    let name = w
        .app
        .owner
        .query_one_raw(Statement::from_string(PG, format!("SELECT name FROM sensors WHERE id = '{s}'")))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "name")
        .unwrap();
    assert_eq!(name, "pcn-sensor");
    let kept = count(&w.app.owner, &format!("SELECT count(*) AS n FROM messages WHERE id = '{b_message}'")).await;
    assert_eq!(kept.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrations_owner_is_bound_too() {
    // A non-superuser owner (as in production) sees no tenant rows without taking a role.
    let (w, _) = populated().await;
    let owner_role = format!("mailsensor_owner_{}", Uuid::new_v4().simple());
    w.app.owner.execute_unprepared(&format!("CREATE ROLE {owner_role} LOGIN")).await.unwrap();
    for table in tenant_tables(&w.app.owner).await {
        w.app.owner.execute_unprepared(&format!("ALTER TABLE {table} OWNER TO {owner_role}")).await.unwrap();
    }
    let url = as_api_role(&w.app.url).replace("mailsensor_api@", &format!("{owner_role}@"));
    let owner = sea_orm::Database::connect(url).await.unwrap();
    assert_eq!(count(&owner, "SELECT count(*) AS n FROM sensors").await.unwrap(), 0);
    owner.close().await.unwrap();
    // Leave nothing behind in the cluster: the role owns objects only in this test's database.
    w.app.owner.execute_unprepared(&format!("REASSIGN OWNED BY {owner_role} TO CURRENT_USER")).await.unwrap();
    w.app.owner.execute_unprepared(&format!("DROP OWNED BY {owner_role}")).await.unwrap();
    w.app.owner.execute_unprepared(&format!("DROP ROLE {owner_role}")).await.unwrap();
}
