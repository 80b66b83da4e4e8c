//! `mailsensor dev`, as the README promises it: zero set-up, Swagger UI, the curl flow, mail to the
//! demo worker, and a second run that reuses the same data and secret.
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::helpers::{free_port, spawn_dev};

struct Dev {
    child: Child,
    base: String,
    tenant: String,
    pcn_sensor: String,
    tokens: std::collections::HashMap<String, String>,
    smtp: u16,
}

/// Starts `mailsensor dev` and reads what it prints until the worker is up.
async fn start_dev(dir: &std::path::Path) -> Dev {
    let (api, smtp) = (free_port(), free_port());
    let mut child = spawn_dev(dir, api, smtp, Stdio::piped());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut tenant, mut pcn_sensor, mut tokens) = (String::new(), String::new(), std::collections::HashMap::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("dev prints its banner within 60 s")
            .unwrap()
            .expect("dev keeps running");
        if let Some(rest) = line.strip_prefix("Demo tenant ") {
            tenant = rest.split(':').next().unwrap().to_owned();
        } else if let Some(rest) = line.strip_prefix("Sensors: ") {
            pcn_sensor = rest.split(' ').next().unwrap().to_owned();
        } else if let Some(rest) = line.trim().strip_prefix("export ") {
            let (name, token) = rest.split_once('=').unwrap();
            tokens.insert(name.to_owned(), token.to_owned());
        } else if line.starts_with("SMTP worker") {
            break;
        }
    }
    // Keep reading what it prints later: a closed pipe would make its next print fail.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Dev { child, base: format!("http://127.0.0.1:{api}"), tenant, pcn_sensor, tokens, smtp }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_readme_flow_and_keeps_its_data() {
    let dir = std::env::temp_dir().join(format!("mailsensor-dev-test-{}", uuid::Uuid::new_v4().simple()));
    let mut dev = start_dev(&dir).await;
    let http = reqwest::Client::new();
    assert_eq!(dev.tokens.len(), 6, "six tokens printed: {:?}", dev.tokens.keys());
    // The signing secret and the database are its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(""), mode("hs256.secret"), mode("mailsensor.sqlite")), (0o700, 0o600, 0o600));
    let docs = http.get(format!("{}/docs/", dev.base)).send().await.unwrap();
    assert_eq!(docs.status(), 200);

    // The README's curl flow: settings, evaluate, audit.
    let settings = format!("{}/v1/tenants/{}/sensors/{}/smtp-integration", dev.base, dev.tenant, dev.pcn_sensor);
    let admin = dev.tokens["ADMIN_PCN"].clone();
    let r: Value = http.get(&settings).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["enabled"], true, "the demo sensor on the PCN starts enabled: {r}");
    let r: Value = http
        .post(format!("{settings}/evaluate"))
        .bearer_auth(&dev.tokens["AUDITOR"])
        .json(&json!({"client_ip": "127.0.0.1", "recipients": ["bob@example.com"], "sensor_network": "127.0.0.0/8"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["accepted"], true, "{r}");

    // Mail to the demo worker, read back by an officer.
    let mut c = mail_send::SmtpClientBuilder::new("127.0.0.1".to_owned(), dev.smtp)
        .unwrap()
        .timeout(Duration::from_secs(20))
        .connect_plain()
        .await
        .unwrap();
    c.send(mail_send::smtp::message::Message::new(
        "alice@example.org",
        ["bob@example.com"],
        b"Subject: from the README\r\n\r\nhello\r\n".to_vec(),
    ))
    .await
    .unwrap();
    let messages = format!("{}/v1/tenants/{}/messages", dev.base, dev.tenant);
    // Stored at once; its headers and verdict come from the scan queue a moment later.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let r: Value = loop {
        let r: Value =
            http.get(&messages).bearer_auth(&dev.tokens["OFFICER"]).send().await.unwrap().json().await.unwrap();
        if r["items"][0]["verdict"] != "pending" || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(r["items"][0]["verdict"], "clean", "{r}");
    assert_eq!(r["items"][0]["headers"]["subject"], "from the README", "{r}");
    dev.child.kill().await.unwrap();

    // A second run finds the same tenant and data, and the first run's tokens still work.
    let mut again = start_dev(&dir).await;
    assert_eq!(again.tenant, dev.tenant);
    let settings = format!("{}/v1/tenants/{}/sensors/{}/smtp-integration", again.base, again.tenant, again.pcn_sensor);
    assert_eq!(http.get(&settings).bearer_auth(&admin).send().await.unwrap().status(), 200);
    let messages = format!("{}/v1/tenants/{}/messages", again.base, again.tenant);
    let r: Value = http.get(&messages).bearer_auth(&dev.tokens["OFFICER"]).send().await.unwrap().json().await.unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    again.child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
