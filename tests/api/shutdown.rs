//! SIGTERM as an orchestrator sends it: `serve` and `dev` are gone at once when idle, even with a
//! worker's config stream open (the stream ends, so the worker resumes elsewhere).
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mailsensor::auth::{KeySet, Role};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::helpers::*;

/// Sends SIGTERM and waits for the exit: how long it took, and whether it was clean.
async fn terminate(child: &mut Child) -> (Duration, bool) {
    let pid = child.id().unwrap().to_string();
    let started = Instant::now();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("it exits").unwrap();
    (started.elapsed(), status.success())
}

async fn until_up(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/readyz")).await.map(|r| r.status() != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the server at {base} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_at_once_with_a_config_stream_open() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let db = std::env::temp_dir().join(format!("mailsensor-shutdown-{}.sqlite", uuid::Uuid::new_v4().simple()));
    let mut serve = Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .args(["--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE])
        .env("MAILSENSOR_JWT_HS256_SECRET", TEST_HS256_SECRET)
        .env("MAILSENSOR_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_up(&base).await;
    let keys = KeySet::from_config(&server_auth()).unwrap();
    let http = reqwest::Client::new();
    let post = async |path: String, token: &str, body: Value| -> Value {
        let r = http.post(format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap();
        r.json().await.unwrap()
    };
    let operator = keys.mint(&claims("olga", Role::PlatformOperator, None, None, None)).unwrap();
    let tenant = post("/v1/tenants".into(), &operator, json!({"name": "shutdown"})).await;
    let (t, pcn) =
        (tenant["id"].as_str().unwrap().parse().unwrap(), tenant["pcn"]["id"].as_str().unwrap().parse().unwrap());
    let admin = keys.mint(&claims("alice", Role::Administrator, Some(t), Some(pcn), None)).unwrap();
    let sensor = post(format!("/v1/tenants/{t}/sensors"), &admin, json!({"name": "s", "node_id": pcn})).await;
    let s = sensor["id"].as_str().unwrap().parse().unwrap();
    let worker = keys.mint(&claims("w", Role::Sensor, Some(t), None, Some(s))).unwrap();
    let stream = http.get(format!("{base}/v1/sensors/{s}/config-stream")).bearer_auth(&worker).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    let mut body = stream.bytes_stream();
    assert!(body.next().await.is_some(), "the stream is open");

    let (took, clean) = terminate(&mut serve).await;
    assert!(clean, "serve exits cleanly");
    assert!(took < Duration::from_secs(2), "serve took {took:?} to stop");
    // The stream ended, so the worker would resume against another replica.
    let rest = tokio::time::timeout(Duration::from_secs(5), async { while body.next().await.is_some() {} }).await;
    assert!(rest.is_ok(), "the config stream ended");
    let _ = std::fs::remove_file(&db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_stops_at_once() {
    let (api, smtp) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("mailsensor-dev-shutdown-{}", uuid::Uuid::new_v4().simple()));
    let mut dev = spawn_dev(&dir, api, smtp, Stdio::null());
    until_up(&format!("http://127.0.0.1:{api}")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", smtp)).await.is_err() {
        assert!(Instant::now() < deadline, "the demo worker did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (took, clean) = terminate(&mut dev).await;
    assert!(clean, "dev exits cleanly");
    assert!(took < Duration::from_secs(2), "dev took {took:?} to stop");
    let _ = std::fs::remove_dir_all(&dir);
}
