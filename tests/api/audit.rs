//! Audit events: every successful write, with actor, action, target, before/after and request id.
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use mailsensor::auth::Role;

async fn events(w: &World, token: &str, query: &str) -> Vec<Value> {
    let r = w.app.get(&format!("/v1/tenants/{}/audit-events?limit=500{query}", w.a.id), token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

async fn writes_are_audited(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let before = events(&w, &admin, "").await.len();
    let body = json!({"enabled": true, "destination_domains": ["example.com"], "clients": [], "message_size_limit": {"unlimited": true}});
    let r = w.app.call(Method::PUT, &path, Some(&admin), Some(body), &[("x-request-id", "change-42")]).await;
    assert_eq!(r.status, 200);
    // Refused writes leave no trace.
    assert_eq!(w.app.put(&path, &admin, json!({"enabled": 1})).await.status, 422);
    let auditor = w.member(&w.a, Role::SecurityAuditor, w.a.pcn);
    assert_eq!(w.app.patch(&path, &auditor, json!({"enabled": false})).await.status, 403);
    let all = events(&w, &auditor, "").await;
    assert_eq!(all.len(), before + 1);
    let e = all.last().unwrap();
    assert_eq!(e["action"], "smtp_integration.update");
    assert_eq!(e["actor"]["sub"], format!("Administrator@{}", w.a.pcn));
    assert_eq!(e["actor"]["role"], "administrator");
    assert_eq!(e["actor"]["node_id"], w.a.pcn.to_string());
    assert_eq!(e["target"], json!({"type": "sensor", "id": w.a.pcn_sensor}));
    assert_eq!(e["sensor_id"], w.a.pcn_sensor.to_string());
    assert_eq!(e["request_id"], "change-42");
    assert_eq!(e["before"]["enabled"], false);
    assert_eq!(e["after"]["enabled"], true);
    assert_eq!(e["after"]["destination_domains"], json!(["example.com"]));

    // Every kind of write shows up.
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["tenant.create", "node.create", "sensor.create", "smtp_integration.update"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    let sensor = w.a.sensor_path(w.a.scn_sensor);
    assert_eq!(w.app.patch(&sensor, &admin, json!({"node_id": w.a.pcn})).await.status, 200);
    assert_eq!(w.app.delete(&sensor, &admin).await.status, 204);
    let last: Vec<String> =
        events(&w, &admin, "").await.iter().rev().take(2).map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(last, vec!["sensor.delete", "sensor.reattach"]);
}

async fn filters_and_scope(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let admin_scn = w.member(&w.a, Role::Administrator, w.a.scn);
    let patch = async |token: &str, sensor| {
        assert_eq!(w.app.patch(&w.a.settings_path(sensor), token, json!({"enabled": true})).await.status, 200)
    };
    patch(&admin, w.a.pcn_sensor).await;
    patch(&admin_scn, w.a.scn_sensor).await;

    let by_sensor = events(&w, &admin, &format!("&sensor_id={}", w.a.pcn_sensor)).await;
    assert!(by_sensor.iter().all(|e| e["sensor_id"] == w.a.pcn_sensor.to_string()));
    assert_eq!(by_sensor.len(), 2, "created, then updated");
    let by_actor = events(&w, &admin, &format!("&actor=Administrator@{}", w.a.scn)).await;
    assert_eq!(by_actor.len(), 1);
    let future = events(&w, &admin, "&since=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    let past = events(&w, &admin, "&until=2000-01-01T00:00:00Z").await;
    assert!(past.is_empty());
    let all = events(&w, &admin, "&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await;
    assert!(all.len() >= 6);

    // The SCN sees what concerns it: its sensor, and what was done at it. Not the PCN sensor.
    let scn_view = events(&w, &admin_scn, "").await;
    assert!(!scn_view.is_empty());
    assert!(scn_view.iter().all(|e| e["sensor_id"] != w.a.pcn_sensor.to_string()), "{scn_view:?}");
    assert!(scn_view.iter().any(|e| e["sensor_id"] == w.a.scn_sensor.to_string()));
    // Tenant B sees none of A's events (its own path is all it has).
    let b_admin = w.member(&w.b, Role::Administrator, w.b.pcn);
    let r = w.app.get(&format!("/v1/tenants/{}/audit-events", w.b.id), &b_admin).await;
    assert!(r.body["items"].as_array().unwrap().iter().all(|e| e["sensor_id"] != w.a.pcn_sensor.to_string()));
    for bad in ["since=yesterday", "until=1", "sensor_id=x"] {
        let r = w.app.get(&format!("/v1/tenants/{}/audit-events?{bad}", w.a.id), &admin).await;
        assert_eq!(r.status, 422, "{bad}");
    }
}

on_both_backends!(writes_are_audited, filters_and_scope);
