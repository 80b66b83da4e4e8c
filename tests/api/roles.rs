//! Every cell of the roles matrix (ARCHITECTURE §3) for every endpoint, including objects of
//! another tenant and of another SCN.
use mailsensor::auth::Role;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, World, world};
use crate::on_both_backends;

/// Column order of every expectation row.
const WHO: [&str; 10] = [
    "platform_operator",
    "administrator@PCN",
    "administrator@SCN",
    "security_auditor@PCN",
    "security_auditor@SCN",
    "senior_security_officer@PCN",
    "security_officer@PCN",
    "security_officer@SCN",
    "sensor (own = PCN sensor)",
    "administrator@PCN of tenant B",
];

enum Target {
    Fixed(String),
    /// A sensor created for this one call on the given node, then `suffix` appended.
    FreshSensorOn(Uuid, &'static str),
    /// An SCN created for this one call.
    FreshScn,
    /// A detection ruleset created for this one call on the given node, then `suffix` appended.
    FreshRulesetOn(Uuid, &'static str),
    /// A retro-hunt started at the PCN for this one call, then `suffix` appended.
    FreshHunt(&'static str),
    /// An alert destination of the PCN created for this one call, then `suffix` appended.
    FreshDestination(&'static str),
}

struct Row {
    label: &'static str,
    method: Method,
    target: Target,
    body: Option<Value>,
    expect: [u16; 10],
}

fn tokens(w: &World) -> [String; 10] {
    let a = &w.a;
    [
        w.operator.clone(),
        w.member(a, Role::Administrator, a.pcn),
        w.member(a, Role::Administrator, a.scn),
        w.member(a, Role::SecurityAuditor, a.pcn),
        w.member(a, Role::SecurityAuditor, a.scn),
        w.member(a, Role::SeniorSecurityOfficer, a.pcn),
        w.member(a, Role::SecurityOfficer, a.pcn),
        w.member(a, Role::SecurityOfficer, a.scn),
        w.sensor_token(a, a.pcn_sensor),
        w.member(&w.b, Role::Administrator, w.b.pcn),
    ]
}

fn hunt_body() -> Value {
    json!({"source": "rule r { condition: true }", "since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"})
}

fn settings_body() -> Value {
    json!({
        "enabled": true,
        "destination_domains": ["example.com"],
        "clients": ["192.0.2.0/24"],
        "message_size_limit": {"unlimited": true}
    })
}

fn rows(w: &World) -> Vec<Row> {
    let t = w.a.id;
    let (pcn, scn, ps, ss) = (w.a.pcn, w.a.scn, w.a.pcn_sensor, w.a.scn_sensor);
    let fixed = |p: String| Target::Fixed(p);
    let row = |label, method, target, body, expect| Row { label, method, target, body, expect };
    vec![
        row(
            "create tenant",
            Method::POST,
            fixed("/v1/tenants".into()),
            Some(json!({"name": "T {n}"})),
            [201, 403, 403, 403, 403, 403, 403, 403, 403, 403],
        ),
        row(
            "list tenants",
            Method::GET,
            fixed("/v1/tenants".into()),
            None,
            [200, 200, 200, 200, 200, 200, 200, 200, 200, 200],
        ),
        row(
            "read tenant",
            Method::GET,
            fixed(format!("/v1/tenants/{t}")),
            None,
            [200, 200, 200, 200, 200, 200, 200, 200, 200, 404],
        ),
        row(
            "rename tenant",
            Method::PATCH,
            fixed(format!("/v1/tenants/{t}")),
            Some(json!({"name": "Tenant A"})),
            [200, 403, 403, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "delete tenant",
            Method::DELETE,
            fixed(format!("/v1/tenants/{t}")),
            None,
            // the operator's own delete is checked on a tenant of its own below
            [0, 403, 403, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "create SCN",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/nodes")),
            Some(json!({"name": "SCN {n}"})),
            [201, 201, 403, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "list nodes",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/nodes")),
            None,
            [200, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "read PCN",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/nodes/{pcn}")),
            None,
            [200, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "read SCN",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/nodes/{scn}")),
            None,
            [200, 200, 200, 200, 200, 200, 200, 200, 404, 404],
        ),
        row(
            "delete another SCN",
            Method::DELETE,
            Target::FreshScn,
            None,
            [204, 204, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "delete own SCN",
            Method::DELETE,
            fixed(format!("/v1/tenants/{t}/nodes/{scn}")),
            None,
            [0, 0, 403, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "create sensor on PCN",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/sensors")),
            Some(json!({"name": "s {n}", "node_id": pcn})),
            [403, 201, 422, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "create sensor on SCN",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/sensors")),
            Some(json!({"name": "s {n}", "node_id": scn})),
            [403, 201, 201, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "list sensors",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/sensors")),
            None,
            [403, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "read PCN sensor",
            Method::GET,
            fixed(w.a.sensor_path(ps)),
            None,
            [404, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "read SCN sensor",
            Method::GET,
            fixed(w.a.sensor_path(ss)),
            None,
            [404, 200, 200, 200, 200, 200, 200, 200, 404, 404],
        ),
        row(
            "rename PCN sensor",
            Method::PATCH,
            fixed(w.a.sensor_path(ps)),
            Some(json!({"name": "pcn-sensor"})),
            [404, 200, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "rename SCN sensor",
            Method::PATCH,
            fixed(w.a.sensor_path(ss)),
            Some(json!({"name": "scn-sensor"})),
            [404, 200, 200, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "re-attach SCN sensor to the PCN",
            Method::PATCH,
            Target::FreshSensorOn(scn, ""),
            Some(json!({"node_id": pcn})),
            [404, 200, 422, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "delete sensor on PCN",
            Method::DELETE,
            Target::FreshSensorOn(pcn, ""),
            None,
            [404, 204, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "delete sensor on SCN",
            Method::DELETE,
            Target::FreshSensorOn(scn, ""),
            None,
            [404, 204, 204, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "read PCN sensor settings",
            Method::GET,
            fixed(w.a.settings_path(ps)),
            None,
            [404, 200, 404, 200, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "read SCN sensor settings",
            Method::GET,
            fixed(w.a.settings_path(ss)),
            None,
            [404, 200, 200, 200, 200, 403, 403, 403, 404, 404],
        ),
        row(
            "replace PCN sensor settings",
            Method::PUT,
            fixed(w.a.settings_path(ps)),
            Some(settings_body()),
            [404, 200, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "replace SCN sensor settings",
            Method::PUT,
            fixed(w.a.settings_path(ss)),
            Some(settings_body()),
            [404, 200, 200, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "patch PCN sensor settings",
            Method::PATCH,
            fixed(w.a.settings_path(ps)),
            Some(json!({"enabled": true})),
            [404, 200, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "patch SCN sensor settings",
            Method::PATCH,
            fixed(w.a.settings_path(ss)),
            Some(json!({"enabled": true})),
            [404, 200, 200, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "evaluate PCN sensor",
            Method::POST,
            fixed(format!("{}/evaluate", w.a.settings_path(ps))),
            Some(json!({"client_ip": "192.0.2.1", "recipients": ["x@example.com"], "sensor_network": "192.0.2.0/24"})),
            [404, 200, 404, 200, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "evaluate SCN sensor",
            Method::POST,
            fixed(format!("{}/evaluate", w.a.settings_path(ss))),
            Some(json!({"client_ip": "192.0.2.1", "recipients": ["x@example.com"], "sensor_network": "192.0.2.0/24"})),
            [404, 200, 200, 200, 200, 403, 403, 403, 404, 404],
        ),
        row(
            "list PCN sensor settings revisions",
            Method::GET,
            fixed(format!("{}/revisions", w.a.settings_path(ps))),
            None,
            [404, 200, 404, 200, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "read SCN sensor settings revision 1",
            Method::GET,
            fixed(format!("{}/revisions/1", w.a.settings_path(ss))),
            None,
            [404, 200, 200, 200, 200, 403, 403, 403, 404, 404],
        ),
        row(
            "restore SCN sensor settings revision 1",
            Method::POST,
            fixed(format!("{}/revisions/1/restore", w.a.settings_path(ss))),
            None,
            [404, 200, 200, 403, 403, 403, 403, 403, 404, 404],
        ),
        row(
            "SCN sensor fleet",
            Method::GET,
            fixed(format!("{}/workers", w.a.sensor_path(ss))),
            None,
            [404, 200, 200, 200, 200, 403, 403, 403, 404, 404],
        ),
        row(
            "long-poll the PCN sensor's config",
            Method::GET,
            fixed(format!("/v1/sensors/{ps}/config?wait=0")),
            None,
            [404, 403, 404, 403, 404, 403, 403, 404, 200, 404],
        ),
        row(
            "report a worker of the PCN sensor",
            Method::PUT,
            fixed(format!("/v1/sensors/{ps}/workers/w-1")),
            Some(json!({"version": "1.0"})),
            [404, 403, 404, 403, 404, 403, 403, 404, 200, 404],
        ),
        row(
            "list detection rulesets",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/detection-rulesets")),
            None,
            [403, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "create a detection ruleset",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/detection-rulesets")),
            Some(json!({"name": "rules {n}", "source": "rule r { condition: true }"})),
            [403, 403, 403, 403, 403, 201, 403, 403, 403, 404],
        ),
        row(
            "try a rule source on a sample",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/detection-rulesets/test")),
            Some(json!({"source": "rule r { condition: true }", "raw_message": "Subject: x\r\n\r\nx\r\n"})),
            [403, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "read a PCN ruleset",
            Method::GET,
            Target::FreshRulesetOn(pcn, ""),
            None,
            [404, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "read an SCN ruleset's history",
            Method::GET,
            Target::FreshRulesetOn(scn, "/revisions"),
            None,
            [404, 200, 200, 200, 200, 200, 200, 200, 404, 404],
        ),
        row(
            "switch an SCN ruleset off",
            Method::PATCH,
            Target::FreshRulesetOn(scn, ""),
            Some(json!({"enabled": false})),
            [404, 403, 403, 403, 403, 200, 403, 403, 404, 404],
        ),
        row(
            "restore an SCN ruleset's revision 1",
            Method::POST,
            Target::FreshRulesetOn(scn, "/revisions/1/restore"),
            None,
            [404, 403, 403, 403, 403, 200, 403, 403, 404, 404],
        ),
        row(
            "delete a PCN ruleset",
            Method::DELETE,
            Target::FreshRulesetOn(pcn, ""),
            None,
            [404, 403, 404, 403, 404, 204, 403, 404, 404, 404],
        ),
        row(
            "list retro-hunts",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/retrohunts")),
            None,
            [403, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "start a retro-hunt",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/retrohunts")),
            Some(hunt_body()),
            [403, 403, 403, 403, 403, 202, 403, 403, 403, 404],
        ),
        row(
            "read a PCN retro-hunt",
            Method::GET,
            Target::FreshHunt(""),
            None,
            [404, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "read a PCN retro-hunt's matches",
            Method::GET,
            Target::FreshHunt("/matches"),
            None,
            [404, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "list alert destinations",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/alert-destinations")),
            None,
            [403, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "create an alert destination",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/alert-destinations")),
            Some(json!({"name": "SIEM {n}", "webhook": {"url": "https://siem.example.com/hook"}})),
            [403, 201, 201, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "read a PCN alert destination",
            Method::GET,
            Target::FreshDestination(""),
            None,
            [404, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "read a PCN alert destination's deliveries",
            Method::GET,
            Target::FreshDestination("/deliveries"),
            None,
            [404, 200, 404, 200, 404, 200, 200, 404, 404, 404],
        ),
        row(
            "send a test event to a PCN alert destination",
            Method::POST,
            Target::FreshDestination("/test"),
            None,
            [404, 202, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "rotate a PCN webhook's secret",
            Method::POST,
            Target::FreshDestination("/rotate-secret"),
            None,
            [404, 200, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "delete a PCN alert destination",
            Method::DELETE,
            Target::FreshDestination(""),
            None,
            [404, 204, 404, 403, 404, 403, 403, 404, 404, 404],
        ),
        row(
            "list alert events",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/alert-events")),
            None,
            [403, 200, 200, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "read the tenant's settings (retention)",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/settings")),
            None,
            [200, 200, 403, 200, 200, 200, 200, 200, 403, 404],
        ),
        row(
            "change the tenant's retention",
            Method::PATCH,
            fixed(format!("/v1/tenants/{t}/settings")),
            Some(json!({"message_retention_days": 14})),
            [403, 200, 403, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "erase an address's messages",
            Method::POST,
            fixed(format!("/v1/tenants/{t}/erasures")),
            Some(json!({"address": "nobody-{n}@example.org"})),
            [403, 200, 200, 403, 403, 403, 403, 403, 403, 404],
        ),
        row(
            "list audit events",
            Method::GET,
            fixed(format!("/v1/tenants/{t}/audit-events")),
            None,
            [403, 200, 200, 200, 200, 403, 403, 403, 403, 404],
        ),
    ]
}

async fn fresh_sensor(w: &World, node: Uuid, n: usize) -> Uuid {
    let r = w
        .app
        .post(
            &format!("/v1/tenants/{}/sensors", w.a.id),
            &w.admin_pcn(),
            json!({"name": format!("fresh {n}"), "node_id": node}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    serde_json::from_value(r.body["id"].clone()).unwrap()
}

async fn fresh_scn(w: &World, n: usize) -> Uuid {
    let r = w
        .app
        .post(&format!("/v1/tenants/{}/nodes", w.a.id), &w.operator, json!({"name": format!("fresh SCN {n}")}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    serde_json::from_value(r.body["id"].clone()).unwrap()
}

fn with_counter(body: &Value, n: usize) -> Value {
    match body {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), with_counter(v, n))).collect()),
        Value::String(s) => Value::String(s.replace("{n}", &n.to_string())),
        other => other.clone(),
    }
}

async fn roles_matrix(backend: Backend) {
    let w = world(backend).await;
    let tokens = tokens(&w);
    let mut n = 0;
    let mut wrong = Vec::new();
    let mut cells = 0;
    for row in rows(&w) {
        for (i, expected) in row.expect.iter().enumerate() {
            if *expected == 0 {
                continue;
            }
            n += 1;
            let path = match &row.target {
                Target::Fixed(p) => p.clone(),
                Target::FreshSensorOn(node, suffix) => {
                    format!("{}{suffix}", w.a.sensor_path(fresh_sensor(&w, *node, n).await))
                }
                Target::FreshScn => format!("/v1/tenants/{}/nodes/{}", w.a.id, fresh_scn(&w, n).await),
                Target::FreshHunt(suffix) => {
                    let officer = w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn);
                    let hunts = format!("/v1/tenants/{}/retrohunts", w.a.id);
                    let r = w.app.post(&hunts, &officer, hunt_body()).await;
                    assert_eq!(r.status, 202, "{:?}", r.body);
                    format!("{hunts}/{}{suffix}", r.body["id"].as_str().unwrap())
                }
                Target::FreshDestination(suffix) => {
                    let destinations = format!("/v1/tenants/{}/alert-destinations", w.a.id);
                    let body =
                        json!({"name": format!("fresh {n}"), "webhook": {"url": "https://siem.example.com/hook"}});
                    let r = w.app.post(&destinations, &w.admin_pcn(), body).await;
                    assert_eq!(r.status, 201, "{:?}", r.body);
                    format!("{destinations}/{}{suffix}", r.body["id"].as_str().unwrap())
                }
                Target::FreshRulesetOn(node, suffix) => {
                    let officer = w.member(&w.a, Role::SeniorSecurityOfficer, w.a.pcn);
                    let rulesets = format!("/v1/tenants/{}/detection-rulesets", w.a.id);
                    let body =
                        json!({"name": format!("fresh {n}"), "source": "rule r { condition: true }", "node_id": node});
                    let r = w.app.post(&rulesets, &officer, body).await;
                    assert_eq!(r.status, 201, "{:?}", r.body);
                    format!("{rulesets}/{}{suffix}", r.body["id"].as_str().unwrap())
                }
            };
            let body = row.body.as_ref().map(|b| with_counter(b, n));
            let reply = w.app.call(row.method.clone(), &path, Some(&tokens[i]), body, &[]).await;
            cells += 1;
            if reply.status.as_u16() != *expected {
                wrong.push(format!(
                    "{} as {}: expected {expected}, got {} {}",
                    row.label, WHO[i], reply.status, reply.body
                ));
            }
            if reply.status.is_client_error() {
                assert_eq!(
                    reply.header("content-type"),
                    Some("application/problem+json"),
                    "{} as {}",
                    row.label,
                    WHO[i]
                );
            }
        }
    }
    assert!(cells > 250, "the matrix shrank to {cells} cells");
    assert!(wrong.is_empty(), "{} of {cells} cells wrong:\n{}", wrong.len(), wrong.join("\n"));
}

/// The operator deletes a whole tenant; everything in it is gone, other tenants untouched.
async fn operator_deletes_tenant(backend: Backend) {
    let w = world(backend).await;
    let gone = crate::helpers::create_tenant(&w.app, &w.operator, "Doomed").await;
    let r = w.app.delete(&format!("/v1/tenants/{}", gone.id), &w.operator).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = w.app.get(&format!("/v1/tenants/{}", gone.id), &w.operator).await;
    assert_eq!(r.status, 404);
    let admin = w.member(&gone, Role::Administrator, gone.pcn);
    // The token's node no longer exists: the token is no longer good for anything.
    let r = w.app.get(&gone.settings_path(gone.pcn_sensor), &admin).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = w.app.get(&w.a.settings_path(w.a.pcn_sensor), &w.admin_pcn()).await;
    assert_eq!(r.status, 200);
}

/// Out of scope reads exactly like missing: same status, same body.
async fn out_of_scope_is_indistinguishable_from_missing(backend: Backend) {
    let w = world(backend).await;
    let admin_a = w.admin_pcn();
    let missing = w.app.get(&w.a.sensor_path(Uuid::now_v7()), &admin_a).await;
    let other_tenant_sensor_in_own_path = w.app.get(&w.a.sensor_path(w.b.pcn_sensor), &admin_a).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, other_tenant_sensor_in_own_path.body);
    let admin_scn = w.member(&w.a, Role::Administrator, w.a.scn);
    let other_scn = w.app.get(&w.a.settings_path(w.a.pcn_sensor), &admin_scn).await;
    let missing = w.app.get(&w.a.settings_path(Uuid::now_v7()), &admin_scn).await;
    assert_eq!((other_scn.status, &other_scn.body), (missing.status, &missing.body));
    let other_tenant = w.app.get(&format!("/v1/tenants/{}/sensors", w.b.id), &admin_a).await;
    let no_tenant = w.app.get(&format!("/v1/tenants/{}/sensors", Uuid::now_v7()), &admin_a).await;
    assert_eq!((other_tenant.status, &other_tenant.body), (no_tenant.status, &no_tenant.body));
    // Lists only ever show what is in scope.
    let listed = w.app.get(&format!("/v1/tenants/{}/sensors", w.a.id), &admin_scn).await;
    let ids: Vec<&str> = listed.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![w.a.scn_sensor.to_string()]);
    let nodes = w.app.get(&format!("/v1/tenants/{}/nodes", w.a.id), &admin_scn).await;
    assert_eq!(nodes.body["items"].as_array().unwrap().len(), 1);
    let tenants = w.app.get("/v1/tenants", &admin_a).await;
    assert_eq!(tenants.body["items"].as_array().unwrap().len(), 1);
    let all = w.app.get("/v1/tenants", &w.operator).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
}

on_both_backends!(roles_matrix, operator_deletes_tenant, out_of_scope_is_indistinguishable_from_missing);
