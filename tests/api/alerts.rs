//! Alerts through the API to receivers nobody here wrote: a webhook receiver verifying with the
//! `standardwebhooks` library (across a secret rotation), rsyslog over TCP and TLS with each CEF
//! record parsed by `pycef`, e-mail into a real Postfix read back from its mailbox, retro-hunt
//! events, and the faults: a receiver down then back, `503` with `Retry-After`,
//! a slow receiver, `410`, a private address without the operator's flag, and the replica killed
//! mid-delivery.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mailsensor::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A message the built-in checks call malicious, with `subject`.
fn malicious(subject: &str) -> String {
    format!(
        "From: a@example.org\r\nTo: b@example.com\r\nSubject: {subject}\r\nMessage-ID: <{}@test>\r\n\r\n{EICAR}\r\n",
        Uuid::new_v4()
    )
}

fn receivers() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/receivers")
}

fn python_has(module: &str) {
    let ok = Command::new("python3").args(["-c", &format!("import {module}")]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "Python's {module} is missing: `pip install standardwebhooks==1.1.0 aiohttp==3.14.5 pycef==1.11` (.ci/run installs them)"
    );
}

/// The webhook receiver (tests/receivers/webhook.py); killed on drop.
struct Receiver {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Receiver {
    fn start() -> Receiver {
        python_has("standardwebhooks");
        python_has("aiohttp");
        let dir = fresh_dir("webhook");
        let mut r = Receiver { child: None, dir, port: free_port() };
        r.answer(json!({"status": 200}));
        r.up();
        r
    }

