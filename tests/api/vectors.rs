//! The shared policy vectors, through the HTTP API: PUT the settings, then ask the explainer.
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

fn vectors() -> Value {
    serde_json::from_str(include_str!("../fixtures/policy-vectors.json")).unwrap()
}

fn valid_base() -> Value {
    json!({"enabled": true, "destination_domains": ["example.com"], "clients": [], "message_size_limit": {"unlimited": true}})
}

async fn vector_cases(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let settings = w.a.settings_path(w.a.pcn_sensor);
    let v = vectors();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let put = w.app.put(&settings, &admin, case["settings"].clone()).await;
        assert_eq!(put.status, 200, "{name}: {:?}", put.body);
        let expect = &case["expect"];
        if let Some(max) = expect.get("max_message_bytes") {
            assert_eq!(&put.body["max_message_bytes"], max, "{name}");
        }
        let recipients: Vec<String> =
            expect.get("rcpt").and_then(Value::as_object).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let mut probe =
            json!({"client_ip": case["client_ip"], "recipients": recipients, "sensor_network": case["sensor_network"]});
        if let Some(size) = case.get("size") {
            probe["size"] = size.clone();
        }
        let r = w.app.post(&format!("{settings}/evaluate"), &admin, probe).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert_eq!(r.body["connect"]["decision"], expect["connect"], "{name}: {}", r.body);
        if let Some(code) = expect.get("connect_reply") {
            assert_eq!(r.body["connect"]["reply"]["code"].to_string(), code.as_str().unwrap(), "{name}");
        } else if expect["connect"] == "reject" {
            assert_eq!(r.body["connect"]["reply"]["code"], 554, "{name}");
        }
        for (i, rcpt) in recipients.iter().enumerate() {
            let got = &r.body["recipients"][i];
            assert_eq!(got["recipient"], rcpt.as_str(), "{name}");
            assert_eq!(got["decision"], expect["rcpt"][rcpt], "{name}: {rcpt}: {got}");
            let code = if expect["rcpt"][rcpt] == "accept" { 250 } else { 550 };
            assert_eq!(got["reply"]["code"], code, "{name}: {rcpt}");
        }
        if let Some(size) = expect.get("size") {
            assert_eq!(&r.body["size"]["decision"], size, "{name}");
            let code = if size == "accept" { 250 } else { 552 };
            assert_eq!(r.body["size"]["reply"]["code"], code, "{name}");
        }
    }
}

async fn vector_invalid_and_normalise(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let settings = w.a.settings_path(w.a.pcn_sensor);
    let before = w.app.get(&settings, &admin).await;
    let v = vectors();
    for case in v["invalid"].as_array().unwrap() {
        let field = case["field"].as_str().unwrap();
        let mut body = valid_base();
        if field == "message_size_limit" {
            body[field] = case["value"].clone();
        } else {
            body[field] = case["entries"].clone();
        }
        let r = w.app.put(&settings, &admin, body).await;
        assert_eq!(r.status, 422, "{case}: {:?}", r.body);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        let pointers = r.pointers();
        if let Some(bad) = case.get("bad_indexes") {
            let expected: Vec<String> =
                bad.as_array().unwrap().iter().map(|i| format!("/{field}/{}", i.as_u64().unwrap())).collect();
            assert_eq!(pointers, expected, "{case}");
        } else {
            assert!(
                !pointers.is_empty() && pointers.iter().all(|p| p.starts_with("/message_size_limit")),
                "{case}: {pointers:?}"
            );
        }
        for e in r.body["errors"].as_array().unwrap() {
            assert!(e["message"].as_str().is_some_and(|m| m.len() > 5), "{case}: message {e}");
        }
    }
    // A refused write changes nothing.
    let after = w.app.get(&settings, &admin).await;
    assert_eq!(before.body, after.body);
    assert_eq!(before.header("etag"), after.header("etag"));

    for case in v["normalise"].as_array().unwrap() {
        let field = case["field"].as_str().unwrap();
        let mut body = valid_base();
        body[field] = json!([case["in"]]);
        let r = w.app.put(&settings, &admin, body).await;
        assert_eq!(r.status, 200, "{case}: {:?}", r.body);
        assert_eq!(r.body[field], json!([case["out"]]), "{case}");
        assert_eq!(w.app.get(&settings, &admin).await.body[field], json!([case["out"]]), "{case}");
    }
}

on_both_backends!(vector_cases, vector_invalid_and_normalise);
