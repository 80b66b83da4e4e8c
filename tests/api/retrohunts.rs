//! Retro-hunts through the API: a new rule finds the mail stored before it (and never another
//! tenant's), roles, a match cap, an abort that stops within a chunk, and a replica killed mid-hunt
//! with another finishing it to the same result.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use mailsensor::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

const RULE: &str = "rule campaign_7731 : campaign {\n  meta: severity = \"malicious\"\n  strings: $c = \"campaign-7731\"\n  condition: $c\n}\n";

fn mail(n: usize, marked: bool) -> String {
    let body = if marked { "Please pay invoice campaign-7731 today" } else { "Lunch on Friday?" };
    format!(
        "From: a@example.org\r\nTo: b@example.com\r\nSubject: mail {n}\r\nMessage-ID: <{n}.{}@test>\r\n\r\n{body}\r\n",
        Uuid::new_v4()
    )
}

fn hunts(tenant: &TenantFixture) -> String {
    format!("/v1/tenants/{}/retrohunts", tenant.id)
}

fn window() -> Value {
    let now = Utc::now();
    json!({"since": (now - chrono::Duration::hours(1)).to_rfc3339(), "until": (now + chrono::Duration::hours(1)).to_rfc3339()})
}

fn body(extra: Value) -> Value {
    let mut body = window();
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

async fn until_scanned(w: &World, tenant: &TenantFixture) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    loop {
        let r = w.app.get(&format!("/v1/tenants/{}/messages?verdict=pending", tenant.id), &admin).await;
        if r.body["items"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        assert!(Instant::now() < deadline, "messages still pending: {:?}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the hunt at `path` is no longer queued or running; returns it.
async fn until_ended(app: &TestApp, path: &str, token: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = app.get(path, token).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        if !["queued", "running"].contains(&r.body["state"].as_str().unwrap()) {
            return r.body;
        }
        assert!(Instant::now() < deadline, "the retro-hunt did not end in 60 s: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn all_matches(app: &TestApp, path: &str, token: &str) -> Vec<Value> {
    let (mut found, mut cursor) = (Vec::new(), String::new());
    loop {
        let r = app.get(&format!("{path}/matches?limit=7{cursor}"), token).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        found.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return found,
        }
    }
}

on_both_backends!(
    a_new_rule_finds_the_mail_stored_before_it_and_never_another_tenants,
    the_match_cap_holds_and_abort_stops_within_a_chunk
);

async fn a_new_rule_finds_the_mail_stored_before_it_and_never_another_tenants(backend: Backend) {
    let w = world(backend).await;
    let a = &w.a;
    let mut marked = BTreeSet::new();
    for n in 0..6 {
        let sensor = if n % 2 == 0 { a.pcn_sensor } else { a.scn_sensor };
        let id = message_with(&w, a, sensor, &mail(n, n < 3)).await;
        if n < 3 {
            marked.insert(id.to_string());
        }
    }
    let b_message = message_with(&w, &w.b, w.b.pcn_sensor, &mail(99, true)).await;
    until_scanned(&w, a).await;
    until_scanned(&w, &w.b).await;

    let senior = w.member(a, Role::SeniorSecurityOfficer, a.pcn);
    for role in [Role::Administrator, Role::SecurityAuditor, Role::SecurityOfficer] {
        let r = w.app.post(&hunts(a), &w.member(a, role, a.pcn), body(json!({"source": RULE}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?} {:?}", r.body);
    }
    let r = w.app.post(&hunts(a), &senior, body(json!({"source": "rule x {\n  condition: nope\n}\n"}))).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["line"].as_u64()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(2)),
        "{:?}",
        r.body
    );
    let r = w
        .app
        .post(
            &hunts(a),
            &senior,
            json!({"source": RULE, "since": "2026-12-06T10:00:00Z", "until": "2026-12-06T09:00:00Z"}),
        )
        .await;
    assert_eq!((r.status, r.pointers()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["/until".to_owned()]));
    let r = w.app.post(&hunts(a), &senior, body(json!({"source": RULE, "ruleset_id": Uuid::now_v7()}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "both a ruleset and a source: {:?}", r.body);

    let started = w.app.post(&hunts(a), &senior, body(json!({"source": RULE}))).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let path = started.header("location").unwrap().to_owned();
    let auditor = w.member(a, Role::SecurityAuditor, a.pcn);
    let done = until_ended(&w.app, &path, &auditor).await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(
        done["progress"],
        json!({"total": 6, "scanned": 6, "skipped": 0, "bytes": done["progress"]["bytes"], "matches": 3})
    );
    assert!(
        done["progress"]["bytes"].as_i64().unwrap() > 0
            && done["started_at"].is_string()
            && done["finished_at"].is_string()
    );
    assert_eq!(
        (done["cap_reached"].as_bool(), done["created_by"].as_str()),
        (Some(false), Some(format!("{:?}@{}", Role::SeniorSecurityOfficer, a.pcn).as_str()))
    );
    let found = all_matches(&w.app, &path, &auditor).await;
    let ids: BTreeSet<String> = found.iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, marked, "{found:?}");
    let m = &found[0];
    assert_eq!(
        (m["rule"].as_str(), m["namespace"].as_str(), m["object"].as_str()),
        (Some("campaign_7731"), Some("inline"), Some("part 0 (text/plain)")),
        "{m}"
    );
    assert_eq!(m["strings"][0]["pattern"], "$c");
    assert_eq!(m["strings"][0]["length"], 13);
    // The message itself now carries the finding, marked as the retro-hunt's.
    let id = m["message_id"].as_str().unwrap();
    let message = w.app.get(&format!("/v1/tenants/{}/messages/{id}", a.id), &auditor).await;
    assert_eq!(message.body["verdict"], "malicious", "{}", message.body);
    let retro: Vec<&Value> =
        message.body["detections"].as_array().unwrap().iter().filter(|d| !d["retrohunt_id"].is_null()).collect();
    assert_eq!((retro.len(), retro[0]["rule"].as_str()), (1, Some("campaign_7731")), "{}", message.body);
    assert_eq!(retro[0]["retrohunt_id"], done["id"]);

    // Tenant B: its identical mail untouched, A's hunt invisible.
    let b_admin = w.member(&w.b, Role::Administrator, w.b.pcn);
    let b_mail = w.app.get(&format!("/v1/tenants/{}/messages/{b_message}", w.b.id), &b_admin).await;
    assert_eq!(b_mail.body["verdict"], "clean", "{}", b_mail.body);
    let b_path = format!("{}/{}", hunts(&w.b), done["id"].as_str().unwrap());
    assert_eq!(w.app.get(&b_path, &b_admin).await.status, StatusCode::NOT_FOUND);
    assert_eq!(w.app.get(&hunts(&w.b), &b_admin).await.body["items"], json!([]));
    // An SCN's people see the SCN's hunts only; a hunt started there reads its sensors only.
    let scn_senior = w.member(a, Role::SeniorSecurityOfficer, a.scn);
    assert_eq!(w.app.get(&path, &scn_senior).await.status, StatusCode::NOT_FOUND);
    let local = w.app.post(&hunts(a), &scn_senior, body(json!({"source": RULE}))).await;
    assert_eq!(local.status, StatusCode::ACCEPTED, "{:?}", local.body);
    assert_eq!(local.body["sensor_ids"], json!([a.scn_sensor]));
    let local = until_ended(&w.app, local.header("location").unwrap(), &scn_senior).await;
    assert_eq!(
        (local["progress"]["total"].as_i64(), local["progress"]["matches"].as_i64()),
        (Some(3), Some(1)),
        "{local}"
    );
    let r = w.app.post(&hunts(a), &scn_senior, body(json!({"source": RULE, "sensor_ids": [a.pcn_sensor]}))).await;
    assert_eq!((r.status, r.pointers()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["/sensor_ids/0".to_owned()]));
    // A saved ruleset runs under its own name; the start and the abort are audited.
    let saved = w
        .app
        .post(
            &format!("/v1/tenants/{}/detection-rulesets", a.id),
            &senior,
            json!({"name": "campaigns", "source": RULE}),
        )
        .await;
    let r = w.app.post(&hunts(a), &senior, body(json!({"ruleset_id": saved.body["id"]}))).await;
    assert_eq!((r.status, r.body["ruleset_name"].as_str()), (StatusCode::ACCEPTED, Some("campaigns")), "{:?}", r.body);
    until_ended(&w.app, r.header("location").unwrap(), &senior).await;
    let audit = w.app.get(&format!("/v1/tenants/{}/audit-events?limit=500", a.id), &w.admin_pcn()).await;
    let starts = audit.body["items"].as_array().unwrap().iter().filter(|e| e["action"] == "retrohunt.start").count();
    assert_eq!(starts, 3);
}

async fn the_match_cap_holds_and_abort_stops_within_a_chunk(backend: Backend) {
    let url = fresh_database(backend).await;
    let app = start_configured(&url, "127.0.0.1:0", |parts| parts.retrohunts.chunk = 1).await;
    let w = world_on(app).await;
    let a = &w.a;
    for n in 0..40 {
        message_with(&w, a, a.pcn_sensor, &mail(n, true)).await;
    }
    until_scanned(&w, a).await;
    let senior = w.member(a, Role::SeniorSecurityOfficer, a.pcn);
    let capped = w.app.post(&hunts(a), &senior, body(json!({"source": RULE, "match_cap": 7}))).await;
    assert_eq!(capped.status, StatusCode::ACCEPTED, "{:?}", capped.body);
    let done = until_ended(&w.app, capped.header("location").unwrap(), &senior).await;
    assert_eq!((done["state"].as_str(), done["cap_reached"].as_bool()), (Some("finished"), Some(true)), "{done}");
    assert_eq!(done["progress"]["matches"], 7);
    assert_eq!(all_matches(&w.app, capped.header("location").unwrap(), &senior).await.len(), 7);

    let r = w.app.post(&hunts(a), &senior, body(json!({"source": RULE, "match_cap": 0}))).await;
    assert_eq!((r.status, r.pointers()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["/match_cap".to_owned()]));
    let started = w.app.post(&hunts(a), &senior, body(json!({"source": RULE}))).await;
    let path = started.header("location").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.app.get(&path, &senior).await.body["progress"]["scanned"].as_i64() < Some(2) {
        assert!(Instant::now() < deadline, "the retro-hunt did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let officer = w.member(a, Role::SecurityOfficer, a.pcn);
    assert_eq!(w.app.post(&format!("{path}/abort"), &officer, json!({})).await.status, StatusCode::FORBIDDEN);
    let aborted = w.app.post(&format!("{path}/abort"), &senior, json!({})).await;
    if aborted.status == StatusCode::CONFLICT {
        panic!("the retro-hunt of 40 messages in chunks of 1 finished before the abort: {:?}", aborted.body);
    }
    assert_eq!(
        (aborted.status, aborted.body["state"].as_str()),
        (StatusCode::OK, Some("aborted")),
        "{:?}",
        aborted.body
    );
    let at_abort = aborted.body["progress"]["scanned"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = w.app.get(&path, &senior).await.body;
    assert_eq!(after["state"], "aborted");
    assert!(after["progress"]["scanned"].as_i64().unwrap() <= at_abort + 1, "went on after the abort: {after}");
    assert!(at_abort < 40, "{after}");
    let again = w.app.post(&format!("{path}/abort"), &senior, json!({})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_hunt_leaves_it_to_another_with_the_same_result() {
    let url = fresh_database(Backend::Postgres).await;
    let first = start_configured(&url, "127.0.0.1:0", |parts| parts.retrohunts.chunk = 2).await;
    let w = world_on(first).await;
    let a = &w.a;
    for n in 0..60 {
        message_with(&w, a, a.pcn_sensor, &mail(n, n % 4 == 0)).await;
    }
    until_scanned(&w, a).await;
    let senior = w.member(a, Role::SeniorSecurityOfficer, a.pcn);
    let reference = w.app.post(&hunts(a), &senior, body(json!({"source": RULE}))).await;
    let reference_path = reference.header("location").unwrap().to_owned();
    let uninterrupted = until_ended(&w.app, &reference_path, &senior).await;
    let expected: BTreeSet<(String, i64)> = all_matches(&w.app, &reference_path, &senior)
        .await
        .iter()
        .map(|m| (m["message_id"].as_str().unwrap().to_owned(), m["strings"][0]["offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(expected.len(), 15);

    let started = w.app.post(&hunts(a), &senior, body(json!({"source": RULE}))).await;
    let path = started.header("location").unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.app.get(&path, &senior).await.body["progress"]["scanned"].as_i64() < Some(4) {
        assert!(Instant::now() < deadline, "the retro-hunt did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Killed mid-chunk: its transaction never commits.
    w.app.scanner.shutdown();
    let halfway = w.app.get(&path, &senior).await.body;
    assert_eq!(halfway["state"], "running", "{halfway}");
    let second = start_configured(&url, "127.0.0.1:0", |parts| parts.retrohunts.chunk = 7).await;
    let done = until_ended(&second, &path, &senior).await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["progress"], uninterrupted["progress"], "{done}");
    let got: Vec<(String, i64)> = all_matches(&second, &path, &senior)
        .await
        .iter()
        .map(|m| (m["message_id"].as_str().unwrap().to_owned(), m["strings"][0]["offset"].as_i64().unwrap()))
        .collect();
    assert_eq!(got.len(), 15, "a match counted twice or lost: {got:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
}
