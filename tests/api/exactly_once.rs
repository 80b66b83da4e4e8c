//! Exactly once across retries: a real SMTP client retries every 4xx and broken connection while
//! the worker process and the API process are killed with SIGKILL at random moments, mid-hand-off
//! included. Afterwards every id a `250` named is stored, and each message is stored once.
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mail_send::SmtpClientBuilder;
use rand::Rng;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::*;

/// Sent at least; on a fast machine that can be over before enough kills have landed, so sending
/// goes on until there are `ENOUGH` kills and retries (at most `MAX_MESSAGES`).
const MESSAGES: usize = 120;
const ENOUGH: usize = 5;
const MAX_MESSAGES: usize = 3_000;

fn worker(api: &str, token: &str, smtp_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args(["sensor", "--listen", &format!("127.0.0.1:{smtp_port}"), "--admin-listen", "127.0.0.1:0"])
        .args(["--hostname", "once.test"])
        .env("MAILSENSOR_API_URL", api)
        .env("MAILSENSOR_SENSOR_TOKEN", token)
        .env("MAILSENSOR_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn message(n: usize) -> Vec<u8> {
    // Large enough that a hand-off spans several chunks and some time: kills land inside it.
    let filler = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n".repeat(1500);
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: once {n}\r\nMessage-ID: <once-{n}@test>\r\n\r\n{filler}"
    )
    .into_bytes()
}

