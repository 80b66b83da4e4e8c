//! What a probe of the API found, each fixed: tokens valid only later or with critical headers,
//! log-forging key ids, existence oracles, NUL bytes, unbounded explainer input, undeclared
//! methods, oversized bodies.
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with exactly this header and these claims, signed with the test HS256 secret.
fn signed(header: Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let key = EncodingKey::from_secret(TEST_HS256_SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

async fn refused(w: &World, token: &str, why: &str) -> Reply {
    let r = w.app.get(&w.a.settings_path(w.a.pcn_sensor), token).await;
    assert_eq!(r.status, 401, "{why}: {:?}", r.body);
    assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{why}");
    r
}

async fn tokens_valid_later_or_with_critical_headers(backend: Backend) {
    let w = world(backend).await;
    let claims = json!({
        "sub": "alice", "role": "administrator", "tenant": w.a.id, "node": w.a.pcn,
        "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 7200, "iat": now()
    });
    let plain = json!({"alg": "HS256", "typ": "JWT"});
    let ok = w.app.get(&w.a.settings_path(w.a.pcn_sensor), &signed(plain.clone(), &claims)).await;
    assert_eq!(ok.status, 200, "the baseline passes: {:?}", ok.body);

    let mut later = claims.clone();
    later["nbf"] = json!(now() + 3600);
    let r = refused(&w, &signed(plain.clone(), &later), "nbf an hour ahead").await;
    assert!(r.body["detail"].as_str().unwrap().contains("not valid yet"), "{:?}", r.body);

    let critical = json!({"alg": "HS256", "typ": "JWT", "crit": ["x-unknown"], "x-unknown": 1});
    refused(&w, &signed(critical, &claims), "unknown crit").await;

    // A key id made to forge a log line comes back escaped, in the answer as in the log.
    let forged = json!({"alg": "RS256", "typ": "JWT", "kid": "k1\n2026-01-01 INFO forged\u{1b}[31m"});
    let r = refused(&w, &signed(forged, &claims), "forged kid").await;
    let detail = r.body["detail"].as_str().unwrap();
    assert!(!detail.contains('\n') && !detail.contains('\u{1b}'), "{detail:?}");
    assert!(detail.contains("k1\\n2026"), "{detail:?}");
}

async fn out_of_reach_reads_like_missing(backend: Backend) {
    let w = world(backend).await;
    let sensor_token = w.sensor_token(&w.a, w.a.pcn_sensor);
    let cases = [
        (&w.operator, w.a.sensor_path(w.a.scn_sensor), w.a.sensor_path(Uuid::now_v7())),
        (&w.operator, w.a.settings_path(w.a.pcn_sensor), w.a.settings_path(Uuid::now_v7())),
        (
            &sensor_token,
            format!("/v1/tenants/{}/nodes/{}", w.a.id, w.a.pcn),
            format!("/v1/tenants/{}/nodes/{}", w.a.id, Uuid::now_v7()),
        ),
        (&sensor_token, w.a.sensor_path(w.a.scn_sensor), w.a.sensor_path(Uuid::now_v7())),
    ];
    for (token, existing, missing) in cases {
        let (a, b) = (w.app.get(&existing, token).await, w.app.get(&missing, token).await);
        assert_eq!((a.status.as_u16(), &a.body), (404, &b.body), "{existing} vs {missing}");
    }
}

async fn nul_bytes_are_refused_by_name(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let r = w.app.get(&format!("/v1/tenants/{}/audit-events?actor=%00", w.a.id), &admin).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["parameter"], "actor");
    let r = w
        .app
        .patch(&w.a.settings_path(w.a.pcn_sensor), &admin, json!({"destination_domains": ["a\u{0}.example"]}))
        .await;
    assert_eq!((r.status.as_u16(), r.pointers()), (422, vec!["/destination_domains/0".to_owned()]), "{:?}", r.body);
    let token = w.sensor_token(&w.a, w.a.pcn_sensor);
    let path = format!("/v1/sensors/{}/workers/w1", w.a.pcn_sensor);
    let r = w.app.put(&path, &token, json!({"version": "1\u{0}", "listen_address": "x"})).await;
    assert_eq!((r.status.as_u16(), r.pointers()), (422, vec!["/version".to_owned()]), "{:?}", r.body);
    let r = w.app.post(&format!("/v1/tenants/{}/sensors", w.a.id), &admin, json!({"name": "x", "n\u{0}": 1})).await;
    assert_eq!(r.status, 422, "a NUL in a key: {:?}", r.body);
}

async fn bounded_inputs(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let recipients: Vec<String> = (0..101).map(|i| format!("r{i}@example.com")).collect();
    let evaluate = format!("{}/evaluate", w.a.settings_path(w.a.pcn_sensor));
    let r = w.app.post(&evaluate, &admin, json!({"client_ip": "192.0.2.1", "recipients": recipients})).await;
    assert_eq!((r.status.as_u16(), r.pointers()), (422, vec!["/recipients".to_owned()]), "{:?}", r.body);
    let r = w.app.post(&evaluate, &admin, json!({"client_ip": "192.0.2.1", "recipients": &recipients[..100]})).await;
    assert_eq!(r.status, 200, "100 is fine: {:?}", r.body);

    // Nesting: past the documented 32 levels, and past serde_json's own 128.
    for levels in [40, 5000] {
        let body = format!("{{\"destination_domains\": {}{}}}", "[".repeat(levels), "]".repeat(levels));
        let r = w
            .app
            .http
            .patch(format!("{}{}", w.app.base, w.a.settings_path(w.a.pcn_sensor)))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{levels} levels");
        let problem: Value = r.json().await.unwrap();
        assert!(problem["detail"].as_str().unwrap().contains("deeper than 32"), "{problem}");
    }

    let huge = json!({"destination_domains": ["x".repeat(10 * 1024 * 1024)]});
    let r = w.app.patch(&w.a.settings_path(w.a.pcn_sensor), &admin, huge).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
}

async fn undeclared_methods_answer_405(backend: Backend) {
    let w = world(backend).await;
    for (method, path, allow) in [
        ("TRACE", "/v1/tenants".to_owned(), "GET, POST"),
        ("DELETE", "/v1/tenants".to_owned(), "GET, POST"),
        ("POST", w.a.settings_path(w.a.pcn_sensor), "GET, PATCH, PUT"),
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let r = w.app.call(method.clone(), &path, Some(&w.admin_pcn()), None, &[]).await;
        assert_eq!(r.status, 405, "{method} {path}: {:?}", r.body);
        let mut got: Vec<&str> = r.header("allow").unwrap_or_default().split(", ").collect();
        got.sort_unstable();
        assert_eq!(got.join(", "), allow, "{method} {path}");
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    let r = w.app.get("/v1/no-such-thing", &w.admin_pcn()).await;
    assert_eq!(r.status, 404);
}

on_both_backends!(
    tokens_valid_later_or_with_critical_headers,
    out_of_reach_reads_like_missing,
    nul_bytes_are_refused_by_name,
    bounded_inputs,
    undeclared_methods_answer_405
);

/// Sends `request` on a raw connection (while reading, so a server that answers before it has read
/// everything is still heard) and returns the status, content type and problem document.
async fn raw_exchange(w: &World, request: Vec<u8>) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(w.app.address()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close before taking it all: that is its right.
        let _ = write.write_all(&request).await;
        write
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(15), read.read_to_end(&mut response)).await;
    drop(writer);
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {text:?}"));
    let status = head[9..12].parse().unwrap();
    let content_type = head.lines().find_map(|l| l.strip_prefix("content-type: ")).unwrap_or_default().to_owned();
    (status, content_type, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The errors the HTTP/1 codec answers before any handler runs are problem documents too: a head
/// over 128 KiB (a token of several megabytes among them), a head that is not HTTP, and a head
/// that never finishes arriving.
async fn codec_errors_are_problem_documents(backend: Backend) {
    let w = world(backend).await;
    let path = w.a.settings_path(w.a.pcn_sensor);
    let host = w.app.address().to_owned();
    let huge_token = "e".repeat(4 * 1024 * 1024);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a 4 MiB bearer token",
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {huge_token}\r\n\r\n").into_bytes(),
            431,
            "headers-too-large",
        ),
        (
            "200 KiB of headers",
            format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nx-padding: {}\r\n\r\n", "p".repeat(200 * 1024))
                .into_bytes(),
            431,
            "headers-too-large",
        ),
        ("a head that is not HTTP", b"NOT HTTP AT ALL\x01\x02\r\n\r\n".to_vec(), 400, "bad-request"),
        (
            "a URI over the limit",
            format!("GET /v1/{} HTTP/1.1\r\nhost: {host}\r\n\r\n", "u".repeat(200 * 1024)).into_bytes(),
            431,
            "headers-too-large",
        ),
        // The head never ends: the server gives up after its 5 s request timeout.
        ("an unfinished head", format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n").into_bytes(), 408, "request-timeout"),
    ];
    for (why, request, status, slug) in cases {
        let (got, content_type, problem) = raw_exchange(&w, request).await;
        assert_eq!(got, status, "{why}");
        assert_eq!(content_type, "application/problem+json", "{why}");
        assert_eq!(problem["type"], format!("urn:mailsensor:problem:{slug}"), "{why}: {problem}");
        assert_eq!(problem["status"], status, "{why}");
    }
    // The server is none the worse for it.
    assert_eq!(w.app.get(&path, &w.admin_pcn()).await.status, 200);
}

on_both_backends!(codec_errors_are_problem_documents);

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The limits hold in memory too: a `serve` process fed many bodies over the cap, JSON nested far
/// too deep, lists over their caps, heads over 128 KiB and 4 MiB tokens grows by no more than a
/// few of those inputs, not by the sum of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_inputs_do_not_grow_memory() {
    let w = world(Backend::Postgres).await;
    let port = free_port();
    let mut serve = spawn_serve(&w.app.url, port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let ready = async {
        while !http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), ready).await.expect("serve became ready");
    let admin = w.admin_pcn();
    let settings = format!("{base}{}", w.a.settings_path(w.a.pcn_sensor));
    let evaluate = format!("{settings}/evaluate");
    let send = async |request: reqwest::RequestBuilder| request.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
    // Warm up: one of each, so lazily built state is there before the baseline.
    let oversized = format!("{{\"destination_domains\": [\"{}\"]}}", "x".repeat(9 * 1024 * 1024));
    let deep = format!("{{\"destination_domains\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let long_list = json!({"destination_domains": (0..10_001).map(|i| format!("d{i}.example")).collect::<Vec<_>>()});
    let many = json!({"client_ip": "192.0.2.1", "recipients": (0..50_000).map(|i| format!("r{i}@example.com")).collect::<Vec<_>>()});
    let huge_token = format!("Bearer {}", "e".repeat(4 * 1024 * 1024));
    let round = async || {
        let json = |b: &str| {
            http.patch(&settings).bearer_auth(&admin).header("content-type", "application/json").body(b.to_owned())
        };
        // Answered 413 before the rest is read; a client still sending may see the close instead.
        let status = send(json(&oversized)).await;
        assert!(status == 413 || status == 0, "{status}");
        assert_eq!(send(json(&deep)).await, 422);
        assert_eq!(send(http.patch(&settings).bearer_auth(&admin).json(&long_list)).await, 422);
        assert_eq!(send(http.post(&evaluate).bearer_auth(&admin).json(&many)).await, 422);
        // The server answers 431 and closes without reading all of it; the client may see either.
        let status = send(http.get(&settings).header("authorization", &huge_token)).await;
        assert!(status == 431 || status == 0, "{status}");
    };
    round().await;
    let pid = serve.id().unwrap();
    let (_, baseline) = memory_kib(pid);
    for _ in 0..20 {
        round().await;
    }
    assert!(serve.try_wait().unwrap().is_none(), "serve died");
    assert_eq!(send(http.get(&settings).bearer_auth(&admin)).await, 200, "serve still answers");
    let (peak, now) = memory_kib(pid);
    eprintln!("serve memory: baseline {baseline} KiB, peak {peak} KiB, after {now} KiB (20 rounds, ~300 MiB refused)");
    // 20 rounds refuse about 300 MiB of input; growth stays within a few inputs' worth.
    assert!(now < baseline + 64 * 1024, "resident memory grew from {baseline} to {now} KiB");
    assert!(peak < baseline + 128 * 1024, "peak memory {peak} KiB against a baseline of {baseline} KiB");
    serve.kill().await.unwrap();
}
