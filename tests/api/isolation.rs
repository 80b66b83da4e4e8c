//! The isolation matrix, generated from `openapi/openapi.json`: every operation, with its path ids
//! filled with another tenant's objects (and, for SCN principals, their tenant's objects outside
//! their SCN), called with every role's token. Each answer is exactly the answer for ids that do
//! not exist: a 404 (or the 401/403 the design gives before any lookup), never 2xx, never a body
//! that tells the two apart. A new endpoint is covered without anyone editing this test.
use std::collections::HashMap;
use std::time::Duration;

use mailsensor::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;

/// Ids for every path parameter the API uses.
fn ids(tenant: Uuid, node: Uuid, sensor: Uuid, message: Uuid, made: [Uuid; 4]) -> HashMap<&'static str, String> {
    HashMap::from([
        ("ruleset_id", made[0].to_string()),
        ("retrohunt_id", made[1].to_string()),
        ("destination_id", made[2].to_string()),
        ("delivery_id", made[3].to_string()),
        ("tenant_id", tenant.to_string()),
        ("node_id", node.to_string()),
        ("sensor_id", sensor.to_string()),
        ("message_id", message.to_string()),
        ("revision", "1".to_owned()),
        ("instance_id", "w1".to_owned()),
    ])
}

fn fill(template: &str, ids: &HashMap<&'static str, String>) -> String {
    let mut path = template.to_owned();
    for (name, value) in ids {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    assert!(!path.contains('{'), "a path parameter this test does not know: {template}");
    path
}

async fn call(w: &World, method: &Method, path: &str, token: &str) -> (u16, Value) {
    let mut request = w.app.http.request(method.clone(), format!("{}{path}", w.app.base)).bearer_auth(token);
    if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        request = request.json(&json!({}));
    }
    // A stream that opened would never end: an answer must come quickly.
    let response = tokio::time::timeout(Duration::from_secs(10), request.send()).await.expect("answered").unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn every_operation_hides_what_is_out_of_reach(backend: Backend) {
    let w = world(backend).await;
    let spec: Value = serde_json::from_str(&mailsensor::api::openapi_json()).unwrap();
    let (a, b) = (&w.a, &w.b);
    let (a_message, b_message) = (message_of(&w, a, a.pcn_sensor).await, message_of(&w, b, b.pcn_sensor).await);
    let (a_made, b_made) = (made_by_officer(&w, a).await, made_by_officer(&w, b).await);
    let random = || Uuid::now_v7();
    let nowhere = ids(random(), random(), random(), random(), [random(), random(), random(), random()]);
    // Another tenant's objects, by tenant B's own path, and under tenant A's path.
    let in_b = ids(b.id, b.pcn, b.pcn_sensor, b_message, b_made);
    let b_under_a = ids(a.id, b.pcn, b.pcn_sensor, b_message, b_made);
    // Tenant A's objects on its PCN, for principals signed in at A's SCN.
    let outside_scn = ids(a.id, a.pcn, a.pcn_sensor, a_message, a_made);
    let a_missing = ids(a.id, random(), random(), random(), [random(), random(), random(), random()]);
    // The operator knows which tenants exist (it lists them): for it, B's objects must read like
    // missing objects of tenant B.
    let b_missing = ids(b.id, random(), random(), random(), [random(), random(), random(), random()]);

    let mut principals: Vec<(String, String, bool)> = vec![("platform_operator".into(), w.operator.clone(), false)];
    for (role, node, at_scn) in [
        (Role::Administrator, a.pcn, false),
        (Role::Administrator, a.scn, true),
        (Role::SecurityAuditor, a.pcn, false),
        (Role::SecurityAuditor, a.scn, true),
        (Role::SeniorSecurityOfficer, a.pcn, false),
        (Role::SecurityOfficer, a.scn, true),
    ] {
        principals.push((format!("{role:?}@{}", if at_scn { "SCN" } else { "PCN" }), w.member(a, role, node), at_scn));
    }
    principals.push(("sensor of A".into(), w.sensor_token(a, a.scn_sensor), false));

    let mut checked = 0;
    for (template, item) in spec["paths"].as_object().unwrap() {
        if !template.contains('{') {
            continue;
        }
        // The operator sees every tenant and its nodes: those paths are in its reach by design.
        let objects = ["sensor_id", "message_id", "ruleset_id", "retrohunt_id", "destination_id"];
        let tenancy_only = !objects.iter().any(|p| template.contains(p));
        let names_an_object = template.contains("node_id") || objects.iter().any(|p| template.contains(p));
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            for (name, token, at_scn) in &principals {
                let mut cases: Vec<(&HashMap<_, _>, &HashMap<_, _>)> = Vec::new();
                match name.as_str() {
                    "platform_operator" if tenancy_only => {}
                    "platform_operator" => cases.push((&in_b, &b_missing)),
                    _ => cases.push((&in_b, &nowhere)),
                }
                if names_an_object && template.starts_with("/v1/tenants/") {
                    cases.push((&b_under_a, &a_missing));
                }
                // A's PCN sensors, messages, rulesets, hunts and destinations are outside an SCN's reach.
                if *at_scn && objects.iter().any(|p| template.contains(p)) {
                    cases.push((&outside_scn, &a_missing));
                }
                for (hidden, missing) in cases {
                    let (path, control) = (fill(template, hidden), fill(template, missing));
                    let (status, body) = call(&w, &method, &path, token).await;
                    let (control_status, control_body) = call(&w, &method, &control, token).await;
                    assert!(!(200..300).contains(&status), "{name}: {method} {path} answered {status}");
                    assert!([401, 403, 404].contains(&status), "{name}: {method} {path} answered {status}: {body}");
                    assert_eq!(
                        (status, &body),
                        (control_status, &control_body),
                        "{name}: {method} {path} must read exactly like {control}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 300, "only {checked} calls were checked");
}

/// A detection ruleset of `tenant` attached to its PCN, a retro-hunt started at its PCN, an alert
/// destination of its PCN and a delivery to it.
async fn made_by_officer(w: &World, tenant: &TenantFixture) -> [Uuid; 4] {
    let officer = w.member(tenant, Role::SeniorSecurityOfficer, tenant.pcn);
    let path = format!("/v1/tenants/{}/detection-rulesets", tenant.id);
    let r = w.app.post(&path, &officer, json!({"name": "hidden", "source": "rule hidden { condition: true }"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let hunt = json!({"source": "rule hidden { condition: true }", "since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"});
    let h = w.app.post(&format!("/v1/tenants/{}/retrohunts", tenant.id), &officer, hunt).await;
    assert_eq!(h.status, 202, "{:?}", h.body);
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    let destinations = format!("/v1/tenants/{}/alert-destinations", tenant.id);
    let d = w
        .app
        .post(&destinations, &admin, json!({"name": "hidden", "webhook": {"url": "https://siem.example.com/hook"}}))
        .await;
    assert_eq!(d.status, 201, "{:?}", d.body);
    let id = |v: &Value| -> Uuid { serde_json::from_value(v["id"].clone()).unwrap() };
    let t = w.app.post(&format!("{destinations}/{}/test", id(&d.body)), &admin, json!({})).await;
    assert_eq!(t.status, 202, "{:?}", t.body);
    [id(&r.body), id(&h.body), id(&d.body), id(&t.body)]
}

on_both_backends!(every_operation_hides_what_is_out_of_reach);
