//! SMTP integration settings through HTTP: validation, ETags, merge patch, explainer errors.
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

fn body() -> Value {
    json!({
        "enabled": true,
        "destination_domains": ["example.com", "!hr.example.com"],
        "clients": ["192.0.2.0/24", "!192.0.2.7"],
        "message_size_limit": {"unlimited": false, "value": 25, "unit": "MB"}
    })
}

async fn defaults_and_round_trip(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let r = w.app.get(&path, &admin).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["enabled"], false);
    assert_eq!(r.body["destination_domains"], json!([]));
    assert_eq!(r.body["clients"], json!([]));
    assert_eq!(r.body["message_size_limit"], json!({"unlimited": true}));
    assert_eq!(r.body["max_message_bytes"], PLATFORM_CAP);
    assert_eq!(r.body["revision"], 1);
    assert_eq!(r.header("etag"), Some("\"1\""));

    let put = w.app.put(&path, &admin, body()).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(put.body["max_message_bytes"], 25 * 1024 * 1024);
    assert_eq!(put.body["updated_by"], "Administrator@".to_owned() + &w.a.pcn.to_string());
    // What a GET returns can be sent back as it is: read-only fields are accepted and ignored.
    let got = w.app.get(&path, &admin).await;
    assert_eq!(got.body, put.body);
    let again = w.app.put(&path, &admin, got.body.clone()).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["destination_domains"], got.body["destination_domains"]);
    // Nothing changed, so nothing was written: same revision.
    assert_eq!(again.body["revision"], 2);
}

async fn etag_and_if_match(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let put = async |etag: &str, enabled: bool| {
        let mut b = body();
        b["enabled"] = json!(enabled);
        w.app.call(Method::PUT, &path, Some(&admin), Some(b), &[("if-match", etag)]).await
    };
    let first = put("\"1\"", true).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.header("etag"), Some("\"2\""));
    // A second writer still holding revision 1 is refused and told the current ETag.
    let stale = put("\"1\"", false).await;
    assert_eq!(stale.status, 412, "{:?}", stale.body);
    assert_eq!(stale.header("etag"), Some("\"2\""));
    assert_eq!(stale.header("content-type"), Some("application/problem+json"));
    assert_eq!(w.app.get(&path, &admin).await.body["enabled"], true, "the refused write changed nothing");
    assert_eq!(put("W/\"2\"", false).await.status, 200);
    assert_eq!(put("\"7\", \"3\"", true).await.status, 200);
    assert_eq!(put("*", false).await.status, 200);
    assert_eq!(put("garbage", true).await.status, 412);
    let patch =
        w.app.call(Method::PATCH, &path, Some(&admin), Some(json!({"enabled": true})), &[("if-match", "\"1\"")]).await;
    assert_eq!(patch.status, 412);
    let patch =
        w.app.call(Method::PATCH, &path, Some(&admin), Some(json!({"enabled": true})), &[("if-match", "\"5\"")]).await;
    assert_eq!(patch.status, 200, "{:?}", patch.body);
    assert_eq!(patch.header("etag"), Some("\"6\""));
}

