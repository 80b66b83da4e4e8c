//! When no writable database can be reached (a failover under way, the primary's host gone), the
//! API says so properly and recovers by itself: requests answer `503` with `Retry-After` as
//! problem+json after the retry budget, never `500`; `/readyz` answers `503` within a second; once
//! the database is back, the same process serves again. The server reaches PostgreSQL through a
//! TCP relay the test controls, as replicas reach the primary through HAProxy in production.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::helpers::*;

/// A TCP relay to PostgreSQL that can be cut (every connection through it reset, nothing accepted)
/// and restored on the same port.
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(port: u16, upstream: &'static str) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                spawned.lock().unwrap().push(relay);
            }
        });
        tasks.lock().unwrap().push(accept);
        Relay { port, tasks }
    }

    /// The database's host gone: the listener closed and every open connection dropped.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_database_the_api_answers_503_fast_and_recovers_by_itself() {
    mailsensor::store::set_retry_budget(Duration::from_secs(2));
    let direct = fresh_database(Backend::Postgres).await;
    let relay = Relay::start(0, "127.0.0.1:5432").await;
    let through_relay = direct.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", relay.port), 1);
    assert_ne!(direct, through_relay, "the test database URL names 127.0.0.1:5432: {direct}");
    let app = start_on(&through_relay, "127.0.0.1:0").await;
    let w = world_on(app).await;
    let admin = w.admin_pcn();
    let sensors = format!("/v1/tenants/{}/sensors", w.a.id);
    assert_eq!(w.app.get(&sensors, &admin).await.status, 200);

    relay.cut();
    let started = Instant::now();
    let r = w.app.get("/readyz", "").await;
    let waited = started.elapsed();
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(waited < Duration::from_millis(1500), "/readyz took {waited:?} without a database");

    for (method, body) in [(reqwest::Method::GET, None), (reqwest::Method::POST, Some(json!({"name": "while down"})))] {
        let started = Instant::now();
        let r = w.app.call(method.clone(), &sensors, Some(&admin), body, &[]).await;
        assert_eq!(r.status, 503, "{method} without a database: {:?}", r.body);
        assert_eq!(r.header("retry-after"), Some("1"), "{method}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{method}");
        assert_eq!(r.body["status"], 503);
        assert!(started.elapsed() < Duration::from_secs(10), "{method} took {:?}", started.elapsed());
    }
    let token = w.sensor_token(&w.a, w.a.pcn_sensor);
    let handoff =
        hand_off_request(&w.app.http, &w.app.base, w.a.pcn_sensor, &token, "k-down", "Subject: x\r\n\r\nx\r\n");
    let r = handoff.send().await.unwrap();
    assert_eq!(r.status(), 503, "a hand-off without a database: the worker answers 451 to it");

    // The database back (the same address, as HAProxy serves the new primary): the same process
    // serves again, without a restart.
    let _back = Relay::start(relay.port, "127.0.0.1:5432").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = w.app.get(&sensors, &admin).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not serving 15 s after the database came back: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.app.get("/readyz", "").await.status, 200);
    let r = hand_off_request(&w.app.http, &w.app.base, w.a.pcn_sensor, &token, "k-back", "Subject: x\r\n\r\nx\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "stored once the database is back");
}
