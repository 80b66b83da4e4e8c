//! Mail expires: a tenant's retention through the API (who may read and change it, the bounds),
//! the expiry run as of a later day (a test clock, not waiting), with everything about an expired
//! message gone and nothing of another tenant touched; on PostgreSQL whole days dropped, a retry
//! recognised across a day boundary, and the upgrade of a database that already holds mail.
use std::time::{Duration, Instant};

use chrono::Utc;
use mailsensor::auth::Role;
use mailsensor::store::retention::{self, RetentionPolicy};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const POLICY: RetentionPolicy = RetentionPolicy { default_days: 30, max_days: 90 };
const DAY: Duration = Duration::from_secs(24 * 3600);

fn settings_path(tenant: &TenantFixture) -> String {
    format!("/v1/tenants/{}/settings", tenant.id)
}

/// Who may read and change a tenant's retention, and within which bounds.
async fn retention_through_the_api(backend: Backend) {
    let w = world(backend).await;
    let path = settings_path(&w.a);
    let admin = w.admin_pcn();
    let r = w.app.get(&path, &admin).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"message_retention_days": 30, "message_retention_is_default": true, "clamped_to_platform_cap": false,
               "platform_default_retention_days": 30, "platform_max_retention_days": 90})
    );
    let r = w.app.patch(&path, &admin, json!({"message_retention_days": 7})).await;
    assert_eq!((r.status.as_u16(), r.body["message_retention_days"].as_u64()), (200, Some(7)), "{:?}", r.body);
    assert_eq!(r.body["message_retention_is_default"], false);
    // What a GET served may be sent back; read-only fields are ignored.
    let mut echoed = w.app.get(&path, &admin).await.body;
    echoed["message_retention_days"] = json!(14);
    let r = w.app.patch(&path, &admin, echoed).await;
    assert_eq!(r.body["message_retention_days"], 14, "{:?}", r.body);

    for (body, pointers) in [
        (json!({"message_retention_days": 0}), vec!["/message_retention_days"]),
        (json!({"message_retention_days": 91}), vec!["/message_retention_days"]),
        (json!({"message_retention_days": "7"}), vec!["/message_retention_days"]),
        (json!({"message_retention_days": 7, "keep_forever": true}), vec!["/keep_forever"]),
    ] {
        let r = w.app.patch(&path, &admin, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.pointers(), pointers, "{body}");
    }
    assert_eq!(w.app.get(&path, &admin).await.body["message_retention_days"], 14, "a refused patch changes nothing");

    // Who: the PCN's administrator changes it; auditors, officers and the operator read it; an
    // SCN's administrator neither; another tenant's people do not see the tenant at all.
    let scn = w.app.post(&format!("/v1/tenants/{}/nodes", w.a.id), &admin, json!({"name": "Branch"})).await;
    assert_eq!(scn.status, 201, "{:?}", scn.body);
    let scn = Uuid::parse_str(scn.body["id"].as_str().unwrap()).unwrap();
    for (token, read, write) in [
        (w.member(&w.a, Role::SecurityAuditor, w.a.pcn), 200, 403),
        (w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn), 200, 403),
        (w.member(&w.a, Role::SecurityOfficer, scn), 200, 403),
        (w.operator.clone(), 200, 403),
        (w.member(&w.a, Role::Administrator, scn), 403, 403),
        (w.member(&w.b, Role::Administrator, w.b.pcn), 404, 404),
        (w.sensor_token(&w.a, w.a.pcn_sensor), 403, 403),
    ] {
        assert_eq!(w.app.get(&path, &token).await.status, read);
        assert_eq!(w.app.patch(&path, &token, json!({"message_retention_days": 3})).await.status, write);
    }
    // Conditional writes: an ETag that is no longer current answers 412 and changes nothing.
    let read = w.app.get(&path, &admin).await;
    let etag = read.header("etag").unwrap().to_owned();
    let patch_if_match = |days: u32| {
        let (app, path, admin, etag) = (&w.app, &path, &admin, &etag);
        let body = json!({"message_retention_days": days});
        async move { app.call(reqwest::Method::PATCH, path, Some(admin), Some(body), &[("if-match", etag)]).await }
    };
    let r = patch_if_match(21).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_ne!(r.header("etag"), Some(etag.as_str()), "a new version");
    let r = patch_if_match(3).await;
    assert_eq!(r.status, 412, "{:?}", r.body);
    assert_eq!(w.app.get(&path, &admin).await.body["message_retention_days"], 21);
    let r = w.app.patch(&path, &admin, json!({"message_retention_days": null})).await;
    assert_eq!(
        (r.body["message_retention_days"].as_u64(), r.body["message_retention_is_default"].as_bool()),
        (Some(30), Some(true))
    );
    let audit = w.app.get(&format!("/v1/tenants/{}/audit-events", w.a.id), &admin).await;
    let changes = audit.body["items"].as_array().unwrap().iter().filter(|e| e["action"] == "tenant.retention").count();
    assert_eq!(changes, 4, "every change audited: {:?}", audit.body);
}