    fn up(&mut self) {
        let child = Command::new("python3")
            .arg(receivers().join("webhook.py"))
            .arg(self.port.to_string())
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the webhook receiver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn answer(&self, control: Value) {
        std::fs::write(self.dir.join("control.json"), control.to_string()).unwrap();
    }

    fn trust(&self, secrets: &[&str]) {
        std::fs::write(self.dir.join("secrets.json"), json!(secrets).to_string()).unwrap();
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `n` requests arrived (at most `within`); returns them all.
    async fn until(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{} of {n} webhooks arrived in {within:?}: {got:#?}", got.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn destinations(tenant: &TenantFixture) -> String {
    format!("/v1/tenants/{}/alert-destinations", tenant.id)
}

/// A world whose replica delivers alerts to loopback (the operator's flag) with a 2 s timeout.
async fn alerting_world(allow_private: bool) -> World {
    alerting_world_on(Backend::Postgres, allow_private).await
}

/// The same on `backend`: PostgreSQL's delivery workers claim and record with statements of
/// their own, SQLite's (`mailsensor dev`) with portable ones.
async fn alerting_world_on(backend: Backend, allow_private: bool) -> World {
    world_configured(backend, |parts| {
        parts.alerts.allow_private = allow_private;
        parts.alerts.timeout = Duration::from_secs(2);
    })
    .await
}

async fn create(w: &World, body: Value) -> Value {
    let r = w.app.post(&destinations(&w.a), &w.admin_pcn(), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

/// The destination's deliveries until `done` holds for them (at most `within`).
async fn deliveries_until(w: &World, id: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let r = w.app.get(&format!("{}/{id}/deliveries", destinations(&w.a)), &w.admin_pcn()).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let items = r.body["items"].as_array().unwrap().clone();
        if done(&items) {
            return items;
        }
        assert!(Instant::now() < deadline, "the deliveries did not get there in {within:?}: {items:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

on_both_backends!(
    a_detection_reaches_a_webhook_signed_and_verified_across_a_rotation,
    faults_retry_after_down_and_back_slow_and_gone
);

async fn a_detection_reaches_a_webhook_signed_and_verified_across_a_rotation(backend: Backend) {
    let receiver = Receiver::start();
    let w = alerting_world_on(backend, true).await;
    let created = create(&w, json!({"name": "SOC", "webhook": {"url": receiver.url()}})).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    // Shown once: never in a read.
    let read = w.app.get(&format!("{}/{id}", destinations(&w.a)), &w.admin_pcn()).await;
    assert!(read.body.get("secret").is_none() && !read.body.to_string().contains(&secret), "{}", read.body);
    receiver.trust(&[&secret]);
    // Changes are conditional on the ETag when asked: a stale one is 412 and changes nothing.
    let etag = read.header("etag").unwrap().to_owned();
    let path = format!("{}/{id}", destinations(&w.a));
    let change = json!({"filters": {"min_verdict": "suspicious", "events": ["message.detected"]}});
    let r = w
        .app
        .call(reqwest::Method::PATCH, &path, Some(&w.admin_pcn()), Some(change.clone()), &[("if-match", &etag)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = w.app.call(reqwest::Method::PATCH, &path, Some(&w.admin_pcn()), Some(change), &[("if-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{:?}", r.body);

    // Clean mail raises nothing; malicious mail a signed message.detected.
    message_with(&w, &w.a, w.a.pcn_sensor, "Subject: hello\r\n\r\nLunch?\r\n").await;
    let message = message_with(&w, &w.a, w.a.pcn_sensor, &malicious("invoice")).await;
    let got = receiver.until(1, Duration::from_secs(20)).await;
    let hook = &got[0];
    assert_eq!(hook["verified"], json!([true]), "{hook}");
    let event = &hook["event"];
    assert_eq!(event["type"], "message.detected");
    assert_eq!(hook["id"], event["id"], "webhook-id is the event's id");
    assert_eq!(event["tenant_id"], json!(w.a.id));
    assert_eq!(event["sequence"], 1);
    assert_eq!(event["data"]["message"]["id"], json!(message));
    assert_eq!(event["data"]["message"]["verdict"], "malicious");
    assert_eq!(event["data"]["message"]["subject"], "invoice");
    assert_eq!(event["data"]["detections"][0]["kind"], "eicar_test_file");
    assert!(!event.to_string().contains("EICAR-STANDARD"), "the content itself is never sent: {event}");

    // The event is in the API too, and the delivery log says how it went.
    let events = w.app.get(&format!("/v1/tenants/{}/alert-events", w.a.id), &w.admin_pcn()).await;
    assert_eq!(events.body["items"][0]["id"], event["id"]);
    let log = deliveries_until(&w, &id, Duration::from_secs(5), |d| d[0]["state"] == "delivered").await;
    assert_eq!(log[0]["log"][0]["outcome"], "delivered");
    assert_eq!(log[0]["log"][0]["status"], 200);
    assert_eq!(log[0]["log"][0]["response"], "received");

    // Rotation: the new secret in this answer only; both sign for 24 h, each verifies alone.
    let rotated = w.app.post(&format!("{}/{id}/rotate-secret", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, secret);
    assert!(rotated.body["previous_secret_until"].is_string());
    receiver.trust(&[&secret, &new]);
    let test = w.app.post(&format!("{}/{id}/test", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
    assert_eq!(test.status, StatusCode::ACCEPTED, "{:?}", test.body);
    let got = receiver.until(2, Duration::from_secs(10)).await;
    assert_eq!(got[1]["event"]["type"], "destination.test");
    assert_eq!(got[1]["verified"], json!([true, true]), "both secrets sign: {}", got[1]);
    assert_eq!(got[1]["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(got[1]["event"]["sequence"], 2, "the tenant's sequence increases");

    // Tenant B's detection never reaches tenant A's destination.
    message_with(&w, &w.b, w.b.pcn_sensor, &malicious("b's mail")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.received().len(), 2);
    // Nor do others see A's destination.
    let b_admin = w.member(&w.b, Role::Administrator, w.b.pcn);
    assert_eq!(
        w.app.get(&format!("/v1/tenants/{}/alert-destinations/{id}", w.b.id), &b_admin).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.app.get(&format!("{}/{id}", destinations(&w.a)), &b_admin).await.status, StatusCode::NOT_FOUND);
    // Auditors read, never manage.
    let auditor = w.member(&w.a, Role::SecurityAuditor, w.a.pcn);
    assert_eq!(w.app.get(&format!("{}/{id}/deliveries", destinations(&w.a)), &auditor).await.status, StatusCode::OK);
    let r = w.app.post(&format!("{}/{id}/test", destinations(&w.a)), &auditor, json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

async fn faults_retry_after_down_and_back_slow_and_gone(backend: Backend) {
    let mut receiver = Receiver::start();
    let w = alerting_world_on(backend, true).await;
    let created = create(
        &w,
        json!({"name": "flaky", "webhook": {"url": receiver.url()}, "filters": {"events": ["message.detected"]}}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    receiver.trust(&[created["secret"].as_str().unwrap()]);
    let test = async || {
        let r = w.app.post(&format!("{}/{id}/test", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    };

    // 503 with Retry-After: 1 → tried again a second later, not after the schedule's 5 s.
    receiver.answer(json!({"status": 503, "retry_after": 1}));
    test().await;
    receiver.until(1, Duration::from_secs(10)).await;
    receiver.answer(json!({"status": 200}));
    let got = receiver.until(2, Duration::from_secs(4)).await;
    assert_eq!(got[0]["id"], got[1]["id"], "a retry carries the same webhook-id");
    let log =
        deliveries_until(&w, &id, Duration::from_secs(5), |d| d.last().is_some_and(|d| d["state"] == "delivered"))
            .await;
    let attempts = log.last().unwrap()["log"].as_array().unwrap();
    assert_eq!((attempts[0]["status"].as_i64(), attempts[0]["outcome"].as_str()), (Some(503), Some("failed")));
    assert_eq!(attempts[1]["outcome"], "delivered");

    // Down, then back: delivered once it is back (the first retry is 5 s later).
    receiver.down();
    test().await;
    deliveries_until(&w, &id, Duration::from_secs(10), |d| {
        d.len() == 2 && d[1]["attempts"] == 1 && d[1]["log"].as_array().is_some_and(|l| !l.is_empty())
    })
    .await;
    receiver.up();
    let got = receiver.until(3, Duration::from_secs(15)).await;
    assert_eq!(got[2]["event"]["type"], "destination.test");

    // Slow: no answer within the 2 s timeout is a failure, retried.
    receiver.answer(json!({"status": 200, "delay": 3}));
    test().await;
    let log = deliveries_until(&w, &id, Duration::from_secs(10), |d| {
        d.len() == 3 && !d[2]["log"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(log[2]["log"][0]["error"].as_str().unwrap().contains("no answer within 2 s"), "{}", log[2]);
    receiver.answer(json!({"status": 200}));
    deliveries_until(&w, &id, Duration::from_secs(15), |d| d[2]["state"] == "delivered").await;

    // 410 Gone disables the destination at once, and says so as an event.
    receiver.answer(json!({"status": 410}));
    test().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = w.app.get(&format!("{}/{id}", destinations(&w.a)), &w.admin_pcn()).await;
        if d.body["state"] == "disabled" {
            assert!(d.body["disabled_reason"].as_str().unwrap().contains("410"), "{}", d.body);
            break;
        }
        assert!(Instant::now() < deadline, "not disabled after a 410: {}", d.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = w.app.get(&format!("/v1/tenants/{}/alert-events?limit=100", w.a.id), &w.admin_pcn()).await;
    let kinds: Vec<&str> =
        events.body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"destination.disabled"), "{kinds:?}");
    // Resumed, it works again; the delivery log keeps every attempt.
    receiver.answer(json!({"status": 200}));
    let r = w.app.post(&format!("{}/{id}/resume", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
    assert_eq!(r.body["state"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_without_the_operators_flag() {
    let receiver = Receiver::start();
    let w = alerting_world(false).await;
    // An address in the URL: refused at once.
    let r =
        w.app.post(&destinations(&w.a), &w.admin_pcn(), json!({"name": "x", "webhook": {"url": receiver.url()}})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.pointers(), ["/webhook/url"]);
    for url in ["http://169.254.169.254/latest/meta-data", "http://[::1]:9/x", "http://10.0.0.1/"] {
        let r = w.app.post(&destinations(&w.a), &w.admin_pcn(), json!({"name": "x", "webhook": {"url": url}})).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {:?}", r.body);
    }
    // A name that resolves to loopback: refused when connecting, and the log says why.
    let url = format!("http://localhost:{}/hook", receiver.port);
    let created = create(&w, json!({"name": "sneaky", "webhook": {"url": url}})).await;
    let id = created["id"].as_str().unwrap();
    w.app.post(&format!("{}/{id}/test", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
    let log = deliveries_until(&w, id, Duration::from_secs(10), |d| {
        d.first().is_some_and(|d| !d["log"].as_array().unwrap().is_empty())
    })
    .await;
    let attempt = &log[0]["log"][0];
    assert_eq!(attempt["outcome"], "refused", "{attempt}");
    assert!(attempt["error"].as_str().unwrap().contains("loopback"), "{attempt}");
    assert!(receiver.received().is_empty(), "nothing reached the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_delivery_leaves_it_to_another_with_the_same_id() {
    let receiver = Receiver::start();
    let url = fresh_database(Backend::Postgres).await;
    let configure = |parts: &mut mailsensor::server::ServerParts| {
        parts.alerts.allow_private = true;
        parts.alerts.timeout = Duration::from_secs(2);
    };
    let first = start_configured(&url, "127.0.0.1:0", configure).await;
    let w = world_on(first).await;
    let created = create(&w, json!({"name": "SOC", "webhook": {"url": receiver.url()}})).await;
    receiver.trust(&[created["secret"].as_str().unwrap()]);
    // The receiver takes its time; the replica dies while the request is in flight.
    receiver.answer(json!({"status": 200, "delay": 1.5}));
    message_with(&w, &w.a, w.a.pcn_sensor, &malicious("during a crash")).await;
    receiver.until(1, Duration::from_secs(20)).await;
    w.app.stop().await;
    receiver.answer(json!({"status": 200}));
    // Another replica takes it over once the dead one's hold runs out (2 × 2 s + 5 s).
    let second = start_configured(&url, "127.0.0.1:0", configure).await;
    let got = receiver.until(2, Duration::from_secs(30)).await;
    assert_eq!(got[0]["id"], got[1]["id"], "delivered at least once, the duplicate with the same webhook-id");
    assert_eq!(got[1]["verified"], json!([true]));
    second.stop().await;
}

// -------------------------------------------------------------------------------------------
// Syslog, CEF.

/// A CA and a server certificate for `localhost` made for this test (openssl).
fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
        .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// rsyslog (Debian's) with a plain TCP input and a TLS one, writing each message's MSG to a file.
struct Rsyslog {
    child: Child,
    dir: PathBuf,
    tcp: u16,
    tls: u16,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let program = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].iter().map(PathBuf::from).find(|p| p.exists());
        let program = program
            .expect("rsyslogd is not installed: `apt-get install rsyslog rsyslog-gnutls` (.ci/run installs them)");
        python_has("pycef");
        let dir = fresh_dir("rsyslog");
        certificates(&dir);
        let (tcp, tls) = (free_port(), free_port());
        let d = dir.display();
        let config = format!(
            r#"global(workDirectory="{d}" maxMessageSize="64k"
       DefaultNetstreamDriverCAFile="{d}/ca.pem" DefaultNetstreamDriverCertFile="{d}/server.pem"
       DefaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp" MaxSessions="100")
template(name="msgonly" type="string" string="%msg%\n")
ruleset(name="alerts") {{ action(type="omfile" file="{d}/tcp.log" template="msgonly") }}
ruleset(name="alerts-tls") {{ action(type="omfile" file="{d}/tls.log" template="msgonly") }}
input(type="imtcp" port="{tcp}" address="127.0.0.1" ruleset="alerts")
input(type="imtcp" port="{tls}" address="127.0.0.1" ruleset="alerts-tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"#
        );
        std::fs::write(dir.join("rsyslog.conf"), config).unwrap();
        let child = Command::new(program)
            .args(["-n", "-f"])
            .arg(dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while [tcp, tls].iter().any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err()) {
            let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "rsyslogd did not start: {log}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Rsyslog { child, dir, tcp, tls }
    }

    /// The CEF records in `file`, parsed by pycef, once there are `n`.
    async fn records(&self, file: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let path = self.dir.join(file);
            let lines = std::fs::read_to_string(&path).unwrap_or_default().lines().count();
            if lines >= n {
                let out = Command::new("python3").arg(receivers().join("cef.py")).arg(&path).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                return serde_json::from_slice(&out.stdout).unwrap();
            }
            let log = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "{lines} of {n} records in {file}; rsyslogd: {log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// What a CEF extension value says, its escapes undone (pycef leaves them).
fn unescape(value: &str) -> String {
    let (mut out, mut chars) = (String::new(), value.chars());
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_cef_over_tcp_and_tls_reaches_rsyslog_field_by_field() {
    let rsyslog = Rsyslog::start();
    let w = alerting_world(true).await;
    let ca = std::fs::read_to_string(rsyslog.dir.join("ca.pem")).unwrap();
    create(&w, json!({"name": "SIEM tcp", "syslog": {"host": "127.0.0.1", "port": rsyslog.tcp, "transport": "tcp"}}))
        .await;
    create(&w, json!({"name": "SIEM tls", "syslog": {"host": "localhost", "port": rsyslog.tls, "transport": "tls", "ca_pem": ca}})).await;
    // A subject full of what CEF must escape.
    let subject = r"pay | now = \ today";
    let message = message_with(&w, &w.a, w.a.pcn_sensor, &malicious(subject)).await;
    message_with(&w, &w.a, w.a.pcn_sensor, &malicious("second")).await;
    for file in ["tcp.log", "tls.log"] {
        let records = rsyslog.records(file, 2).await;
        let first =
            records.iter().find(|r| r["externalId"] == json!(message)).unwrap_or_else(|| panic!("{records:#?}"));
        assert_eq!(first["DeviceVendor"], "mailsensor");
        assert_eq!(first["DeviceProduct"], "mailsensor");
        assert_eq!(first["DeviceVersion"], env!("CARGO_PKG_VERSION"));
        assert_eq!(first["DeviceEventClassID"], "message.detected");
        assert_eq!(first["Name"], "malicious message detected");
        assert_eq!(first["Severity"], "10");
        assert_eq!(unescape(first["msg"].as_str().unwrap()), subject, "{first}");
        assert_eq!(first["src"], "192.0.2.1");
        assert_eq!(first["suser"], "a@example.org");
        assert_eq!(first["duser"], "b@example.com");
        assert_eq!(first["dvchost"], "pcn-sensor");
        assert_eq!(first["verdict"], "malicious");
        assert_eq!(first["rule"], "eicar_test_file");
        assert_eq!(first["engine"], "builtin");
        assert_eq!(first["tenant"], json!(w.a.id));
        assert!(first["rt"].as_str().unwrap().parse::<i64>().is_ok());
        assert!(first["eventId"].as_str().unwrap().parse::<Uuid>().is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_refuse_bad_input_naming_every_field() {
    let w = alerting_world(true).await;
    let r = w
        .app
        .post(
            &destinations(&w.a),
            &w.admin_pcn(),
            json!({"name": "", "webhook": {"url": "ftp://x"}, "filters": {"min_verdict": "clean", "engines": ["av"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.pointers(), ["/name", "/webhook/url", "/filters"]);
    let r = w
        .app
        .post(
            &destinations(&w.a),
            &w.admin_pcn(),
            json!({"name": "x", "email": {"host": "relay", "port": 0, "security": "starttls", "from": "nobody", "to": []}, "filters": {"engines": ["av"], "events": ["nope"]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.pointers(), ["/email/port", "/email/from", "/email/to", "/filters/events/0", "/filters/engines/0"]);
    let r = w.app.post(&destinations(&w.a), &w.admin_pcn(), json!({"name": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let listed = w.app.get(&destinations(&w.a), &w.admin_pcn()).await;
    assert_eq!(listed.body["items"], json!([]), "nothing was created");
}

// -------------------------------------------------------------------------------------------
// E-mail.

/// A private Postfix (Debian's) on loopback that delivers every message for `alerts.test` into a
/// Maildir: the relay an e-mail destination hands its summaries to.
struct Postfix {
    dir: PathBuf,
    port: u16,
}

impl Postfix {
    fn start() -> Postfix {
        let program = ["/usr/sbin/postfix", "/sbin/postfix"].iter().map(PathBuf::from).find(|p| p.exists());
        let program = program.expect("postfix is not installed: `apt-get install postfix` (.ci/run installs it)");
        let dir = fresh_dir("postfix");
        let port = free_port();
        for sub in ["etc", "queue", "data", "vmail"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        let main_cf = format!(
            "compatibility_level = 3.6\nconfig_directory = {d}/etc\nqueue_directory = {d}/queue\n\
             data_directory = {d}/data\nmaillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n\
             myhostname = relay.alerts.test\nmydestination =\ninet_interfaces = loopback-only\n\
             inet_protocols = ipv4\nmynetworks = 127.0.0.0/8\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\nsmtpd_peername_lookup = no\n\
             alias_maps =\nalias_database =\n\
             virtual_mailbox_domains = alerts.test\nvirtual_mailbox_base = {d}/vmail\n\
             virtual_mailbox_maps = static:inbox/\nvirtual_uid_maps = static:65534\n\
             virtual_gid_maps = static:65534\nvirtual_transport = virtual\n"
        );
        std::fs::write(dir.join("etc/main.cf"), main_cf).unwrap();
        let master =
            std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/postfix/master.cf"))
                .unwrap()
                .lines()
                .map(|l| {
                    if l.starts_with("smtp      inet") {
                        format!("127.0.0.1:{port} inet n - n - - smtpd")
                    } else {
                        l.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\nvirtual   unix  -       n       n       -       -       virtual\n";
        std::fs::write(dir.join("etc/master.cf"), master).unwrap();
        Command::new("chown").arg("postfix").arg(dir.join("data")).status().unwrap();
        Command::new("chown").args(["65534:65534"]).arg(dir.join("vmail")).status().unwrap();
        let out = Command::new(program).arg("-c").arg(dir.join("etc")).arg("start").output().unwrap();
        let log = || std::fs::read_to_string(dir.join("maillog")).unwrap_or_default();
        assert!(out.status.success(), "Postfix did not start: {} {}", String::from_utf8_lossy(&out.stderr), log());
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Postfix is not accepting: {}", log());
            std::thread::sleep(Duration::from_millis(100));
        }
        Postfix { dir, port }
    }

    /// The messages delivered to the mailbox, once there are `n`.
    async fn mailbox(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let new = self.dir.join("vmail/inbox/new");
            let mut mails: Vec<String> = std::fs::read_dir(&new)
                .map(|entries| {
                    entries.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect()
                })
                .unwrap_or_default();
            if mails.len() >= n {
                mails.sort();
                return mails;
            }
            let log = std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default();
            assert!(Instant::now() < deadline, "{} of {n} e-mails delivered; Postfix: {log}", mails.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        Command::new("postfix").arg("-c").arg(self.dir.join("etc")).arg("stop").output().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_summary_reaches_a_mailbox_through_postfix_without_the_content() {
    let postfix = Postfix::start();
    let w = alerting_world(true).await;
    let created = create(
        &w,
        json!({"name": "SOC mail", "email": {"host": "127.0.0.1", "port": postfix.port, "security": "none",
               "from": "mailsensor@alerts.test", "to": ["soc@alerts.test", "ciso@alerts.test"]}}),
    )
    .await;
    assert_eq!(created["email"]["password_set"], false);
    assert!(created.get("secret").is_none(), "{created}");
    let message = message_with(&w, &w.a, w.a.pcn_sensor, &malicious("Invoice <overdue> & final")).await;
    let mails = postfix.mailbox(2).await;
    let link = format!("http://localhost:8080/v1/tenants/{}/messages/{message}", w.a.id);
    for mail in &mails {
        let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
        assert_eq!(parsed.subject(), Some("[mailsensor] malicious message: Invoice <overdue> & final"), "{mail}");
        let (text, html) = (parsed.body_text(0).unwrap(), parsed.body_html(0).unwrap());
        assert!(text.contains(&format!("In the API: {link}")), "a link to the message: {text}");
        assert!(text.contains("Client: 192.0.2.1") && text.contains("Recipients: b@example.com"), "{text}");
        assert!(html.contains("Invoice &lt;overdue&gt; &amp; final") && html.contains(&link), "escaped HTML: {html}");
        assert!(
            !mail.contains("EICAR-STANDARD") && !text.contains("EICAR-STANDARD"),
            "never the content itself: {mail}"
        );
    }
    let id = created["id"].as_str().unwrap().to_owned();
    let log = deliveries_until(&w, &id, Duration::from_secs(5), |d| d[0]["state"] == "delivered").await;
    assert_eq!(log[0]["log"][0]["status"], 250);
    let first_event = log[0]["event_id"].as_str().unwrap().to_owned();
    assert_eq!(events_of(&mails[0]), vec![first_event.clone()], "one alert, one mail: {}", mails[0]);

    // Alerts that piled up for the mailbox (here: while it was paused) go as digests, not one
    // mail apiece: with two delivery workers, three alerts make at most two mails.
    let r = w.app.post(&format!("{}/{id}/pause", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
    assert_eq!(r.body["state"], "paused", "{:?}", r.body);
    for n in 0..3 {
        message_with(&w, &w.a, w.a.pcn_sensor, &malicious(&format!("wave {n}"))).await;
    }
    let waiting = deliveries_until(&w, &id, Duration::from_secs(20), |d| d.len() == 4).await;
    let mut expected: Vec<String> = waiting[1..].iter().map(|d| d["event_id"].as_str().unwrap().to_owned()).collect();
    let r = w.app.post(&format!("{}/{id}/resume", destinations(&w.a)), &w.admin_pcn(), json!({})).await;
    assert_eq!(r.body["state"], "active", "{:?}", r.body);
    deliveries_until(&w, &id, Duration::from_secs(10), |d| d.iter().all(|d| d["state"] == "delivered")).await;
    // Each mail went to both recipients: one copy each, told apart by the Message-ID.
    let mut mails: Vec<String> =
        postfix.mailbox(2).await.into_iter().filter(|m| !events_of(m).contains(&first_event)).collect();
    mails.sort_by_key(|m| message_id_of(m));
    mails.dedup_by_key(|m| message_id_of(m));
    assert!((1..=2).contains(&mails.len()), "three alerts in one or two mails, not {}", mails.len());
    let mut got: Vec<String> = mails.iter().flat_map(|m| events_of(m)).collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every alert in exactly one mail");
    let digest = mails.iter().find(|m| events_of(m).len() > 1).expect("a digest of two or three alerts");
    let parsed = mail_parser::MessageParser::default().parse(digest.as_bytes()).unwrap();
    let n = events_of(digest).len();
    assert_eq!(parsed.subject(), Some(format!("[mailsensor] {n} alerts: {n} malicious").as_str()), "{digest}");
    let text = parsed.body_text(0).unwrap();
    assert!(text.starts_with(&format!("{n} alerts, oldest first.")), "{text}");
    assert_eq!(text.matches("In the API: http://localhost:8080/v1/tenants/").count(), n, "a link per alert: {text}");
    assert!(!digest.contains("EICAR-STANDARD"), "never the content itself: {digest}");
}

/// The event ids an alert mail carries (`X-Mailsensor-Events`).
fn events_of(mail: &str) -> Vec<String> {
    let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
    let header = parsed.header_raw("X-Mailsensor-Events").unwrap_or_default();
    header.split(',').map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()).collect()
}

fn message_id_of(mail: &str) -> String {
    let parsed = mail_parser::MessageParser::default().parse(mail.as_bytes()).unwrap();
    parsed.message_id().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrohunt_raises_matched_and_finished_events() {
    let receiver = Receiver::start();
    let w = alerting_world(true).await;
    let created = create(
        &w,
        json!({"name": "hunts", "webhook": {"url": receiver.url()},
        "filters": {"events": ["retrohunt.matched", "retrohunt.finished"]}}),
    )
    .await;
    receiver.trust(&[created["secret"].as_str().unwrap()]);
    let old = message_with(&w, &w.a, w.a.pcn_sensor, "Subject: old\r\n\r\npay campaign-9911 now\r\n").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let officer = w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn);
    let now = chrono::Utc::now();
    let hunt = json!({"source": "rule c9911 : apt {\n meta: severity = \"malicious\"\n strings: $a = \"campaign-9911\"\n condition: $a\n}\n",
        "since": (now - chrono::Duration::hours(1)).to_rfc3339(), "until": (now + chrono::Duration::hours(1)).to_rfc3339()});
    let r = w.app.post(&format!("/v1/tenants/{}/retrohunts", w.a.id), &officer, hunt).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let mut got = receiver.until(2, Duration::from_secs(30)).await;
    // Delivery does not keep order: receivers order by `sequence`.
    got.sort_by_key(|g| g["event"]["sequence"].as_i64());
    let kinds: Vec<&str> = got.iter().map(|g| g["event"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["retrohunt.matched", "retrohunt.finished"], "{got:#?}");
    assert_eq!(got[0]["event"]["data"]["message"]["id"], json!(old));
    assert_eq!(got[0]["event"]["data"]["detections"][0]["rule"], "c9911");
    assert_eq!(got[0]["event"]["data"]["retrohunt_id"], r.body["id"]);
    assert_eq!(got[1]["event"]["data"]["state"], "finished");
    assert_eq!(got[1]["event"]["data"]["matches"], 1);
}