/// Sends one message until a `250`, retrying every 4xx and every broken connection as an MTA
/// would; a 5xx is a failure of the test. Returns the stored id and how many attempts failed.
async fn deliver(at: SocketAddr, n: usize) -> (String, usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut failed = 0;
    loop {
        assert!(Instant::now() < deadline, "message {n} was not accepted within 120 s");
        let attempt = async {
            let mut client = SmtpClientBuilder::new(at.ip().to_string(), at.port())
                .unwrap()
                .helo_host("client.test")
                .timeout(Duration::from_secs(20))
                .connect_plain()
                .await?;
            let msg = mail_send::smtp::message::Message::new("alice@example.org", ["bob@example.com"], message(n));
            client.send(msg).await
        };
        match attempt.await {
            Ok(reply) => {
                let id = reply.message().split(['<', '>']).nth(1).unwrap_or_default().to_owned();
                return (id, failed);
            }
            Err(mail_send::Error::UnexpectedReply(r)) if r.code() >= 500 => {
                panic!("message {n}: permanent failure {} {}", r.code(), r.message())
            }
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_worker_and_api_mid_handoff_stores_each_message_once() {
    let w = world(Backend::Postgres).await;
    let sensor = w.a.pcn_sensor;
    let body = json!({"enabled": true, "destination_domains": ["example.com"], "clients": [],
        "message_size_limit": {"unlimited": true}});
    assert_eq!(w.app.put(&w.a.settings_path(sensor), &w.admin_pcn(), body).await.status, 200);
    // The in-process server only set things up; the processes below are the ones killed.
    w.app.stop().await;

    let (api_port, smtp_port) = (free_port(), free_port());
    let api_url = format!("http://127.0.0.1:{api_port}");
    let token = w.sensor_token(&w.a, sensor);
    let at: SocketAddr = format!("127.0.0.1:{smtp_port}").parse().unwrap();
    let api = Arc::new(tokio::sync::Mutex::new(spawn_serve(&w.app.url, api_port)));
    let mta = Arc::new(tokio::sync::Mutex::new(worker(&api_url, &token, smtp_port)));

    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (done, kills, api, mta, db_url, api_url) =
            (done.clone(), kills.clone(), api.clone(), mta.clone(), w.app.url.clone(), api_url.clone());
        tokio::spawn(async move {
            // Let the first messages through before the first kill.
            tokio::time::sleep(Duration::from_secs(2)).await;
            while !done.load(Ordering::SeqCst) {
                let (pause, kill_api) = {
                    let mut rng = rand::rng();
                    (Duration::from_millis(rng.random_range(300..1200)), rng.random_bool(0.5))
                };
                tokio::time::sleep(pause).await;
                if kill_api {
                    let mut child = api.lock().await;
                    child.kill().await.unwrap();
                    *child = spawn_serve(&db_url, api_port);
                } else {
                    let mut child = mta.lock().await;
                    child.kill().await.unwrap();
                    *child = worker(&api_url, &token, smtp_port);
                }
                kills.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let mut accepted: Vec<String> = Vec::new();
    let mut retries = 0;
    while accepted.len() < MESSAGES || kills.load(Ordering::SeqCst) < ENOUGH || retries < ENOUGH {
        let n = accepted.len();
        assert!(
            n < MAX_MESSAGES,
            "{n} messages, {} kills, {retries} retries: too few kills or retries to prove anything",
            kills.load(Ordering::SeqCst)
        );
        let (id, failed) = deliver(at, n).await;
        accepted.push(id);
        retries += failed;
    }
    done.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    let kills = kills.load(Ordering::SeqCst);
    eprintln!("{} messages, {kills} kills, {retries} failed attempts retried", accepted.len());

    // Every kill of the API could have cut a scan short: the queue still scans everything. (The
    // copies are told apart below by their Message-ID header, which the scan records.)
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = w
            .app
            .owner
            .query_one_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT count(*) AS n FROM messages WHERE verdict = 'pending'".to_owned(),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} messages left unscanned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let rows = w
        .app
        .owner
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            format!(
                "SELECT id::text AS id, message_id FROM messages WHERE status = 'stored' AND tenant_id = '{}'",
                w.a.id
            ),
        ))
        .await
        .unwrap();
    let stored: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.try_get::<String>("", "id").unwrap(), r.try_get::<String>("", "message_id").unwrap()))
        .collect();
    let ids: HashSet<&str> = stored.iter().map(|(id, _)| id.as_str()).collect();
    for (n, id) in accepted.iter().enumerate() {
        assert!(ids.contains(id.as_str()), "message {n} got 250 with id {id}, which is not stored");
    }
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for (_, message_id) in &stored {
        *copies.entry(message_id.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "stored more than once: {duplicated:?}");
    assert_eq!(stored.len(), accepted.len(), "stored rows = distinct messages sent");

    drop(api);
}

/// The dedup window, on both backends: within it a retry under a new key is the stored message;
/// past it the same bytes are a new message, and the old copy gives its key up to it.
async fn the_dedup_window_ends(backend: Backend) {
    let url = fresh_database(backend).await;
    let app = start_configured(&url, "127.0.0.1:0", |parts| parts.dedup_window = Some(Duration::from_secs(1))).await;
    let operator = app.token(&claims("olga", mailsensor::auth::Role::PlatformOperator, None, None, None));
    let a = create_tenant(&app, &operator, "Tenant A").await;
    let token = app.token(&claims("worker", mailsensor::auth::Role::Sensor, Some(a.id), None, Some(a.pcn_sensor)));
    let hand_off = async |key: &str| -> (u16, String) {
        let envelope = json!({"client_ip": "192.0.2.1", "helo": "mx", "mail_from": "a@example.org",
            "rcpt_to": ["b@example.com"], "tls": false, "worker": "w1"});
        let r = app
            .http
            .post(format!("{}/v1/sensors/{}/messages", app.base, a.pcn_sensor))
            .bearer_auth(&token)
            .header("content-type", "application/vnd.mailsensor.handoff")
            .header("idempotency-key", key)
            .body(format!("{envelope}\nSubject: same bytes\r\n\r\nsame bytes\r\n"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        (status, body["id"].as_str().unwrap_or_default().to_owned())
    };
    let (status, first) = hand_off("k1").await;
    assert_eq!(status, 201);
    assert_eq!(hand_off("k2").await, (200, first.clone()), "a retry within the window");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, second) = hand_off("k3").await;
    assert_eq!(status, 201, "past the window the same bytes are a new message");
    assert_ne!(second, first);
    assert_eq!(hand_off("k4").await, (200, second), "and its retries are recognised in turn");
    assert_eq!(hand_off("k1").await, (200, first), "an idempotency key is forever");
}

crate::on_both_backends!(the_dedup_window_ends);