/// A message of `tenant` with everything that hangs off it: its content, its scan result (EICAR:
/// malicious, so an alert event), and a retro-hunt's match.
async fn mail_with_everything(w: &World, tenant: &TenantFixture) -> (Uuid, String) {
    let raw = format!("From: a@example.org\r\nTo: b@example.com\r\nSubject: old\r\n\r\n{EICAR}\r\n");
    let id = message_with(w, tenant, tenant.pcn_sensor, &raw).await;
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.app.get(&format!("/v1/tenants/{}/alert-events", tenant.id), &admin).await.body["items"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "the EICAR message raised no alert event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let officer = w.member(tenant, Role::SeniorSecurityOfficer, tenant.pcn);
    let hunt = json!({"source": "rule everything { condition: true }",
        "since": "2026-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"});
    let r = w.app.post(&format!("/v1/tenants/{}/retrohunts", tenant.id), &officer, hunt).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let hunt = r.header("location").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.app.get(&hunt, &officer).await.body["state"] != "finished" {
        assert!(Instant::now() < deadline, "the retro-hunt did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (id, hunt)
}

/// What `tenant` can still see of the mail `mail_with_everything` made: the message, the hunt's
/// matches, and the alert events (message.detected, retrohunt.matched, retrohunt.finished).
async fn still_there(w: &World, tenant: &TenantFixture, (id, hunt): &(Uuid, String)) -> [usize; 3] {
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    let officer = w.member(tenant, Role::SeniorSecurityOfficer, tenant.pcn);
    let message = w.app.get(&format!("/v1/tenants/{}/messages/{id}", tenant.id), &admin).await;
    assert!(message.status == 200 || message.status == 404, "{:?}", message.body);
    let matches = w.app.get(&format!("{hunt}/matches"), &officer).await;
    let events = w.app.get(&format!("/v1/tenants/{}/alert-events", tenant.id), &admin).await;
    let count = |v: &Value| v["items"].as_array().map_or(0, Vec::len);
    [usize::from(message.status == 200), count(&matches.body), count(&events.body)]
}

/// `id` as an SQL literal of the world's backend (SQLite keeps UUIDs as 16-byte blobs).
fn lit(w: &World, id: Uuid) -> String {
    match w.app.owner.get_database_backend() {
        sea_orm::DatabaseBackend::Sqlite => format!("X'{}'", id.simple()),
        _ => format!("'{id}'"),
    }
}

async fn owner_count(w: &World, sql: &str) -> i64 {
    let row = w
        .app
        .owner
        .query_one_raw(Statement::from_string(w.app.owner.get_database_backend(), sql.to_owned()))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

/// A message past its tenant's retention is gone — content, scan result, retro-hunt matches and
/// alert events with it — and one inside it is not; lowering the retention takes effect at the
/// next run; the other tenant's mail is untouched; on PostgreSQL, once every tenant's retention has
/// passed a day, the day is dropped whole.
async fn expiry_as_of_later_days(backend: Backend) {
    let w = world_configured(backend, |p| p.expire_every = None).await;
    let a = mail_with_everything(&w, &w.a).await;
    let b = mail_with_everything(&w, &w.b).await;
    assert_eq!(still_there(&w, &w.a, &a).await, [1, 1, 3]);
    let now = Utc::now();
    let run = |days: i64| retention::expire(&w.app.db, POLICY, DAY, now + chrono::Duration::days(days));

    // Eight days on, the default 30 keeps everything.
    let expired = run(8).await.unwrap();
    assert_eq!(expired.messages, 0, "{expired:?}");
    assert_eq!(still_there(&w, &w.a, &a).await, [1, 1, 3]);
    assert_eq!(expired.keys, 2, "the dedup window (a day) is long past: the keys go");

    // Tenant A lowers its retention to 7 days: at the next run its mail is gone, B's is not.
    let r = w.app.patch(&settings_path(&w.a), &w.admin_pcn(), json!({"message_retention_days": 7})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let expired = run(8).await.unwrap();
    assert_eq!((expired.messages, expired.retrohunt_matches, expired.days_dropped), (1, 1, 0), "{expired:?}");
    assert!(expired.alert_events >= 1, "{expired:?}");
    assert_eq!(still_there(&w, &w.a, &a).await, [0, 0, 0], "A's mail and all about it");
    assert_eq!(still_there(&w, &w.b, &b).await, [1, 1, 3], "B's mail is untouched");
    let content = format!("SELECT count(*) FROM message_chunks WHERE message_id = {}", lit(&w, a.0));
    assert_eq!(owner_count(&w, &content).await, 0, "A's content is gone");

    // 31 days on, B's 30 days have passed too.
    let expired = run(31).await.unwrap();
    assert_eq!(still_there(&w, &w.b, &b).await, [0, 0, 0], "{expired:?}");
    if backend == Backend::Postgres {
        // Every tenant's retention has passed today: the day went whole, not row by row.
        assert_eq!(expired.messages, 0, "{expired:?}");
        assert!(expired.days_dropped >= 1, "{expired:?}");
        let today = format!("messages_p{}", now.format("%Y%m%d"));
        let left = format!(
            "SELECT count(*) FROM pg_class WHERE relname IN ('{today}', 'message_chunks_p{}')",
            now.format("%Y%m%d")
        );
        assert_eq!(owner_count(&w, &left).await, 0, "{today} and its content were dropped");
        // …and the days ahead were made, so tomorrow's mail has its table.
        let ahead = now + chrono::Duration::days(31 + 7);
        let made = format!("SELECT count(*) FROM pg_class WHERE relname = 'messages_p{}'", ahead.format("%Y%m%d"));
        assert_eq!(owner_count(&w, &made).await, 1);
    } else {
        assert_eq!(expired.messages, 1, "{expired:?}");
    }
    // The mail that arrives now is stored and kept.
    let fresh = message_of(&w, &w.a, w.a.pcn_sensor).await;
    let r = w.app.get(&format!("/v1/tenants/{}/messages/{fresh}", w.a.id), &w.admin_pcn()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The dedup window answers a retry whose first copy is stored in yesterday's partition (a
/// message received just before midnight, retried just after): the keys live beside the days.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_recognised_across_a_day_boundary() {
    let w = world(Backend::Postgres).await;
    let sensor = w.a.pcn_sensor;
    let token = w.sensor_token(&w.a, sensor);
    let raw = "From: a@example.org\r\nSubject: twice\r\n\r\nsame bytes\r\n";
    let first = message_with(&w, &w.a, sensor, raw).await;
    // Move the first copy into yesterday's partition, as if received there (the owner, by hand).
    let yesterday = retention::uuid_at(Utc::now() - chrono::Duration::days(1)).as_u128()
        | (first.as_u128() & 0xffff_ffff_ffff_ffff_ffff);
    let moved = Uuid::from_u128(yesterday);
    for sql in [
        format!(
            "INSERT INTO messages SELECT '{moved}'::uuid AS id, m.tenant_id, m.sensor_id, m.idempotency_key, m.status,
                 m.received_at, m.client_ip, m.helo, m.mail_from, m.rcpt_to, m.tls, m.worker, m.size, m.sha256, m.md5,
                 m.header_from, m.header_to, m.subject, m.message_id, m.date, m.verdict, m.detections, m.parts,
                 m.content_key, m.scan_attempts, m.scan_after, m.scanned_at, m.earlier_scans, m.engines
                 FROM messages m WHERE m.id = '{first}'"
        ),
        format!("UPDATE message_chunks SET message_id = '{moved}' WHERE message_id = '{first}'"),
        format!("UPDATE message_keys SET message_id = '{moved}' WHERE message_id = '{first}'"),
        format!("DELETE FROM messages WHERE id = '{first}'"),
    ] {
        w.app.owner.execute_unprepared(&sql).await.unwrap();
    }
    let partition = format!(
        "SELECT count(*) FROM messages WHERE id = '{moved}' AND tableoid = 'messages_p{}'::regclass",
        (Utc::now() - chrono::Duration::days(1)).format("%Y%m%d")
    );
    assert_eq!(owner_count(&w, &partition).await, 1, "the first copy is in yesterday's partition");
    // The retry: another hand-off (another idempotency key) of the same message.
    let r = hand_off_request(&w.app.http, &w.app.base, sensor, &token, &Uuid::new_v4().to_string(), raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a retry within the window answers with the stored copy");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], moved.to_string());
    assert_eq!(owner_count(&w, "SELECT count(*) FROM messages").await, 1, "stored once");
}

/// The upgrade: a database that holds mail from before `retention` (messages over several days,
/// large and small, two tenants) keeps every message, content byte and key when its tables become
/// partitioned, each in the partition of its day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partitioning_migration_keeps_every_message() {
    use migration::{Migrator, MigratorTrait};
    let url = blank_postgres_database().await;
    let db = sea_orm::Database::connect(&url).await.unwrap();
    let before_retention = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261206_000013_retention")
        .expect("the retention migration is in the list");
    Migrator::up(&db, Some(before_retention as u32)).await.unwrap();
    // Two tenants with a sensor each, and 40 messages over the last ten days, written as the
    // code of the time did (a row, and its content in 1 or 3 chunks).
    let mut expected = Vec::new();
    for t in 0..2 {
        let (tenant, sensor) = (Uuid::now_v7(), Uuid::now_v7());
        db.execute_unprepared(&format!(
            "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ('{tenant}', 'T{t}', now(), now())"
        ))
        .await
        .unwrap();
        for i in 0..20i64 {
            let at = Utc::now() - chrono::Duration::hours(12 * i);
            let id = Uuid::from_u128(retention::uuid_at(at).as_u128() | u128::from(Uuid::new_v4().as_u128() as u64));
            let chunks = if i % 5 == 0 { 3 } else { 1 };
            db.execute_unprepared(&format!(
                "INSERT INTO messages (id, tenant_id, sensor_id, idempotency_key, status, received_at, client_ip, helo,
                  mail_from, rcpt_to, tls, worker, size, sha256, md5, verdict, detections, parts, content_key)
                 VALUES ('{id}', '{tenant}', '{sensor}', 'key-{t}-{i}', 'stored', '{}', '192.0.2.1', 'h', 'a@example.org',
                  '[\"b@example.com\"]', false, 'w1', {}, 'sha', 'md5', 'pending', '[]', '[]', 'ck-{t}-{i}')",
                at.to_rfc3339(),
                chunks * 4
            ))
            .await
            .unwrap();
            for seq in 0..chunks {
                db.execute_unprepared(&format!(
                    "INSERT INTO message_chunks (message_id, seq, data) VALUES ('{id}', {seq}, '\\x{:08x}')",
                    seq
                ))
                .await
                .unwrap();
            }
            expected.push((id, chunks));
        }
    }
    Migrator::up(&db, None).await.expect("the partitioning migration applies over existing mail");
    let count = |sql: String| {
        let db = db.clone();
        async move {
            let row = db
                .query_one_raw(Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM messages".into()).await, 40);
    assert_eq!(count("SELECT count(*) FROM message_chunks".into()).await, expected.iter().map(|(_, c)| c).sum::<i64>());
    assert_eq!(count("SELECT count(*) FROM message_keys WHERE content_key LIKE 'ck-%'".into()).await, 40);
    assert_eq!(count("SELECT count(*) FROM messages_default".into()).await, 0, "every message in its day");
    assert!(count("SELECT count(*) FROM pg_inherits WHERE inhparent = 'messages'::regclass".into()).await >= 10 + 7);
    for (id, chunks) in &expected {
        let found = count(format!(
            "SELECT count(*) FROM message_chunks c JOIN messages m ON m.id = c.message_id WHERE m.id = '{id}'"
        ))
        .await;
        assert_eq!(found, *chunks, "{id}");
    }
    db.close().await.unwrap();
}

/// Hands `raw` off with its own envelope (sender, recipients); returns the stored id.
async fn hand_off_as(w: &World, tenant: &TenantFixture, from: &str, to: &[&str], raw: &str) -> Uuid {
    let envelope = json!({"client_ip": "192.0.2.1", "helo": "mx", "mail_from": from, "rcpt_to": to,
        "tls": false, "worker": "w1"});
    let r = w
        .app
        .http
        .post(format!("{}/v1/sensors/{}/messages", w.app.base, tenant.pcn_sensor))
        .bearer_auth(w.sensor_token(tenant, tenant.pcn_sensor))
        .header("content-type", "application/vnd.mailsensor.handoff")
        .header("idempotency-key", Uuid::new_v4().to_string())
        .body(format!("{envelope}\n{raw}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    Uuid::parse_str(r.json::<Value>().await.unwrap()["id"].as_str().unwrap()).unwrap()
}

/// The ids of `tenant`'s messages its PCN administrator lists, sorted.
async fn listed(w: &World, tenant: &TenantFixture) -> Vec<String> {
    let token = w.member(tenant, Role::Administrator, tenant.pcn);
    let r = w.app.get(&format!("/v1/tenants/{}/messages?limit=100", tenant.id), &token).await;
    let mut ids: Vec<String> =
        r.body["items"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

/// A data-subject request: every message to or from one address (envelope or `From`/`To`
/// header, any case) is erased with what hangs off it; the rest stays; audited with the count.
async fn a_data_subject_request_erases_one_addresses_mail(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let alice = [
        hand_off_as(&w, &w.a, "Alice@Example.org", &["x@example.com"], "Subject: from her\r\n\r\nx\r\n").await,
        hand_off_as(&w, &w.a, "x@example.com", &["y@example.com", "alice@example.org"], "Subject: to her\r\n\r\nx\r\n")
            .await,
        hand_off_as(
            &w,
            &w.a,
            "list@example.com",
            &["y@example.com"],
            &format!("From: \"Alice\" <alice@example.org>\r\nSubject: via a list\r\n\r\n{EICAR}\r\n"),
        )
        .await,
    ];
    let others = [
        hand_off_as(&w, &w.a, "malice@example.org", &["alice@example.org.evil"], "Subject: near\r\n\r\nx\r\n").await,
        hand_off_as(&w, &w.b, "alice@example.org", &["x@example.com"], "Subject: tenant b\r\n\r\nx\r\n").await,
    ];
    let path = format!("/v1/tenants/{}/erasures", w.a.id);
    for (body, pointer) in [
        (json!({}), "/address"),
        (json!({"address": "not an address"}), "/address"),
        (json!({"address": "@example.org"}), "/address"),
        (json!({"address": "alice@example.org", "also": 1}), "/also"),
    ] {
        let r = w.app.post(&path, &admin, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.pointers(), [pointer], "{body}");
    }
    let auditor = w.member(&w.a, Role::SecurityAuditor, w.a.pcn);
    assert_eq!(w.app.post(&path, &auditor, json!({"address": "alice@example.org"})).await.status, 403);
    let b_admin = w.member(&w.b, Role::Administrator, w.b.pcn);
    assert_eq!(w.app.post(&path, &b_admin, json!({"address": "alice@example.org"})).await.status, 404);
    assert_eq!(listed(&w, &w.a).await.len(), 4, "every message refused above is still there");

    let r = w.app.post(&path, &admin, json!({"address": "ALICE@example.org"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"address": "alice@example.org", "messages_erased": 3}));
    assert_eq!(listed(&w, &w.a).await, vec![others[0].to_string()]);
    assert_eq!(listed(&w, &w.b).await, vec![others[1].to_string()], "another tenant's mail is untouched");
    for id in alice {
        let r = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &admin).await;
        assert_eq!(r.status, 404);
        let sql = format!("SELECT count(*) FROM message_chunks WHERE message_id = {}", lit(&w, id));
        assert_eq!(owner_count(&w, &sql).await, 0, "content of {id}");
        let sql = format!("SELECT count(*) FROM alert_events WHERE message_id = {}", lit(&w, id));
        assert_eq!(owner_count(&w, &sql).await, 0, "alert events about {id}");
    }
    let audit = w.app.get(&format!("/v1/tenants/{}/audit-events", w.a.id), &admin).await;
    let erased: Vec<&Value> =
        audit.body["items"].as_array().unwrap().iter().filter(|e| e["action"] == "messages.erase").collect();
    assert_eq!(erased.len(), 1, "{:?}", audit.body);
    assert_eq!(erased[0]["after"]["messages_erased"], 3);
    // Again: nothing left to erase.
    let r = w.app.post(&path, &admin, json!({"address": "alice@example.org"})).await;
    assert_eq!(r.body["messages_erased"], 0);
}

/// Deleting a tenant answers at once and nobody of it gets in after; its mail (more than one
/// batch of it) is erased in the background, the row last; the other tenant keeps everything.
async fn a_deleted_tenant_is_erased_in_the_background(backend: Backend) {
    use futures_util::StreamExt;
    let w = world(backend).await;
    let a_hunt = mail_with_everything(&w, &w.a).await;
    let b = mail_with_everything(&w, &w.b).await;
    let stored: Vec<Uuid> = futures_util::stream::iter(0..1200)
        .map(|i| {
            let (w, raw) = (&w, format!("Subject: {i}\r\n\r\nx\r\n"));
            async move { hand_off_as(w, &w.a, "a@example.org", &["b@example.com"], &raw).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert_eq!(stored.len(), 1200);
    let (admin, sensor) = (w.admin_pcn(), w.sensor_token(&w.a, w.a.pcn_sensor));
    let a = lit(&w, w.a.id);
    let before = owner_count(&w, &format!("SELECT count(*) FROM messages WHERE tenant_id = {a}")).await;
    assert_eq!(before, 1201, "the query sees the tenant's rows (else the checks below prove nothing)");
    let tenant = format!("/v1/tenants/{}", w.a.id);
    let r = w.app.delete(&tenant, &w.operator).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(w.app.get(&tenant, &w.operator).await.status, 404, "gone at once");
    assert_eq!(w.app.get(&format!("{tenant}/messages"), &admin).await.status, 401, "its people are out");
    let r = w.app.put(&format!("/v1/sensors/{}/workers/w1", w.a.pcn_sensor), &sensor, json!({"version": "1"})).await;
    assert_eq!(r.status, 401, "its workers are out");
    let r = w.app.post("/v1/tenants", &w.operator, json!({"name": "Tenant A"})).await;
    assert_eq!(r.status, 201, "its name is free again: {:?}", r.body);

    let deadline = Instant::now() + Duration::from_secs(60);
    while owner_count(&w, &format!("SELECT count(*) FROM tenants WHERE id = {a}")).await > 0 {
        assert!(Instant::now() < deadline, "the tenant row is still there after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for table in ["messages", "message_keys", "retrohunts", "retrohunt_matches", "alert_events", "alert_deliveries"] {
        let left = owner_count(&w, &format!("SELECT count(*) FROM {table} WHERE tenant_id = {a}")).await;
        assert_eq!(left, 0, "{table} still holds rows of the erased tenant");
    }
    let content = format!("SELECT count(*) FROM message_chunks WHERE message_id = {}", lit(&w, a_hunt.0));
    assert_eq!(owner_count(&w, &content).await, 0);
    assert_eq!(still_there(&w, &w.b, &b).await, [1, 1, 3], "B's mail is untouched");
    let audit = format!("SELECT count(*) FROM audit_events WHERE tenant_id = {a} AND action = 'tenant.delete'");
    assert_eq!(owner_count(&w, &audit).await, 1, "the audit trail stays");
}

/// `mailsensor expire` runs the expiry once, as of a later time when asked, and says what it did.
async fn the_expire_command(backend: Backend) {
    let w = world_configured(backend, |p| p.expire_every = None).await;
    let id = message_of(&w, &w.a, w.a.pcn_sensor).await;
    let as_of = (Utc::now() + chrono::Duration::days(31)).to_rfc3339();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args(["expire", "--database-url", &w.app.url, "--as-of", &as_of])
        .env_remove("MAILSENSOR_DATABASE_URL")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gone = report["messages"].as_u64().unwrap() + report["days_dropped"].as_u64().unwrap();
    assert!(gone >= 1, "{report}");
    let r = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
    assert_eq!(r.status, 404, "expired: {report}");
}

on_both_backends!(
    the_expire_command,
    retention_through_the_api,
    expiry_as_of_later_days,
    a_data_subject_request_erases_one_addresses_mail,
    a_deleted_tenant_is_erased_in_the_background
);