async fn merge_patch(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    assert_eq!(w.app.put(&path, &admin, body()).await.status, 200);
    let r = w.app.patch(&path, &admin, json!({"destination_domains": ["Example.ORG"]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["destination_domains"], json!(["example.org"]));
    assert_eq!(r.body["clients"], json!(["192.0.2.0/24", "!192.0.2.7"]), "untouched");
    assert_eq!(r.body["enabled"], true, "untouched");
    let r = w.app.patch(&path, &admin, json!({"message_size_limit": {"value": 10}})).await;
    assert_eq!(r.body["message_size_limit"], json!({"unlimited": false, "value": 10, "unit": "MB"}), "{:?}", r.body);
    let r = w.app.patch(&path, &admin, json!({"message_size_limit": {"unlimited": true}})).await;
    assert_eq!(r.body["message_size_limit"], json!({"unlimited": true}));
    assert_eq!(r.body["max_message_bytes"], PLATFORM_CAP);
    let r = w.app.patch(&path, &admin, json!({"message_size_limit": {"value": 512, "unit": "KB"}})).await;
    assert_eq!(r.body["max_message_bytes"], 512 * 1024, "{:?}", r.body);
    let r = w.app.patch(&path, &admin, json!({"message_size_limit": {"value": 5}, "clients": ["10.0.0.0/8"]})).await;
    assert_eq!(r.body["message_size_limit"]["unit"], "KB");
    assert_eq!(r.body["clients"], json!(["10.0.0.0/8"]));
    // A bad patch changes nothing.
    let before = w.app.get(&path, &admin).await;
    let r = w.app.patch(&path, &admin, json!({"clients": ["10.0.0.5/8"], "enabled": "yes"})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.pointers(), vec!["/enabled", "/clients/0"]);
    assert_eq!(w.app.get(&path, &admin).await.body, before.body);
    // application/merge-patch+json is the documented type.
    let r = w
        .app
        .http
        .patch(format!("{}{path}", w.app.base))
        .bearer_auth(&admin)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"enabled": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn every_bad_field_in_one_answer(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let r = w
        .app
        .put(
            &path,
            &admin,
            json!({
                "enabled": "yes",
                "destination_domains": ["ok.example", "*.example.org", 7, "ok.example"],
                "clients": ["10.0.0.5/24", "192.0.2.1:25"],
                "message_size_limit": {"unlimited": false, "value": 0, "unit": "TB"},
                "colour": "blue"
            }),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let mut pointers = r.pointers();
    pointers.sort();
    assert_eq!(
        pointers,
        vec![
            "/clients/0",
            "/clients/1",
            "/colour",
            "/destination_domains/1",
            "/destination_domains/2",
            "/destination_domains/3",
            "/enabled",
            "/message_size_limit/unit",
            "/message_size_limit/value",
        ]
    );
    let messages = r.body["errors"].to_string();
    assert!(messages.contains("host bits set; did you mean 10.0.0.0/24?"), "{messages}");
    assert!(messages.contains("unknown field"), "{messages}");
    assert_eq!(r.body["detail"], "9 fields are invalid");

    let r = w.app.put(&path, &admin, json!({})).await;
    let mut pointers = r.pointers();
    pointers.sort();
    assert_eq!(pointers, vec!["/clients", "/destination_domains", "/enabled", "/message_size_limit"]);

    let r = w
        .app
        .put(
            &path,
            &admin,
            json!({"enabled": true, "destination_domains": "example.com", "clients": [], "message_size_limit": 5}),
        )
        .await;
    assert_eq!(r.pointers(), vec!["/destination_domains", "/message_size_limit"]);
}

async fn size_cap_and_list_limits(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let with_size =
        |limit: Value| json!({"enabled": true, "destination_domains": [], "clients": [], "message_size_limit": limit});
    let r = w.app.put(&path, &admin, with_size(json!({"unlimited": false, "value": 101, "unit": "MB"}))).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.pointers(), vec!["/message_size_limit/value"]);
    assert!(r.body["errors"][0]["message"].as_str().unwrap().contains("104857600"), "{:?}", r.body);
    let r = w.app.put(&path, &admin, with_size(json!({"unlimited": false, "value": 100, "unit": "MB"}))).await;
    assert_eq!(r.status, 200, "exactly the cap is allowed: {:?}", r.body);
    let r = w
        .app
        .put(&path, &admin, with_size(json!({"unlimited": false, "value": 9_007_199_254_740_991u64, "unit": "GB"})))
        .await;
    assert_eq!(r.status, 422, "overflow is a 422, not a crash");
    let r = w.app.put(&path, &admin, with_size(json!({"unlimited": true, "value": 5, "unit": "MB"}))).await;
    assert_eq!(r.status, 422);

    let domains: Vec<String> = (0..10_000).map(|i| format!("d{i}.example")).collect();
    let clients: Vec<String> = (0..10_000u32).map(|i| format!("10.{}.{}.0/24", i / 256, i % 256)).collect();
    let big = json!({"enabled": true, "destination_domains": domains, "clients": clients, "message_size_limit": {"unlimited": true}});
    let r = w.app.put(&path, &admin, big.clone()).await;
    assert_eq!(r.status, 200, "10,000 entries each are allowed");
    let r = w.app.get(&path, &admin).await;
    assert_eq!(r.body["destination_domains"].as_array().unwrap().len(), 10_000);
    let mut over = big;
    over["destination_domains"].as_array_mut().unwrap().push(json!("one-more.example"));
    over["clients"].as_array_mut().unwrap().push(json!("192.0.2.0/24"));
    let r = w.app.put(&path, &admin, over).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.pointers(), vec!["/destination_domains", "/clients"]);
}

async fn malformed_bodies(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let send = |content_type: &'static str, raw: &'static str| {
        w.app
            .http
            .put(format!("{}{path}", w.app.base))
            .bearer_auth(&admin)
            .header("content-type", content_type)
            .body(raw)
            .send()
    };
    let r = send("text/plain", "{}").await.unwrap();
    assert_eq!(r.status(), 415);
    let r = send("application/json", "{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = send("application/json", "[1, 2]").await.unwrap();
    assert_eq!(r.status(), 422);
    let r = w.app.http.put(format!("{}{path}", w.app.base)).bearer_auth(&admin).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 415, "no content type");
}

async fn evaluate_inputs(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let eval = format!("{path}/evaluate");
    // Enabled with both lists blank: the "same subnet as the worker" rule needs the network.
    assert_eq!(w.app.patch(&path, &admin, json!({"enabled": true})).await.status, 200);
    let r = w.app.post(&eval, &admin, json!({"client_ip": "127.0.0.1"})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.pointers(), vec!["/sensor_network"]);
    let r = w.app.post(&eval, &admin, json!({"client_ip": "127.0.0.5", "sensor_network": "127.0.0.1/8"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["connect"]["rule"], "sensor_subnet");
    assert_eq!(r.body["accepted"], true);
    let r = w
        .app
        .post(&eval, &admin, json!({"client_ip": "nope", "recipients": [1], "sensor_network": "x", "extra": 1}))
        .await;
    assert_eq!(r.status, 422);
    let mut pointers = r.pointers();
    pointers.sort();
    assert_eq!(pointers, vec!["/client_ip", "/extra", "/recipients/0", "/sensor_network"]);
    // The explainer names the deciding entry and the exact reply.
    assert_eq!(w.app.put(&path, &admin, body()).await.status, 200);
    let r = w.app
        .post(&eval, &admin, json!({"client_ip": "192.0.2.7", "recipients": ["a@sales.example.com", "b@hr.example.com"], "size": 30_000_000}))
        .await;
    assert_eq!(r.body["connect"]["decision"], "reject");
    assert_eq!(r.body["connect"]["matched_entry"], "!192.0.2.7");
    assert_eq!(r.body["connect"]["reply"]["code"], 554);
    assert_eq!(r.body["recipients"][0]["matched_entry"], "example.com");
    assert_eq!(
        r.body["recipients"][1]["reply"]["line"],
        "550 5.7.1 <b@hr.example.com>: recipient domain not accepted by this sensor"
    );
    assert_eq!(r.body["size"]["reply"]["code"], 552);
    assert_eq!(r.body["accepted"], false);
    assert_eq!(r.body["revision"], 3);
    // Disabled: 421 at connect whatever else.
    assert_eq!(w.app.patch(&path, &admin, json!({"enabled": false})).await.status, 200);
    let r = w.app.post(&eval, &admin, json!({"client_ip": "192.0.2.1"})).await;
    assert_eq!(r.body["connect"]["reply"]["code"], 421);
    assert_eq!(r.body["connect"]["rule"], "disabled");
}

/// Concurrent writers without If-Match all succeed, one after the other; none is lost.
async fn concurrent_writes_queue_up(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let writes = (0..16).map(|i| {
        let (http, url, admin) = (w.app.http.clone(), format!("{}{path}", w.app.base), admin.clone());
        tokio::spawn(async move {
            let mut b = body();
            b["destination_domains"] = json!([format!("d{i}.example")]);
            http.put(url).bearer_auth(admin).json(&b).send().await.unwrap().status().as_u16()
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(writes).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(w.app.get(&path, &admin).await.body["revision"], 17);
    let history = w.app.get(&format!("{path}/revisions?limit=100"), &admin).await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 17);
}

on_both_backends!(
    concurrent_writes_queue_up,
    defaults_and_round_trip,
    etag_and_if_match,
    merge_patch,
    every_bad_field_in_one_answer,
    size_cap_and_list_limits,
    malformed_bodies,
    evaluate_inputs
);
