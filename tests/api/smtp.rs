//! The sensor worker on real SMTP: every row of the reply-code table, the clients and blank-field
//! rules from different loopback source addresses, live settings changes, API outages, size limits,
//! STARTTLS, smuggling, and what each role may read of the stored messages.
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mail_send::smtp::message::Parameters;
use mail_send::{SmtpClient, SmtpClientBuilder};
use mailsensor::auth::Role;
use mailsensor::sensor::{self, RunningWorker, WorkerConfig, WorkerLimits};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

const EICAR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

fn worker_config(api: &str, token: String, sensor: Uuid) -> WorkerConfig {
    WorkerConfig {
        api: api.to_owned(),
        token,
        sensor_id: sensor,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: None,
        hostname: "sensor.test".into(),
        instance_id: format!("w-{}", &Uuid::new_v4().simple().to_string()[..8]),
        sensor_network: None,
        limits: WorkerLimits {
            idle_timeout: Duration::from_secs(20),
            handoff_timeout: Duration::from_secs(10),
            heartbeat: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            ..WorkerLimits::default()
        },
    }
}

/// Puts `settings` on the PCN sensor and starts a worker that has applied them.
pub(crate) async fn mx(w: &World, settings: Value, tweak: impl FnOnce(&mut WorkerConfig)) -> RunningWorker {
    mx_at(w, &w.a, w.a.pcn_sensor, settings, tweak).await
}

/// Puts `settings` on `sensor` of `tenant` and starts a worker that has applied them.
pub(crate) async fn mx_at(
    w: &World,
    tenant: &TenantFixture,
    sensor: Uuid,
    settings: Value,
    tweak: impl FnOnce(&mut WorkerConfig),
) -> RunningWorker {
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    let r = w.app.put(&tenant.settings_path(sensor), &admin, settings).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let revision = r.body["revision"].as_i64().unwrap();
    let mut config = worker_config(&w.app.base, w.sensor_token(tenant, sensor), sensor);
    tweak(&mut config);
    let worker = sensor::start(config).await.unwrap();
    until_worker_has(&worker, revision).await;
    until_fleet_has(w, tenant, sensor, revision).await;
    worker
}

