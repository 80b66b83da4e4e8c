//! The durable scan queue: a message is stored (and the sender hears `250`) before it is scanned;
//! it reads `pending` until a scan worker of any replica gets to it, and a replica that dies with
//! messages unscanned leaves them to the others.
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

/// The value of one Prometheus series in a `/metrics` page.
async fn metric(http: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    let page = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn messages(http: &reqwest::Client, base: &str, w: &World, query: &str) -> Vec<Value> {
    let url = format!("{base}/v1/tenants/{}/messages{query}", w.a.id);
    let r: Value = http.get(url).bearer_auth(w.admin_pcn()).send().await.unwrap().json().await.unwrap();
    r["items"].as_array().unwrap().clone()
}

async fn hand_off(http: &reqwest::Client, base: &str, w: &World, n: usize) -> u16 {
    let sensor = w.a.pcn_sensor;
    let message = format!("Subject: queued {n}\r\n\r\nbody {n}\r\n");
    let token = w.sensor_token(&w.a, sensor);
    let request = hand_off_request(http, base, sensor, &token, &format!("queued-{n}"), &message);
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_until_scanned_and_nothing_left_unscanned_after_a_crash() {
    let w = world(Backend::Postgres).await;
    w.app.stop().await;
    let http = reqwest::Client::new();

    // A replica that only stores: what it takes waits in the queue, visible as such.
    let (storing, scanning) = (free_port(), free_port());
    let mut first = spawn_serve_with(&w.app.url, storing, &[("MAILSENSOR_SCAN_WORKERS", "0")]);
    let base = format!("http://127.0.0.1:{storing}");
    until_ready(&http, &base).await;
    for n in 0..3 {
        assert_eq!(hand_off(&http, &base, &w, n).await, 201);
    }
    let pending = messages(&http, &base, &w, "?verdict=pending").await;
    assert_eq!(pending.len(), 3, "{pending:?}");
    assert!(pending.iter().all(|m| m["headers"]["subject"].is_null()), "headers come with the scan");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, &base, "mailsensor_scan_queue_depth").await != Some(3.0) {
        assert!(Instant::now() < deadline, "the queue depth never showed 3 in /metrics");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // It dies (SIGKILL); another replica scans what it left.
    first.kill().await.unwrap();
    let mut second = spawn_serve(&w.app.url, scanning);
    let base = format!("http://127.0.0.1:{scanning}");
    until_ready(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !messages(&http, &base, &w, "?verdict=pending").await.is_empty() {
        assert!(Instant::now() < deadline, "messages left unscanned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let clean = messages(&http, &base, &w, "?verdict=clean").await;
    assert_eq!(clean.len(), 3);
    // Each engine's looks are counted, by how they went.
    let page = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let runs = page.lines().find(|l| {
        l.starts_with("mailsensor_scan_engine_runs_total{")
            && l.contains("engine=\"builtin\"")
            && l.contains("status=\"ok\"")
    });
    assert_eq!(runs.and_then(|l| l.rsplit(' ').next()), Some("3"), "{page}");
    assert!(page.contains("mailsensor_scan_engine_seconds"), "{page}");
    let mut subjects: Vec<&str> = clean.iter().map(|m| m["headers"]["subject"].as_str().unwrap()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, ["queued 0", "queued 1", "queued 2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&http, &base, "mailsensor_scan_queue_depth").await != Some(0.0) {
        assert!(Instant::now() < deadline, "the queue depth never went back to 0");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(metric(&http, &base, "mailsensor_messages_scanned_total{verdict=\"clean\"}").await, Some(3.0));
    second.kill().await.unwrap();
}

/// Intake first: while a hand-off is in progress the scan workers hold back, so the sender's `250`
/// does not share the CPU with scanning — but only for about a second, so scanning keeps moving
/// under sustained load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanning_yields_to_intake_but_not_for_long() {
    use tokio::io::AsyncWriteExt;
    let w = world(Backend::Postgres).await;
    let http = reqwest::Client::new();
    let base = w.app.base.clone();
    // A hand-off held open half way, as while a large message is still arriving.
    let sensor = w.a.pcn_sensor;
    let envelope = serde_json::json!({"client_ip": "192.0.2.1", "helo": "mx", "mail_from": "a@example.org",
        "rcpt_to": ["b@example.com"], "tls": false, "worker": "w1"});
    let head = format!(
        "POST /v1/sensors/{sensor}/messages HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/vnd.mailsensor.handoff\r\nIdempotency-Key: held\r\n\
         Content-Length: 100000\r\n\r\n{envelope}\nSubject: held open\r\n",
        w.sensor_token(&w.a, sensor)
    );
    let mut held = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    held.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(hand_off(&http, &base, &w, 1).await, 201);
    let stored_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(messages(&http, &base, &w, "?verdict=pending").await.len(), 1, "scanned while intake was busy");
    loop {
        if messages(&http, &base, &w, "?verdict=pending").await.is_empty() {
            break;
        }
        assert!(stored_at.elapsed() < Duration::from_secs(10), "still unscanned after 10 s of busy intake");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waited = stored_at.elapsed();
    // Held back about a second from when the worker woke, shortly before `stored_at`.
    assert!(waited >= Duration::from_millis(500), "scanned after {waited:?}, without holding back");
    drop(held);
    let scanned = messages(&http, &base, &w, "").await;
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0]["verdict"], "clean", "{scanned:?}");
}

/// The scan queue's claim reads the queue's own index (the waiting messages), whatever plan
/// PostgreSQL runs it with. With `verdict = $1` bound, the generic plan (which a prepared statement
/// gets once it looks no dearer than a custom one) could not use that partial index and walked
/// the day's partition by its primary key, past every message scanned before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_reads_the_queue_index_even_in_a_generic_plan() {
    use sea_orm::ConnectionTrait;
    let w = world(Backend::Postgres).await;
    w.app.stop().await;
    let http = reqwest::Client::new();
    let owner = &w.app.owner;
    let name = owner
        .query_one_raw(sea_orm::Statement::from_string(owner.get_database_backend(), "SELECT current_database() AS d"))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "d")
        .unwrap();
    owner
        .execute_unprepared(&format!("ALTER DATABASE \"{name}\" SET plan_cache_mode = force_generic_plan"))
        .await
        .unwrap();
    // 3,000 messages scanned a second ago, in today's partition (UUIDv7 ids of that millisecond).
    owner
        .execute_unprepared(&format!(
            "INSERT INTO messages (id, tenant_id, sensor_id, idempotency_key, status, received_at, client_ip, helo, \
             mail_from, rcpt_to, tls, worker, size, verdict, detections, parts, scanned_at) \
             SELECT (lpad(to_hex((extract(epoch FROM now()) * 1000)::bigint - 1000), 12, '0') || '70008000' \
                     || lpad(to_hex(g), 12, '0'))::uuid, '{tenant}', '{sensor}', 'old-' || g, 'stored', now(), \
                    '192.0.2.1', 'mx', 'a@example.net', '[\"b@example.com\"]', false, 'w', 10, 'clean', '[]', '[]', now() \
             FROM generate_series(1, 3000) AS g; ANALYZE messages",
            tenant = w.a.id,
            sensor = w.a.pcn_sensor,
        ))
        .await
        .unwrap();
    let count = async |sql: String| -> i64 {
        let statement = sea_orm::Statement::from_string(owner.get_database_backend(), sql);
        owner.query_one_raw(statement).await.unwrap().unwrap().try_get("", "n").unwrap()
    };
    let backends = || {
        count(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
               AND backend_type = 'client backend'"
                .to_owned(),
        )
    };
    let before = backends().await;
    let (mut serve, base) = serve_ready(&http, &w.app.url, &[]).await;
    // Several claims, past the five after which a prepared statement may switch to its generic plan.
    for n in 0..8 {
        assert_eq!(hand_off(&http, &base, &w, n).await, 201);
        // Counted in /metrics rather than listed: the listing has plans of its own.
        let deadline = Instant::now() + Duration::from_secs(20);
        let scanned = "mailsensor_messages_scanned_total{verdict=\"clean\"}";
        while metric(&http, &base, scanned).await != Some(n as f64 + 1.0) {
            assert!(Instant::now() < deadline, "message {n} was not scanned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // What the claims read, by index. A backend reports its counts when it ends (an idle one may
    // hold them for up to 10 s): the replica and its connections go first.
    serve.kill().await.unwrap();
    serve.wait().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while backends().await > before {
        assert!(Instant::now() < deadline, "the replica's connections did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let read = |parent: &str, column: &str| {
        count(format!(
            "SELECT coalesce(sum(s.{column}), 0)::bigint AS n FROM pg_stat_user_indexes AS s \
             JOIN pg_inherits AS i ON i.inhrelid = s.indexrelid WHERE i.inhparent = '{parent}'::regclass"
        ))
    };
    let claims = read("ix_messages_scan_queue", "idx_scan").await;
    let by_primary_key = read("messages_pkey", "idx_tup_read").await;
    let seen = format!("the queue's index read {claims} times, {by_primary_key} rows read by the primary key");
    assert!(
        claims >= 8 && by_primary_key < 1000,
        "8 claims should read the queue's index, not walk the partition: {seen}"
    );
}

/// Intake first, by the kernel: the scan's CPU work runs on threads of its own at nice 10, while
/// the threads that take hand-offs and answer the API keep the default priority. A pause before
/// each claim cannot do this: once claimed, a scan would compete with intake as an equal.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_runs_at_a_lower_cpu_priority_than_intake() {
    let w = world(Backend::Postgres).await;
    w.app.stop().await;
    let http = reqwest::Client::new();
    let (mut serve, base) = serve_ready(&http, &w.app.url, &[]).await;
    assert_eq!(hand_off(&http, &base, &w, 0).await, 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&http, &base, "mailsensor_messages_scanned_total{verdict=\"clean\"}").await != Some(1.0) {
        assert!(Instant::now() < deadline, "the message was not scanned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every thread of the replica, by name, with its nice value (the 19th field of its stat).
    let name_and_nice = |stat: &str| -> (String, i64) {
        let (head, rest) = stat.rsplit_once(") ").unwrap();
        (head.split_once(" (").unwrap().1.to_owned(), rest.split(' ').nth(16).unwrap().parse().unwrap())
    };
    let pid = serve.id().unwrap();
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) {
            threads.push(name_and_nice(&stat));
        }
    }
    serve.kill().await.unwrap();
    // The replica starts at this test's own priority.
    let own = name_and_nice(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()).1;
    assert!(own < 10, "run the tests at a nice value below 10 (this one runs at {own})");
    let (scan, others): (Vec<_>, Vec<_>) = threads.iter().partition(|(name, _)| name == "mailsensor-scan");
    assert!(!scan.is_empty() && scan.iter().all(|(_, nice)| *nice == 10), "the scan's threads: {threads:?}");
    assert!(others.len() >= 2 && others.iter().all(|(_, nice)| *nice == own), "intake's threads: {threads:?}");
}
