//! The detection daemons, each real (tests/api/daemons.rs): mail in over SMTP from Python's
//! smtplib, verdicts out through the API, engine health in `/readyz` and `/metrics`, and a clamd
//! that stops mid-run leaving mail pending until it is back.
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsensor::scan_queue::{Daemons, Engines};
use serde_json::Value;

use crate::daemons::{Clamd, Rspamd};
use crate::helpers::*;
use crate::smtp::{messages, mx, send_sample, settings, unlimited, until_none_pending};

fn daemons(clamd: Option<&str>, rspamd: Option<&str>) -> Arc<Daemons> {
    Engines::daemons(clamd, rspamd, Duration::from_secs(20)).expect("the daemons' addresses are valid")
}

fn by_subject(stored: &[Value], sample: &str) -> Value {
    let subject = format!("sample {sample}");
    stored.iter().find(|m| m["headers"]["subject"] == subject.as_str()).unwrap_or_else(|| panic!("{subject}")).clone()
}

fn engine(m: &Value, name: &str) -> Value {
    m["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["engine"] == name)
        .unwrap_or_else(|| panic!("no {name} in {m}"))
        .clone()
}

/// The detections `engine` made: (kind, rule).
fn found_by(m: &Value, engine: &str) -> Vec<(String, String)> {
    m["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["engine"] == engine)
        .map(|d| (d["kind"].as_str().unwrap().to_owned(), d["rule"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

async fn readiness(w: &World) -> Value {
    let r = reqwest::get(format!("{}/readyz", w.app.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn listed(w: &World, query: &str) -> Vec<String> {
    let r = w.app.get(&format!("/v1/tenants/{}/messages?{query}", w.a.id), &w.admin_pcn()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A message's headers are read by its scan: a pending one has none yet.
    let subject = |m: &Value| m["headers"]["subject"].as_str().unwrap_or("(not scanned yet)").to_owned();
    let mut subjects: Vec<String> = r.body["items"].as_array().unwrap().iter().map(subject).collect();
    subjects.sort();
    subjects
}

#[tokio::test]
async fn clamd_finds_its_signatures_in_what_python_sent() {
    let clamd = Clamd::start().await;
    let w = world_configured(Backend::Postgres, |p| p.engines.daemons = daemons(Some(&clamd.address), None)).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    for sample in ["zip_in_zip", "clamav_marker", "plain_zip", "large_attachment"] {
        send_sample(&worker, sample, "bob@example.com").await;
    }
    until_none_pending(&w).await;
    let stored = messages(&w).await;

    let nested = by_subject(&stored, "zip_in_zip");
    assert_eq!(nested["verdict"], "malicious", "{nested}");
    assert_eq!(found_by(&nested, "clamav"), [("signature".to_owned(), "Mailsensor.Test.EICAR.UNOFFICIAL".to_owned())]);
    // Only ClamAV knows the marker: its verdict is ClamAV's alone.
    let marker = by_subject(&stored, "clamav_marker");
    assert_eq!(marker["verdict"], "malicious", "{marker}");
    assert_eq!(found_by(&marker, "builtin"), []);
    assert_eq!(found_by(&marker, "clamav"), [("signature".to_owned(), "Mailsensor.Test.Marker.UNOFFICIAL".to_owned())]);
    let plain = by_subject(&stored, "plain_zip");
    assert_eq!(plain["verdict"], "clean", "{plain}");
    let run = engine(&plain, "clamav");
    assert_eq!(run["status"], "ok", "{run}");
    assert!(run["version"].as_str().unwrap().starts_with("ClamAV 1."), "{run}");
    assert!(run["millis"].is_u64());
    // Past clamd's StreamMaxLength: said, never taken for clean.
    let large = by_subject(&stored, "large_attachment");
    assert_eq!(large["verdict"], "suspicious", "{large}");
    assert_eq!(found_by(&large, "clamav"), [("too_large_for_engine".to_owned(), String::new())]);

    assert_eq!(
        listed(&w, "engine=clamav").await,
        ["sample clamav_marker", "sample large_attachment", "sample zip_in_zip"]
    );
    assert_eq!(listed(&w, "engine=clamav&rule=Mailsensor.Test.Marker.UNOFFICIAL").await, ["sample clamav_marker"]);
    let ready = readiness(&w).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["engines"][0]["engine"], "clamav");
    assert_eq!(ready["engines"][0]["status"], "up", "{ready}");
    assert_eq!(ready["engines"][0]["address"], clamd.address.as_str());
    worker.shutdown().await;
}

#[tokio::test]
async fn clamd_stopped_mid_run_leaves_mail_pending_until_it_is_back() {
    let mut clamd = Clamd::start().await;
    let w = world_configured(Backend::Postgres, |p| p.engines.daemons = daemons(Some(&clamd.address), None)).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    send_sample(&worker, "hello", "bob@example.com").await;
    until_none_pending(&w).await;
    assert_eq!(listed(&w, "verdict=clean").await, ["sample hello"]);

    clamd.daemon.stop();
    let ready = readiness(&w).await;
    assert_eq!((ready["status"].as_str(), ready["engines"][0]["status"].as_str()), (Some("degraded"), Some("down")));
    assert!(ready["engines"][0]["error"].as_str().unwrap().contains("cannot reach clamd"), "{ready}");
    send_sample(&worker, "clamav_marker", "bob@example.com").await;
    // Looked at by the others, not by ClamAV: it waits, retried with backoff.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = reqwest::get(format!("{}/metrics", w.app.base)).await.unwrap().text().await.unwrap();
        if text.contains(r#"mailsensor_scan_engine_runs_total{engine="clamav",status="error"}"#) {
            break text;
        }
        assert!(Instant::now() < deadline, "no failed clamav run counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(metrics.contains("mailsensor_scan_failures_total"), "{metrics}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(listed(&w, "verdict=pending").await, ["(not scanned yet)"]);

    clamd.daemon.restart();
    clamd.until_up().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !listed(&w, "verdict=pending").await.is_empty() {
        assert!(Instant::now() < deadline, "still pending 60 s after clamd came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let marker = by_subject(&messages(&w).await, "clamav_marker");
    assert_eq!(marker["verdict"], "malicious", "{marker}");
    assert_eq!(engine(&marker, "clamav")["status"], "ok");
    assert_eq!(readiness(&w).await["status"], "ready");
    worker.shutdown().await;
}

#[tokio::test]
async fn rspamd_scores_spam_and_phishing() {
    let rspamd = Rspamd::start().await;
    let w = world_configured(Backend::Postgres, |p| p.engines.daemons = daemons(None, Some(&rspamd.url))).await;
    let worker = mx(&w, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    for sample in ["gtube", "phishing", "hello"] {
        send_sample(&worker, sample, "bob@example.com").await;
    }
    until_none_pending(&w).await;
    let stored = messages(&w).await;

    let gtube = by_subject(&stored, "gtube");
    assert_eq!(gtube["verdict"], "spam", "{gtube}");
    assert_eq!(found_by(&gtube, "rspamd"), [("spam".to_owned(), "reject".to_owned())]);
    let spam = &engine(&gtube, "rspamd")["spam"];
    assert_eq!(spam["action"], "reject", "{spam}");
    assert!(spam["symbols"].as_array().unwrap().iter().any(|s| s["name"] == "GTUBE"), "{spam}");
    assert!(engine(&gtube, "rspamd")["version"].as_str().unwrap().starts_with("rspamd "));

    let phishing = by_subject(&stored, "phishing");
    assert_eq!(phishing["verdict"], "suspicious", "{phishing}");
    assert!(found_by(&phishing, "rspamd").contains(&("phishing".to_owned(), "PHISHING".to_owned())), "{phishing}");
    assert!(engine(&phishing, "rspamd")["spam"]["score"].as_f64().unwrap() > 0.0);

    let hello = by_subject(&stored, "hello");
    assert_eq!(hello["verdict"], "clean", "{hello}");
    assert_eq!(engine(&hello, "rspamd")["status"], "ok");
    assert_eq!(listed(&w, "engine=rspamd&rule=PHISHING").await, ["sample phishing"]);
    let ready = readiness(&w).await;
    assert_eq!(
        (ready["engines"][0]["engine"].as_str(), ready["engines"][0]["status"].as_str()),
        (Some("rspamd"), Some("up"))
    );
    worker.shutdown().await;
}