/// Waits until the API has heard a worker acknowledge `revision`: only a worker the API knows of
/// counts in a write's `?wait=applied`.
async fn until_fleet_has(w: &World, tenant: &TenantFixture, sensor: Uuid, revision: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let path = format!("{}/workers", tenant.sensor_path(sensor));
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    loop {
        let fleet = w.app.get(&path, &admin).await;
        let items = fleet.body["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|i| i["applied_settings_revision"].as_i64() == Some(revision)) {
            return;
        }
        assert!(Instant::now() < deadline, "no worker acknowledged revision {revision}: {:?}", fleet.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_worker_has(worker: &RunningWorker, revision: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.settings_revision() != Some(revision) {
        assert!(
            Instant::now() < deadline,
            "worker did not apply revision {revision}: {:?}",
            worker.settings_revision()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn settings(domains: &[&str], clients: &[&str], size: Value) -> Value {
    json!({"enabled": true, "destination_domains": domains, "clients": clients, "message_size_limit": size})
}

pub(crate) fn unlimited() -> Value {
    json!({"unlimited": true})
}

fn from(addr: SocketAddr, source: &str) -> SmtpClientBuilder<String> {
    SmtpClientBuilder::new(addr.ip().to_string(), addr.port())
        .unwrap()
        .local_ip(source.parse::<IpAddr>().unwrap())
        .helo_host("client.test")
        .timeout(Duration::from_secs(20))
}

/// The reply code of a failed step (mail-send reports anything unexpected as an error).
fn code<T>(result: mail_send::Result<T>) -> u16 {
    match result {
        Ok(_) => 250,
        Err(mail_send::Error::UnexpectedReply(r)) => r.code(),
        Err(e) => panic!("not an SMTP reply: {e}"),
    }
}

/// The reply to one command: its code, and the enhanced code and text as one string.
async fn cmd(client: &mut SmtpClient<TcpStream>, line: &str) -> (u16, String) {
    let r = client.cmd(format!("{line}\r\n")).await.unwrap();
    let [a, b, c] = r.esc;
    let text = if a == 0 { r.message().to_owned() } else { format!("{a}.{b}.{c} {}", r.message()) };
    (r.code(), text)
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMessage-ID: <{}@test>\r\n\r\n{body}\r\n",
        Uuid::new_v4()
    )
}

pub(crate) async fn messages(w: &World) -> Vec<Value> {
    let r = w.app.get(&format!("/v1/tenants/{}/messages?limit=500", w.a.id), &w.admin_pcn()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// The `<id>` in a `250 2.0.0 <id> stored` reply.
fn stored_id(text: &str) -> String {
    text.split(['<', '>']).nth(1).unwrap_or_default().to_owned()
}

async fn reply_code_table(backend: Backend) {
    let w = world(backend).await;
    let sensor = w.a.pcn_sensor;

    // No settings yet: a worker whose API is unreachable has nothing to enforce.
    let mut lonely = worker_config("http://127.0.0.1:9", w.sensor_token(&w.a, sensor), sensor);
    lonely.admin_listen = None;
    let lonely = sensor::start(lonely).await.unwrap();
    let r = from(lonely.smtp_addr, "127.0.0.1").connect_plain().await;
    assert_eq!(code(r), 421, "no settings yet");
    lonely.shutdown().await;

    // Disabled (the defaults of a new sensor).
    let mut config = worker_config(&w.app.base, w.sensor_token(&w.a, sensor), sensor);
    config.admin_listen = None;
    let disabled = sensor::start(config).await.unwrap();
    until_worker_has(&disabled, 1).await;
    let r = from(disabled.smtp_addr, "127.0.0.1").connect_plain().await;
    let Err(mail_send::Error::UnexpectedReply(reply)) = r else { panic!("disabled sensor greeted") };
    assert_eq!((reply.code(), reply.esc), (421, [4, 3, 2]));
    disabled.shutdown().await;

    let worker = mx(
        &w,
        settings(
            &["example.com", "!hr.example.com"],
            &["127.0.0.2", "127.0.0.3"],
            json!({"unlimited": false, "value": 1, "unit": "KB"}),
        ),
        |_| {},
    )
    .await;
    let at = worker.smtp_addr;

    // Client not allowed: 554 instead of 220, then 503 to everything but QUIT.
    let mut raw = TcpStream::connect_std_from("127.0.0.9", at).await;
    assert!(read_reply(&mut raw).await.starts_with("554 5.7.1"));
    raw.write_all(b"EHLO x\r\nMAIL FROM:<a@b.c>\r\nQUIT\r\n").await.unwrap();
    assert!(read_reply(&mut raw).await.starts_with("503 5.7.1"));
    assert!(read_reply(&mut raw).await.starts_with("503 5.7.1"));
    assert!(read_reply(&mut raw).await.starts_with("221"));

    let mut c = from(at, "127.0.0.2").connect_plain().await.unwrap();
    let ehlo = c.ehlo("client.test").await.unwrap();
    assert_eq!(ehlo.size, 1024, "EHLO advertises the size limit");
    assert_eq!(cmd(&mut c, "DATA").await.0, 503, "DATA before MAIL");
    assert_eq!(cmd(&mut c, "RCPT TO:<x@example.com>").await.0, 503, "RCPT before MAIL");
    assert_eq!(
        cmd(&mut c, "MAIL FROM:<a@example.org> SIZE=2048").await,
        (552, "5.3.4 message size exceeds fixed maximum message size of 1024 bytes".into())
    );
    assert_eq!(cmd(&mut c, "MAIL FROM:<a@example.org> SIZE=100").await.0, 250);
    let (rcpt, text) = cmd(&mut c, "RCPT TO:<x@hr.example.com>").await;
    assert_eq!((rcpt, text.as_str()), (550, "5.7.1 <x@hr.example.com>: recipient domain not accepted by this sensor"));
    assert_eq!(cmd(&mut c, "RCPT TO:<x@elsewhere.test>").await.0, 550);
    assert_eq!(cmd(&mut c, "DATA").await.0, 554, "DATA with no accepted recipient");
    assert_eq!(cmd(&mut c, "RSET").await.0, 250);
    assert_eq!(cmd(&mut c, "VRFY bob").await.0, 252);
    assert_eq!(cmd(&mut c, "NOOP").await.0, 250);
    assert_eq!(cmd(&mut c, "HELP").await.0, 214);
    assert_eq!(cmd(&mut c, "STARTTLS").await.0, 502, "no certificate configured");
    assert_eq!(cmd(&mut c, "BOGUS").await.0, 500);

    // Over the limit while reading DATA: read to the end, then 552; nothing is stored.
    let before = messages(&w).await.len();
    c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    c.rcpt_to("x@sales.example.com", &Parameters::default()).await.unwrap();
    let big = message("big", &"y".repeat(2000));
    let r = c.data(big.as_bytes()).await;
    let Err(mail_send::Error::UnexpectedReply(reply)) = r else { panic!("oversized message accepted") };
    assert_eq!((reply.code(), reply.esc), (552, [5, 3, 4]));
    assert_eq!(messages(&w).await.len(), before, "an oversized message is never stored");

    // Accepted and stored: 250 with the id the API gave it.
    c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    c.rcpt_to("x@sales.example.com", &Parameters::default()).await.unwrap();
    let reply = c.data(message("small", "hello").as_bytes()).await.unwrap();
    assert_eq!((reply.code(), reply.esc), (250, [2, 0, 0]));
    let id = stored_id(reply.message());
    let stored = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
    assert_eq!(stored.status, 200, "250 means stored: {:?}", stored.body);
    assert_eq!(stored.body["envelope"]["rcpt_to"], json!(["x@sales.example.com"]));
    assert_eq!(stored.body["envelope"]["client_ip"], "127.0.0.2");
    assert_eq!(scanned(&w, &id).await.body["headers"]["subject"], "small");
    c.quit().await.unwrap();

    // Recipients: 100 accepted, the 101st gets 452 4.5.3.
    let mut c = from(at, "127.0.0.3").connect_plain().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    for i in 0..100 {
        assert_eq!(cmd(&mut c, &format!("RCPT TO:<r{i}@example.com>")).await.0, 250);
    }
    assert_eq!(cmd(&mut c, "RCPT TO:<r100@example.com>").await, (452, "4.5.3 too many recipients".into()));
    worker.shutdown().await;
}

trait ConnectFrom {
    async fn connect_std_from(source: &str, to: SocketAddr) -> TcpStream;
}

impl ConnectFrom for TcpStream {
    async fn connect_std_from(source: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
        socket.connect(to).await.unwrap()
    }
}

/// One reply (all its lines), as text.
async fn read_reply(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await.expect("a reply").unwrap();
        if n == 0 {
            break;
        }
        out.push(byte[0]);
        if out.ends_with(b"\r\n") {
            let text = String::from_utf8_lossy(&out).to_string();
            let last = text.trim_end().rsplit("\r\n").next().unwrap_or("").to_owned();
            if last.len() < 4 || last.as_bytes()[3] == b' ' {
                break;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

async fn blank_field_rules(backend: Backend) {
    let w = world(backend).await;
    // Both lists blank: only the worker's own subnet. On loopback that is 127.0.0.0/8…
    let worker = mx(&w, settings(&[], &[], unlimited()), |_| {}).await;
    assert!(from(worker.smtp_addr, "127.0.0.9").connect_plain().await.is_ok());
    worker.shutdown().await;
    // …and with the network given as 127.0.0.0/30, 127.0.0.9 is outside it.
    let narrow = |c: &mut WorkerConfig| c.sensor_network = Some("127.0.0.0/30".parse().unwrap());
    let worker = mx(&w, settings(&[], &[], unlimited()), narrow).await;
    assert_eq!(code(from(worker.smtp_addr, "127.0.0.9").connect_plain().await), 554);
    assert!(from(worker.smtp_addr, "127.0.0.2").connect_plain().await.is_ok());
    worker.shutdown().await;
    // Domains set, clients blank: any client, even outside the subnet; exclusions still apply.
    let worker = mx(&w, settings(&["example.com"], &["!127.0.0.5"], unlimited()), narrow).await;
    assert!(from(worker.smtp_addr, "127.0.0.9").connect_plain().await.is_ok());
    assert_eq!(code(from(worker.smtp_addr, "127.0.0.5").connect_plain().await), 554);
    worker.shutdown().await;
    // Longest prefix wins on real connections too.
    let worker =
        mx(&w, settings(&["example.com"], &["127.0.0.0/24", "!127.0.0.16/28", "127.0.0.20"], unlimited()), |_| {})
            .await;
    for (source, expected) in [("127.0.0.1", 250), ("127.0.0.17", 554), ("127.0.0.20", 250), ("127.0.1.1", 554)] {
        assert_eq!(code(from(worker.smtp_addr, source).connect_plain().await), expected, "{source}");
    }
    worker.shutdown().await;
}

async fn settings_change_governs_the_next_session(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    let mut open = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
    open.ehlo("client.test").await.unwrap();
    let r = w
        .app
        .patch(
            &format!("{}?wait=applied&timeout=10", w.a.settings_path(w.a.pcn_sensor)),
            &w.admin_pcn(),
            json!({"destination_domains": ["example.net"]}),
        )
        .await;
    assert_eq!(r.body["rollout"]["complete"], true, "{:?}", r.body);
    assert_eq!(worker.settings_revision(), r.body["revision"].as_i64());
    // The open session keeps the settings it started with…
    open.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    assert_eq!(cmd(&mut open, "RCPT TO:<x@example.com>").await.0, 250);
    // …the next session runs the new ones.
    let mut next = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
    next.ehlo("client.test").await.unwrap();
    next.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    assert_eq!(cmd(&mut next, "RCPT TO:<x@example.com>").await.0, 550);
    assert_eq!(cmd(&mut next, "RCPT TO:<x@example.net>").await.0, 250);
    // Disabling closes the door for new sessions.
    let r = w
        .app
        .patch(
            &format!("{}?wait=applied&timeout=10", w.a.settings_path(w.a.pcn_sensor)),
            &w.admin_pcn(),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.body["rollout"]["complete"], true);
    assert_eq!(code(from(worker.smtp_addr, "127.0.0.1").connect_plain().await), 421);
    worker.shutdown().await;
}

/// API stopped: 451 and nothing half-stored; the sender's retry after the API is back is stored once.
async fn api_outage_means_451_and_nothing_lost(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    let address = w.app.address().to_owned();
    let body = message("retry me", "important");
    w.app.stop().await;
    let mut c = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    c.rcpt_to("bob@example.com", &Parameters::default()).await.unwrap();
    let r = c.data(body.as_bytes()).await;
    let Err(mail_send::Error::UnexpectedReply(reply)) = r else { panic!("accepted while the API is down") };
    assert_eq!((reply.code(), reply.esc), (451, [4, 3, 0]));
    // The sender retries later, the API is back.
    let api = start_on(&w.app.url, &address).await;
    c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    c.rcpt_to("bob@example.com", &Parameters::default()).await.unwrap();
    let reply = c.data(body.as_bytes()).await.unwrap();
    assert_eq!(reply.code(), 250);
    let all = api.get(&format!("/v1/tenants/{}/messages", w.a.id), &w.admin_pcn()).await;
    let items = all.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "stored exactly once: {items:?}");
    let id = items[0]["id"].as_str().unwrap();
    let m = api.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
    assert!(m.body["verdict"] == "pending" || m.body["headers"]["subject"] == "retry me", "{:?}", m.body);
    worker.shutdown().await;
    api.stop().await;
}

/// While the API cannot be reached the worker says so: `/readyz` answers 503 with the plain cause,
/// and new sessions get `421 4.3.0` at the greeting instead of reading a message to refuse it.
async fn worker_health_follows_the_api(backend: Backend) {
    let w = world(backend).await;
    let worker =
        mx(&w, settings(&["example.com"], &[], unlimited()), |c| c.limits.api_grace = Duration::from_secs(1)).await;
    let readyz = format!("http://{}/readyz", worker.admin_addr.unwrap());
    let ready = async || {
        let r = reqwest::get(&readyz).await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap()["status"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(ready().await.0, 200);
    let greeting = async || {
        let mut stream = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
        read_reply(&mut stream).await
    };
    let address = w.app.address().to_owned();
    w.app.stop().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, why) = loop {
        let (status, why) = ready().await;
        if status == 503 {
            break (status, why);
        }
        assert!(Instant::now() < deadline, "still ready with the API down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 503);
    assert!(why.contains("unreachable") && why.to_lowercase().contains("refused"), "{why}");
    assert!(!why.contains("Error {") && !why.contains("Unreachable("), "plain words, not debug text: {why}");
    assert!(greeting().await.starts_with("421 4.3.0"));

    let api = start_on(&w.app.url, &address).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready().await.0 != 200 {
        assert!(Instant::now() < deadline, "not ready again after the API came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(greeting().await.starts_with("220"));
    worker.shutdown().await;
    api.stop().await;
}

async fn starttls(backend: Backend) {
    let w = world(backend).await;
    let tls = sensor::tls::acceptor(&fixture("tls/cert.pem"), &fixture("tls/key.pem")).unwrap();
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |c| c.tls = Some(tls)).await;
    let mut plain = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
    let ehlo = plain.ehlo("client.test").await.unwrap();
    assert!(ehlo.has_capability(smtp_proto::EXT_START_TLS), "STARTTLS offered");
    let mut c = from(worker.smtp_addr, "127.0.0.1").allow_invalid_certs().implicit_tls(false).connect().await.unwrap();
    let reply = c
        .send(mail_send::smtp::message::Message::new(
            "a@example.org",
            ["bob@example.com"],
            message("tls", "secret").into_bytes(),
        ))
        .await;
    let reply = reply.unwrap();
    let id = stored_id(reply.message());
    let stored = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
    assert_eq!(stored.body["envelope"]["tls"], true);
    worker.shutdown().await;
}

/// Bare LF cannot end a message or smuggle a second one, pipelined commands are answered in order,
/// over-long lines are refused, and a client cannot open more than its share of sessions.
async fn protocol_edges(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |c| c.limits.max_sessions_per_ip = 3).await;
    let at = worker.smtp_addr;
    let before = messages(&w).await.len();

    let mut s = TcpStream::connect_std_from("127.0.0.1", at).await;
    assert!(read_reply(&mut s).await.starts_with("220 sensor.test"));
    // Pipelined: every reply comes back, in order.
    s.write_all(b"EHLO smuggler.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        .await
        .unwrap();
    assert!(read_reply(&mut s).await.contains("250 HELP"));
    assert!(read_reply(&mut s).await.starts_with("250 2.1.0"));
    assert!(read_reply(&mut s).await.starts_with("250 2.1.5"));
    assert!(read_reply(&mut s).await.starts_with("354"));
    // A smuggling attempt: "\n.\n" must not end the data, and the message carrying it is refused.
    s.write_all(b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n").await.unwrap();
    let reply = read_reply(&mut s).await;
    assert!(reply.starts_with("554 5.5.2"), "{reply}");
    // The "smuggled" commands were data, not commands: the session is simply ready for more.
    s.write_all(b"NOOP\r\n").await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("250"));
    // Over-long command line.
    s.write_all(format!("NOOP {}\r\n", "x".repeat(600)).as_bytes()).await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("500 5.5.2"));
    // Over-long text line in DATA.
    s.write_all(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n").await.unwrap();
    for _ in 0..3 {
        read_reply(&mut s).await;
    }
    s.write_all(format!("Subject: long\r\n\r\n{}\r\n.\r\n", "z".repeat(1200)).as_bytes()).await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("554 5.5.2"));
    assert_eq!(messages(&w).await.len(), before, "nothing refused was stored");

    // A dot-stuffed first line is unstuffed, and a lone "." right after DATA ends an empty message.
    s.write_all(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n").await.unwrap();
    for _ in 0..3 {
        read_reply(&mut s).await;
    }
    s.write_all(b"..starts with a dot\r\nSubject: dots\r\n.\r\n").await.unwrap();
    let reply = read_reply(&mut s).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let raw = w.app.get(&format!("/v1/tenants/{}/messages/{}/raw", w.a.id, stored_id(&reply)), &w.admin_pcn()).await;
    assert_eq!(raw.body, json!(".starts with a dot\r\nSubject: dots\r\n"));
    s.write_all(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n").await.unwrap();
    for _ in 0..3 {
        read_reply(&mut s).await;
    }
    s.write_all(b".\r\n").await.unwrap();
    assert!(read_reply(&mut s).await.starts_with("250 2.0.0"), "an empty message ends at once");

    // Per-client session limit: 3 open (this one plus two), the fourth gets 421.
    let _a = TcpStream::connect_std_from("127.0.0.1", at).await;
    let _b = TcpStream::connect_std_from("127.0.0.1", at).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = TcpStream::connect_std_from("127.0.0.1", at).await;
    assert!(read_reply(&mut d).await.starts_with("421 4.7.0"));
    // Another client address is not affected.
    let mut e = TcpStream::connect_std_from("127.0.0.2", at).await;
    assert!(read_reply(&mut e).await.starts_with("220"));
    worker.shutdown().await;
}

/// A client that goes quiet is told so and disconnected after the idle timeout; a worker at its
/// session limit answers 421 to the next client.
async fn idle_timeout_and_worker_limit(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |c| {
        c.limits.idle_timeout = Duration::from_millis(800);
        c.limits.max_sessions = 2;
    })
    .await;
    let mut quiet = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    assert!(read_reply(&mut quiet).await.starts_with("220"));
    let mut busy = TcpStream::connect_std_from("127.0.0.2", worker.smtp_addr).await;
    assert!(read_reply(&mut busy).await.starts_with("220"));
    let mut third = TcpStream::connect_std_from("127.0.0.3", worker.smtp_addr).await;
    assert!(read_reply(&mut third).await.starts_with("421 4.7.0"), "the worker is full");
    let started = Instant::now();
    assert!(read_reply(&mut quiet).await.starts_with("421 4.4.2"));
    assert!(started.elapsed() >= Duration::from_millis(500));
    let mut rest = Vec::new();
    assert_eq!(quiet.read_to_end(&mut rest).await.unwrap(), 0, "and the connection is closed");
    worker.shutdown().await;
}

/// Sends `bytes` one at a time, `every` apart, until the worker answers or closes; returns what
/// it answered and how long that took.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], every: Duration) -> (String, Duration) {
    let started = Instant::now();
    for b in bytes.iter().cycle() {
        if stream.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut peek = [0u8; 1];
        match tokio::time::timeout(every, stream.peek(&mut peek)).await {
            Ok(Ok(_)) => break,
            Ok(Err(_)) => break,
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(20), "a trickling client is never cut off");
    }
    (read_reply(stream).await, started.elapsed())
}

/// A slowloris: a command line, or a message, sent a byte at a time just inside the idle
/// timeout, is cut off all the same; so is a session that only ever says NOOP.
async fn slow_clients_are_cut_off(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |c| {
        c.limits.idle_timeout = Duration::from_millis(1500);
        c.limits.session_timeout = Duration::from_secs(4);
        c.limits.min_data_rate = 1000;
        c.limits.data_rate_grace = Duration::from_millis(1500);
    })
    .await;
    // One command line trickled in: each byte well inside the idle timeout, the line not.
    let mut slow = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    assert!(read_reply(&mut slow).await.starts_with("220"));
    let (reply, took) = trickle(&mut slow, b"EHLO slow.example.test", Duration::from_millis(300)).await;
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // A message trickled in after DATA: below the minimum rate once the grace has passed.
    let mut data = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    read_reply(&mut data).await;
    for line in ["EHLO x.test\r\n", "MAIL FROM:<a@example.org>\r\n", "RCPT TO:<b@example.com>\r\n", "DATA\r\n"] {
        data.write_all(line.as_bytes()).await.unwrap();
        read_reply(&mut data).await;
    }
    let (reply, took) = trickle(&mut data, b"Subject: slow\r\n", Duration::from_millis(300)).await;
    assert!(reply.starts_with("421 4.4.2"), "{reply:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(messages(&w).await.is_empty(), "nothing stored");

    // A session that stays busy with NOOPs ends at the session time limit.
    let mut busy = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    read_reply(&mut busy).await;
    let started = Instant::now();
    let reply = loop {
        busy.write_all(b"NOOP\r\n").await.unwrap();
        let reply = read_reply(&mut busy).await;
        if !reply.starts_with("250") {
            break reply;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the session never ends");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(reply.starts_with("421 4.4.2 session time limit"), "{reply:?}");
    worker.shutdown().await;
}

/// Refused clients that stay connected are closed after a short grace, so a flood of them cannot
/// hold the worker's session slots.
async fn refused_client_flood(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &["127.0.0.1"], unlimited()), |c| {
        c.limits.max_sessions = 3;
        c.limits.refused_grace = Duration::from_millis(700);
    })
    .await;
    let mut refused = Vec::new();
    for i in 0..3 {
        let mut stream = TcpStream::connect_std_from(&format!("127.0.0.{}", 10 + i), worker.smtp_addr).await;
        assert!(read_reply(&mut stream).await.starts_with("554 5.7.1"));
        refused.push(stream);
    }
    let mut full = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    assert!(read_reply(&mut full).await.starts_with("421 4.7.0"), "the refused clients hold every slot for now");
    for stream in &mut refused {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(_))), "a refused client is closed after its grace");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut allowed = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    assert!(read_reply(&mut allowed).await.starts_with("220"), "the slots are free again");
    worker.shutdown().await;
}

/// Addresses are kept as the client wrote them (a quoted local part keeps its quotes, so the domain
/// is the one after the quotes), and a recipient named twice is stored once.
async fn addresses_as_written(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    let mut s = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    read_reply(&mut s).await;
    let mut say = async |line: &str| {
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        read_reply(&mut s).await
    };
    say("EHLO client.test").await;
    assert!(say("MAIL FROM:<\"a b\"@example.org>").await.starts_with("250"));
    let quoted = say("RCPT TO:<\"john doe\"@example.com>").await;
    assert!(quoted.starts_with("250") && quoted.contains("<\"john doe\"@example.com>"), "{quoted:?}");
    let tricky = say("RCPT TO:<\"x@example.com\"@evil.test>").await;
    assert!(tricky.starts_with("550") && tricky.contains("<\"x@example.com\"@evil.test>"), "{tricky:?}");
    assert!(say("RCPT TO:<bob@example.com>").await.starts_with("250"));
    assert!(say("RCPT TO:<bob@example.com>").await.starts_with("250"), "a repeat is accepted");
    assert!(say("DATA").await.starts_with("354"));
    assert!(say("Subject: as written\r\n\r\nhi\r\n.").await.starts_with("250"));
    let stored = messages(&w).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["envelope"]["mail_from"], "\"a b\"@example.org");
    assert_eq!(stored[0]["envelope"]["rcpt_to"], json!(["\"john doe\"@example.com", "bob@example.com"]));
    worker.shutdown().await;
}

/// A NUL byte in a command can never be stored: it is refused for good (5xx) at once, rather than
/// read, handed off, refused by the API and answered 451 on every retry.
async fn nul_in_commands_is_refused_for_good(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    let mut s = TcpStream::connect_std_from("127.0.0.1", worker.smtp_addr).await;
    read_reply(&mut s).await;
    for line in ["HELO mx\0.example.org", "MAIL FROM:<a\0b@example.org>"] {
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        let reply = read_reply(&mut s).await;
        assert!(reply.starts_with("501 5.5.2"), "{line:?}: {reply:?}");
    }
    // The session goes on for what can be stored.
    for (line, code) in
        [("EHLO mx.example.org", "250"), ("MAIL FROM:<a@example.org>", "250"), ("RCPT TO:<b@example.com>", "250")]
    {
        s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        assert!(read_reply(&mut s).await.starts_with(code), "{line}");
    }
    worker.shutdown().await;
}

/// A client nobody here wrote: Python's smtplib.
async fn python_smtplib_client(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(
        &w,
        settings(&["example.com", "!hr.example.com"], &[], json!({"unlimited": false, "value": 5, "unit": "MB"})),
        |_| {},
    )
    .await;
    let run = |rcpts: &[&str], body: String| {
        let mut args = vec![
            fixture("../clients/smtplib_send.py").display().to_string(),
            worker.smtp_addr.ip().to_string(),
            worker.smtp_addr.port().to_string(),
            "alice@example.org".to_owned(),
        ];
        args.extend(rcpts.iter().map(|r| r.to_string()));
        async move {
            let mut child = tokio::process::Command::new("python3")
                .args(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs (install it to run this test)");
            child.stdin.take().unwrap().write_all(body.as_bytes()).await.unwrap();
            let out = child.wait_with_output().await.unwrap();
            assert!(out.status.success(), "smtplib failed");
            serde_json::from_slice::<Value>(&out.stdout).unwrap()
        }
    };
    let result = run(&["bob@example.com", "carol@hr.example.com"], message("via smtplib", "hello from python")).await;
    assert_eq!(result["ehlo"], 250);
    assert_eq!(result["size_limit"], 5 * 1024 * 1024);
    assert!(result["esmtp_features"].as_array().unwrap().contains(&json!("pipelining")));
    assert_eq!(result["data"], 250);
    assert_eq!(result["refused"]["carol@hr.example.com"][0], 550);
    until_none_pending(&w).await;
    let stored = messages(&w).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["envelope"]["rcpt_to"], json!(["bob@example.com"]));
    assert_eq!(stored[0]["headers"]["subject"], "via smtplib");
    worker.shutdown().await;
}

/// Archives written by Python's own zipfile and gzip modules (Info-ZIP's zip for the encrypted
/// one), sent with smtplib: every member is
/// scanned, each detection names its member, and what the bounds stop is said, not skipped.
async fn archives_python_wrote_are_opened(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    // (sample, verdict, the detection kind and archive path expected, if any)
    type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a [&'a str])>);
    let cases: [Case; 7] = [
        ("zip_deflate", "malicious", Some(("eicar_test_file", &["eicar.com"]))),
        ("zip_in_zip", "malicious", Some(("eicar_test_file", &["inner.zip", "docs/eicar.txt"]))),
        ("gzip", "malicious", Some(("eicar_test_file", &["(gzip content)"]))),
        ("zip_bomb", "suspicious", Some(("archive_bomb", &["zeros.bin"]))),
        ("encrypted_zip", "suspicious", Some(("encrypted_archive", &["secret.doc"]))),
        ("zip_exe", "suspicious", Some(("executable_content", &["holiday.jpg.exe"]))),
        ("plain_zip", "clean", None),
    ];
    for (sample, _, _) in &cases {
        send_sample(&worker, sample, "bob@example.com").await;
    }
    until_none_pending(&w).await;
    let stored = messages(&w).await;
    for (sample, verdict, detection) in cases {
        let subject = format!("sample {sample}");
        let m = stored.iter().find(|m| m["headers"]["subject"] == subject.as_str()).expect(&subject);
        assert_eq!(m["verdict"], verdict, "{sample}: {m}");
        if let Some((kind, path)) = detection {
            let found = m["detections"].as_array().unwrap();
            assert!(
                found.iter().any(|d| d["kind"] == kind && d["archive_path"] == json!(path) && d["part"] == 1),
                "{sample}: no {kind} at {path:?} in {found:?}"
            );
        } else {
            assert_eq!(m["detections"], json!([]), "{sample}");
        }
    }
    worker.shutdown().await;
}

/// Sends `sample` (see tests/clients/send_sample.py) to `rcpt` through `worker` with smtplib.
pub(crate) async fn send_sample(worker: &sensor::RunningWorker, sample: &str, rcpt: &str) {
    let out = tokio::process::Command::new("python3")
        .arg(fixture("../clients/send_sample.py"))
        .args([&worker.smtp_addr.ip().to_string(), &worker.smtp_addr.port().to_string(), sample, rcpt])
        .output()
        .await
        .expect("python3 runs (install it to run this test)");
    assert!(out.status.success(), "{sample}: {}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["data"], 250, "{sample}: {result}");
}

/// The platform's YARA rules, from a folder as an operator gives them (`--yara-rules`): the demo
/// ruleset and a rule of the operator's that uses the globals. Mail sent with smtplib; verdicts
/// and the rule, namespace, tags and object of each detection read back through the API.
async fn platform_yara_rules_scan_every_object(backend: Backend) {
    let dir = fresh_dir("yara-rules");
    std::fs::write(dir.join("demo.yar"), mailsensor::scan::yara::demo_rules().text).unwrap();
    std::fs::write(
        dir.join("finance.yar"),
        "rule script_to_finance : finance {\n  meta: severity = \"malicious\"\n  condition: filename matches /\\.js$/ \
         and for any d in recipient_domains : (d == \"finance.example.com\")\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("README.txt"), "not a rules file: ignored").unwrap();
    let rules = mailsensor::scan_queue::Engines::yara_from_dir(&dir).expect("the rules compile");
    let w = world_configured(backend, |parts| parts.engines.yara = Some(rules)).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    for (sample, rcpt) in [
        ("html_smuggling", "bob@example.com"),
        ("pdf_openaction", "bob@example.com"),
        ("js_attachment", "ann@finance.example.com"),
        ("js_attachment", "bob@sales.example.com"),
        ("zip_deflate", "bob@example.com"),
    ] {
        send_sample(&worker, sample, rcpt).await;
    }
    until_none_pending(&w).await;
    let stored = messages(&w).await;
    let find = |sample: &str, rcpt: &str| {
        stored
            .iter()
            .find(|m| m["headers"]["subject"] == format!("sample {sample}").as_str() && m["headers"]["to"] == rcpt)
            .unwrap_or_else(|| panic!("{sample} to {rcpt} not stored"))
            .clone()
    };
    let rules_of = |m: &Value| -> Vec<(String, String, Value, Value)> {
        m["detections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["engine"] == "yara")
            .map(|d| {
                (
                    d["namespace"].as_str().unwrap().to_owned(),
                    d["rule"].as_str().unwrap().to_owned(),
                    d["part"].clone(),
                    d["tags"].clone(),
                )
            })
            .collect()
    };
    let smuggling = find("html_smuggling", "bob@example.com");
    assert_eq!(smuggling["verdict"], "malicious");
    // Which engines looked, with what: the built-in checks and the rules of both files.
    let engines = smuggling["engines"].as_array().unwrap();
    let looked: Vec<(&str, &str)> =
        engines.iter().map(|e| (e["engine"].as_str().unwrap(), e["status"].as_str().unwrap())).collect();
    assert_eq!(looked, [("builtin", "ok"), ("yara", "ok")]);
    assert_eq!(engines[1]["version"], "yara-x 1.22.1");
    assert!(engines[1]["database"].as_str().unwrap().starts_with("4 rules, sha256 "), "{}", engines[1]);
    assert_eq!(rules_of(&smuggling), [("demo".into(), "html_smuggling".into(), json!(1), json!(["smuggling"]))]);
    let pdf = find("pdf_openaction", "bob@example.com");
    assert_eq!(pdf["verdict"], "malicious");
    assert_eq!(rules_of(&pdf), [("demo".into(), "pdf_openaction_javascript".into(), json!(1), json!(["pdf"]))]);
    // The same script: malicious to finance, only its risky extension elsewhere.
    let to_finance = find("js_attachment", "ann@finance.example.com");
    assert_eq!(to_finance["verdict"], "malicious");
    assert_eq!(rules_of(&to_finance), [("finance".into(), "script_to_finance".into(), json!(1), json!(["finance"]))]);
    let to_sales = find("js_attachment", "bob@sales.example.com");
    assert_eq!(to_sales["verdict"], "suspicious");
    assert_eq!(rules_of(&to_sales), []);
    // Listed by engine and rule (a YARA rule's name or a built-in kind, on the same detection).
    let listed = |query: &'static str| {
        let w = &w;
        async move {
            let r = w.app.get(&format!("/v1/tenants/{}/messages?{query}", w.a.id), &w.admin_pcn()).await;
            assert_eq!(r.status, 200, "{query}: {:?}", r.body);
            let mut subjects: Vec<String> = r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    format!("{} to {}", m["headers"]["subject"].as_str().unwrap(), m["headers"]["to"].as_str().unwrap())
                })
                .collect();
            subjects.sort();
            subjects
        }
    };
    assert_eq!(listed("engine=yara&rule=html_smuggling").await, ["sample html_smuggling to bob@example.com"]);
    assert_eq!(listed("rule=script_to_finance").await, ["sample js_attachment to ann@finance.example.com"]);
    assert_eq!(listed("rule=eicar_test_file&engine=builtin").await, ["sample zip_deflate to bob@example.com"]);
    assert_eq!(listed("rule=eicar_test_file&engine=yara").await, Vec::<String>::new());
    assert_eq!(listed("engine=yara&verdict=malicious").await.len(), 3);
    assert_eq!(listed("rule=").await.len(), 5, "an empty free-text filter is no filter");
    let r = w.app.get(&format!("/v1/tenants/{}/messages?engine=sophos", w.a.id), &w.admin_pcn()).await;
    assert_eq!((r.status.as_u16(), r.body["errors"][0]["parameter"].as_str()), (422, Some("engine")), "{:?}", r.body);

    // Built-in detections say so.
    let zip = find("zip_deflate", "bob@example.com");
    let eicar = zip["detections"].as_array().unwrap().iter().find(|d| d["kind"] == "eicar_test_file").unwrap().clone();
    assert_eq!((eicar["engine"].as_str(), eicar["rule"].is_null()), (Some("builtin"), true));
    worker.shutdown().await;
    std::fs::remove_dir_all(&dir).ok();
}

/// The message once the scan queue has given it a verdict (it reads `pending` until then).
pub(crate) async fn scanned(w: &World, id: &str) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
        assert_eq!(m.status, 200, "{:?}", m.body);
        if m.body["verdict"] != "pending" {
            return m;
        }
        assert!(Instant::now() < deadline, "message {id} still pending after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn until_none_pending(w: &World) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = w.app.get(&format!("/v1/tenants/{}/messages?verdict=pending", w.a.id), &w.admin_pcn()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        if r.body["items"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "messages still pending after 20 s: {:?}", r.body["items"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scanning: an EICAR attachment is found inside the base64 attachment, and the verdict is readable.
async fn verdicts(backend: Backend) {
    use base64::Engine;
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    let attachment = base64::engine::general_purpose::STANDARD.encode(EICAR);
    let eicar = format!(
        "From: a@example.org\r\nTo: b@example.com\r\nSubject: test file\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{attachment}\r\n--b1--\r\n"
    );
    let mut c = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
    let reply = c
        .send(mail_send::smtp::message::Message::new("a@example.org", ["b@example.com"], eicar.into_bytes()))
        .await
        .unwrap();
    let id = stored_id(reply.message());
    c.send(mail_send::smtp::message::Message::new(
        "a@example.org",
        ["b@example.com"],
        message("fine", "nothing to see").into_bytes(),
    ))
    .await
    .unwrap();
    let officer = w.member(&w.a, Role::SecurityOfficer, w.a.pcn);
    let m = scanned(&w, &id).await;
    assert_eq!(m.body["verdict"], "malicious");
    assert_eq!(m.body["detections"][0]["kind"], "eicar_test_file");
    let part = m.body["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "eicar.com")
        .cloned()
        .expect("the attachment is listed");
    assert_eq!(part["size"], 68);
    assert_eq!(part["is_attachment"], true);
    assert_eq!(part["sha256"], "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f");
    let malicious = w.app.get(&format!("/v1/tenants/{}/messages?verdict=malicious", w.a.id), &officer).await;
    assert_eq!(malicious.body["items"].as_array().unwrap().len(), 1);
    until_none_pending(&w).await;
    let clean = w.app.get(&format!("/v1/tenants/{}/messages?verdict=clean", w.a.id), &officer).await;
    assert_eq!(clean.body["items"][0]["headers"]["subject"], "fine");
    worker.shutdown().await;
}

/// Who may read which messages (ARCHITECTURE §3), and the raw download.
async fn message_access(backend: Backend) {
    let w = world(backend).await;
    let handoff = async |tenant: &TenantFixture, sensor: Uuid, key: &str| -> Reply {
        let token = w.sensor_token(tenant, sensor);
        let body = format!(
            "{}\n{}",
            json!({"client_ip": "192.0.2.1", "helo": "mx.test", "mail_from": "a@example.org", "rcpt_to": ["b@example.com"], "tls": false, "worker": "w1"}),
            message("handed off", "body")
        );
        let r = w
            .app
            .http
            .post(format!("{}/v1/sensors/{sensor}/messages", w.app.base))
            .bearer_auth(token)
            .header("content-type", "application/vnd.mailsensor.handoff")
            .header("idempotency-key", key)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        Reply { status, headers, body: r.json().await.unwrap_or(Value::Null) }
    };
    let on_pcn = handoff(&w.a, w.a.pcn_sensor, "k-1").await;
    assert_eq!(on_pcn.status, 201, "{:?}", on_pcn.body);
    let pcn_message = on_pcn.body["id"].as_str().unwrap().to_owned();
    // The same idempotency key again: the stored message, nothing new.
    let again = handoff(&w.a, w.a.pcn_sensor, "k-1").await;
    assert_eq!((again.status.as_u16(), again.body["id"].as_str()), (200, Some(pcn_message.as_str())));
    let on_scn = handoff(&w.a, w.a.scn_sensor, "k-2").await;
    let scn_message = on_scn.body["id"].as_str().unwrap().to_owned();
    handoff(&w.b, w.b.pcn_sensor, "k-3").await;

    let t = w.a.id;
    let who = [
        ("platform_operator", w.operator.clone(), 404, 0),
        ("administrator@PCN", w.member(&w.a, Role::Administrator, w.a.pcn), 200, 2),
        ("administrator@SCN", w.member(&w.a, Role::Administrator, w.a.scn), 404, 1),
        ("security_auditor@PCN", w.member(&w.a, Role::SecurityAuditor, w.a.pcn), 200, 2),
        ("senior_security_officer@PCN", w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn), 200, 2),
        ("security_officer@PCN", w.member(&w.a, Role::SecurityOfficer, w.a.pcn), 200, 2),
        ("security_officer@SCN", w.member(&w.a, Role::SecurityOfficer, w.a.scn), 404, 1),
        ("sensor", w.sensor_token(&w.a, w.a.pcn_sensor), 404, 0),
        ("administrator of tenant B", w.member(&w.b, Role::Administrator, w.b.pcn), 404, 0),
    ];
    for (name, token, pcn_status, listed) in who {
        let one = w.app.get(&format!("/v1/tenants/{t}/messages/{pcn_message}"), &token).await;
        assert_eq!(one.status, pcn_status, "{name} reads the PCN sensor's message");
        let raw = w.app.get(&format!("/v1/tenants/{t}/messages/{pcn_message}/raw"), &token).await;
        assert_eq!(raw.status, pcn_status, "{name} downloads it");
        let list = w.app.get(&format!("/v1/tenants/{t}/messages"), &token).await;
        if listed > 0 {
            assert_eq!(list.body["items"].as_array().unwrap().len(), listed, "{name} lists");
        } else {
            assert!(list.status == 403 || list.status == 404, "{name} lists: {}", list.status);
        }
        let scn = w.app.get(&format!("/v1/tenants/{t}/messages/{scn_message}"), &token).await;
        assert_eq!(scn.status == 200, listed > 0, "{name} reads the SCN sensor's message");
    }
    let raw = w
        .app
        .http
        .get(format!("{}/v1/tenants/{t}/messages/{pcn_message}/raw", w.app.base))
        .bearer_auth(w.admin_pcn())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.headers()["content-type"], "message/rfc822");
    assert!(String::from_utf8(raw.bytes().await.unwrap().to_vec()).unwrap().contains("Subject: handed off"));
    // Hand-off is the sensor's own business.
    let r = w
        .app
        .http
        .post(format!("{}/v1/sensors/{}/messages", w.app.base, w.a.pcn_sensor))
        .bearer_auth(w.sensor_token(&w.a, w.a.scn_sensor))
        .header("content-type", "application/vnd.mailsensor.handoff")
        .header("idempotency-key", "k-9")
        .body("{}\nx")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = w
        .app
        .call(
            Method::POST,
            &format!("/v1/sensors/{}/messages", w.a.pcn_sensor),
            Some(&w.sensor_token(&w.a, w.a.pcn_sensor)),
            Some(json!({})),
            &[("idempotency-key", "k-10")],
        )
        .await;
    assert_eq!(r.status, 415);
}

/// A 50 MiB message under "unlimited" passes through a worker process whose memory stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mebibytes_through_a_worker_process_with_bounded_memory() {
    let w = world(Backend::Postgres).await;
    let r = w
        .app
        .put(&w.a.settings_path(w.a.pcn_sensor), &w.admin_pcn(), settings(&["example.com"], &[], unlimited()))
        .await;
    assert_eq!(r.status, 200);
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp_port = probe.local_addr().unwrap().port();
    drop(probe);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mailsensor"))
        .args([
            "sensor",
            "--listen",
            &format!("127.0.0.1:{smtp_port}"),
            "--admin-listen",
            "127.0.0.1:0",
            "--hostname",
            "big.test",
        ])
        .env("MAILSENSOR_API_URL", &w.app.base)
        .env("MAILSENSOR_SENSOR_TOKEN", w.sensor_token(&w.a, w.a.pcn_sensor))
        .env("MAILSENSOR_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let at: SocketAddr = format!("127.0.0.1:{smtp_port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = from(at, "127.0.0.1").connect_plain().await {
            let _ = c.quit().await;
            break;
        }
        assert!(Instant::now() < deadline, "the worker process did not start accepting mail");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What the process holds before the message (its code, its runtime, a session): the message may
    // add a bounded amount on top, never itself.
    let pid = child.id().unwrap();
    let kib = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap().to_owned();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before_kib = kib("VmHWM:");
    let line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n";
    let mut body = String::from("From: a@example.org\r\nTo: b@example.com\r\nSubject: big\r\n\r\n");
    while body.len() < 50 * 1024 * 1024 {
        body.push_str(line);
    }
    let size = body.len();
    let mut c = from(at, "127.0.0.1").connect_plain().await.unwrap();
    c.timeout = Duration::from_secs(120);
    let reply = c
        .send(mail_send::smtp::message::Message::new("a@example.org", ["b@example.com"], body.into_bytes()))
        .await
        .unwrap();
    let id = stored_id(reply.message());
    let peak_kib = kib("VmHWM:");
    assert!(
        peak_kib - before_kib < 16 * 1024,
        "the worker's peak RSS grew from {before_kib} to {peak_kib} KiB for a {size}-byte message"
    );
    let stored = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
    assert_eq!(stored.body["size"].as_u64(), Some(size as u64 + 2), "stored whole (the final CRLF included)");
    child.kill().await.unwrap();
}

/// SIGTERM: the worker stops taking connections but lets an open session finish its message.
async fn graceful_shutdown(backend: Backend) {
    let w = world(backend).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    let at = worker.smtp_addr;
    let mut c = from(at, "127.0.0.1").connect_plain().await.unwrap();
    c.ehlo("client.test").await.unwrap();
    c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    c.rcpt_to("b@example.com", &Parameters::default()).await.unwrap();
    let stopping = tokio::spawn(worker.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(TcpStream::connect(at).await.is_err(), "no new connections once stopping");
    let reply = c.data(message("last one", "in flight").as_bytes()).await.unwrap();
    assert_eq!(reply.code(), 250);
    c.quit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), stopping).await.unwrap().unwrap();
    assert_eq!(messages(&w).await.len(), 1);
}

/// Random bytes where a sender controls them: HELO, the addresses' local parts, header names and
/// values, the body — NUL, control characters, invalid UTF-8, over-long runs. Every session ends
/// in `250` (and the stored raw message is byte for byte what was sent) or in a `5xx` that tells the
/// sender to stop; never a `4xx`, which a sender would retry forever.
async fn any_bytes_are_stored_or_refused_for_good(backend: Backend) {
    use rand::{Rng, SeedableRng};
    let w = world(backend).await;
    let worker = mx(&w, settings(&[], &[], unlimited()), |_| {}).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_2026);
    let random_bytes = |rng: &mut rand::rngs::StdRng, max: usize| -> Vec<u8> {
        let len = if rng.random_bool(0.1) { rng.random_range(500..3000) } else { rng.random_range(1..max) };
        (0..len)
            .map(|_| match rng.random_range(0..10) {
                0 => 0u8,
                1 => rng.random_range(1..0x20),
                2 => 0x7f,
                3 | 4 => rng.random_range(0x80..=0xff),
                _ => rng.random_range(0x20..0x7f),
            })
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect()
    };
    let (mut stored, mut refused) = (0, 0);
    for round in 0..120 {
        // Each envelope field is random in some rounds and plain in others, so sessions get as far
        // as the content; the content is always random.
        let field = |rng: &mut rand::rngs::StdRng, plain: &str, max: usize| {
            if rng.random_bool(0.25) { random_bytes(rng, max) } else { plain.as_bytes().to_vec() }
        };
        let helo = field(&mut rng, "client.example.org", 40);
        let sender = field(&mut rng, "alice", 30);
        let recipient = field(&mut rng, "bob", 30);
        let mut content = Vec::new();
        for name in ["Subject", "From", "To", "Message-ID", "Date", "X-Anything"] {
            content.extend_from_slice(name.as_bytes());
            content.extend_from_slice(b": ");
            content.extend_from_slice(&random_bytes(&mut rng, 80));
            content.extend_from_slice(b"\r\n");
        }
        content.extend_from_slice(&random_bytes(&mut rng, 20));
        content.extend_from_slice(b": odd name\r\n\r\n");
        content.extend_from_slice(&random_bytes(&mut rng, 200));
        content.extend_from_slice(b"\r\n");
        let mut commands: Vec<Vec<u8>> = vec![
            [b"EHLO ".as_slice(), &helo].concat(),
            [b"MAIL FROM:<".as_slice(), &sender, b"@example.org>"].concat(),
            [b"RCPT TO:<".as_slice(), &recipient, b"@example.com>"].concat(),
        ];
        if rng.random_bool(0.3) {
            // Unbracketed and free-form, too.
            commands[1] = [b"MAIL FROM:".as_slice(), &sender].concat();
        }
        let mut s = TcpStream::connect(worker.smtp_addr).await.unwrap();
        let greeting = read_reply(&mut s).await;
        assert!(greeting.starts_with("220"), "round {round}: {greeting}");
        let mut outcome = None;
        for command in &commands {
            s.write_all(&[command.as_slice(), b"\r\n"].concat()).await.unwrap();
            let reply = read_reply(&mut s).await;
            assert!(
                !reply.starts_with('4'),
                "round {round}: {:?} answered {reply:?}",
                String::from_utf8_lossy(command)
            );
            if reply.starts_with('5') {
                outcome = Some(reply);
                break;
            }
        }
        if outcome.is_none() {
            s.write_all(b"DATA\r\n").await.unwrap();
            let reply = read_reply(&mut s).await;
            assert!(reply.starts_with("354"), "round {round}: DATA answered {reply:?}");
            let mut stuffed = Vec::new();
            for line in content.split_inclusive(|b| *b == b'\n') {
                if line.starts_with(b".") {
                    stuffed.push(b'.');
                }
                stuffed.extend_from_slice(line);
            }
            stuffed.extend_from_slice(b".\r\n");
            s.write_all(&stuffed).await.unwrap();
            let reply = read_reply(&mut s).await;
            assert!(
                reply.starts_with("250") || reply.starts_with('5'),
                "round {round}: end of data answered {reply:?}"
            );
            if reply.starts_with("250") {
                let id = stored_id(&reply);
                let raw = w
                    .app
                    .http
                    .get(format!("{}/v1/tenants/{}/messages/{id}/raw", w.app.base, w.a.id))
                    .bearer_auth(w.admin_pcn())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(raw.status(), 200, "round {round}");
                assert!(
                    raw.bytes().await.unwrap().as_ref() == content.as_slice(),
                    "round {round}: stored bytes differ"
                );
                let meta = w.app.get(&format!("/v1/tenants/{}/messages/{id}", w.a.id), &w.admin_pcn()).await;
                assert_eq!(meta.status, 200, "round {round}: {:?}", meta.body);
                stored += 1;
            } else {
                refused += 1;
            }
        } else {
            refused += 1;
        }
        let _ = s.write_all(b"QUIT\r\n").await;
    }
    eprintln!("any bytes: {stored} stored, {refused} refused with 5xx");
    assert!(
        stored >= 10 && refused >= 10,
        "the generator must reach both outcomes: {stored} stored, {refused} refused"
    );
    worker.shutdown().await;
}

/// The operator lowers the platform cap below a sensor's stored limit and restarts the replicas:
/// the limit is served clamped (and says so), other changes still save, the running worker learns
/// the new cap without a restart, and a message over it is refused for good (552), never 451 —
/// also when the worker still streamed it under the old limit and the API's 413 came mid-body.
async fn a_lowered_cap_clamps_stored_limits_and_reaches_running_workers(backend: Backend) {
    const OLD_CAP: u64 = 1 << 20;
    const NEW_CAP: u64 = 64 << 10;
    let w = world_configured(backend, |p| p.max_message_bytes = OLD_CAP).await;
    let worker = mx(&w, settings(&["example.com"], &[], json!({"value": 1, "unit": "MB"})), |_| {}).await;
    let path = w.a.settings_path(w.a.pcn_sensor);
    let admin = w.admin_pcn();
    // A session opened under the old limit keeps it (sessions keep the settings they started with).
    let mut old_session = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
    old_session.ehlo("client.test").await.unwrap();

    let address = w.app.address().to_owned();
    w.app.stop().await;
    let api = start_configured(&w.app.url, &address, |p| p.max_message_bytes = NEW_CAP).await;
    let big = message("big", &format!("{}\r\n", "y".repeat(78)).repeat(1300));

    // The running worker takes the new cap from the stream (no write needed): new sessions are
    // greeted, told it, and held to it by the worker itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = from(worker.smtp_addr, "127.0.0.1").connect_plain().await.unwrap();
        let ehlo = cmd(&mut c, "EHLO client.test").await;
        if ehlo.1.contains(&format!("SIZE {NEW_CAP}")) {
            c.mail_from("a@example.org", &Parameters::default()).await.unwrap();
            c.rcpt_to("bob@example.com", &Parameters::default()).await.unwrap();
            let Err(mail_send::Error::UnexpectedReply(reply)) = c.data(big.as_bytes()).await else {
                panic!("over the limit, accepted")
            };
            assert_eq!((reply.code(), reply.esc), (552, [5, 3, 4]));
            let reply = c.data(message("small", "fits").as_bytes()).await;
            assert!(reply.is_err(), "no transaction open after the refusal");
            break;
        }
        assert!(Instant::now() < deadline, "the worker never advertised the new limit: {ehlo:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = api.get(&path, &admin).await;
    assert_eq!(served.status, 200);
    assert_eq!(
        served.body["message_size_limit"],
        json!({"unlimited": false, "value": 1, "unit": "MB"}),
        "stored as chosen"
    );
    assert_eq!(served.body["max_message_bytes"], NEW_CAP, "in force: the cap");
    assert_eq!(served.body["clamped_to_platform_cap"], true);
    let patched = api.patch(&path, &admin, json!({"destination_domains": ["example.com", "example.net"]})).await;
    assert_eq!(patched.status, 200, "a change that keeps the size saves: {:?}", patched.body);
    assert_eq!(patched.body["clamped_to_platform_cap"], true);
    let put = api.put(&path, &admin, served.body.clone()).await;
    assert_eq!(put.status, 200, "a PUT of what a GET served saves: {:?}", put.body);
    let raised = api.patch(&path, &admin, json!({"message_size_limit": {"value": 2, "unit": "MB"}})).await;
    assert_eq!(raised.status, 422, "a new limit above the cap is refused: {:?}", raised.body);
    assert_eq!(raised.pointers(), ["/message_size_limit/value"]);
    let lowered = api.patch(&path, &admin, json!({"message_size_limit": {"value": 32, "unit": "KB"}})).await;
    assert_eq!(lowered.body["clamped_to_platform_cap"], false);
    let back = api.patch(&path, &admin, json!({"message_size_limit": {"value": 60, "unit": "KB"}})).await;
    assert_eq!((back.status.as_u16(), back.body["max_message_bytes"].as_u64()), (200, Some(60 << 10)));

    // The old session still streams up to 1 MiB; the API refuses it over the new cap: 552.
    old_session.mail_from("a@example.org", &Parameters::default()).await.unwrap();
    old_session.rcpt_to("bob@example.com", &Parameters::default()).await.unwrap();
    let r = old_session.data(big.as_bytes()).await;
    let Err(mail_send::Error::UnexpectedReply(reply)) = r else { panic!("over the cap, accepted: {r:?}") };
    assert_eq!((reply.code(), reply.esc), (552, [5, 3, 4]), "{}", reply.message());

    let listed = api.get(&format!("/v1/tenants/{}/messages", w.a.id), &admin).await;
    assert_eq!(listed.body["items"], json!([]), "nothing over the cap stored");
    worker.shutdown().await;
    api.stop().await;
}

on_both_backends!(
    a_lowered_cap_clamps_stored_limits_and_reaches_running_workers,
    any_bytes_are_stored_or_refused_for_good,
    idle_timeout_and_worker_limit,
    slow_clients_are_cut_off,
    worker_health_follows_the_api,
    addresses_as_written,
    nul_in_commands_is_refused_for_good,
    refused_client_flood,
    reply_code_table,
    blank_field_rules,
    settings_change_governs_the_next_session,
    api_outage_means_451_and_nothing_lost,
    starttls,
    protocol_edges,
    python_smtplib_client,
    archives_python_wrote_are_opened,
    platform_yara_rules_scan_every_object,
    verdicts,
    message_access,
    graceful_shutdown
);
