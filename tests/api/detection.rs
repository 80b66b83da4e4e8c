//! Detection rulesets through the API: the roles and scopes of ARCHITECTURE §3, history, restore
//! and audit; every compile problem in one 422; hostile rulesets refused; the explainer; and mail
//! over SMTP scanned with the rulesets in its sensor's scope — PCN rulesets on every sensor of
//! the tenant, SCN rulesets on that SCN's sensors only, another tenant's never.
use mailsensor::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;
use crate::smtp::{mx_at, send_sample, settings, unlimited};

const RULE_JS: &str =
    "rule js_attachment : script {\n  meta: severity = \"malicious\"\n  condition: filename matches /\\.js$/\n}\n";
const RULE_HTML: &str = "rule html_file {\n  strings: $a = \"<html\" nocase\n  condition: $a\n}\n";

fn rulesets(w: &World, tenant: &TenantFixture) -> String {
    let _ = w;
    format!("/v1/tenants/{}/detection-rulesets", tenant.id)
}

fn senior(w: &World, tenant: &TenantFixture, node: uuid::Uuid) -> String {
    w.member(tenant, Role::SeniorSecurityOfficer, node)
}

on_both_backends!(
    rulesets_are_written_by_the_senior_officer_in_scope_with_history_and_audit,
    hostile_and_broken_rulesets_are_refused_with_every_problem,
    the_explainer_says_which_rule_matched_which_object_and_where,
);

async fn rulesets_are_written_by_the_senior_officer_in_scope_with_history_and_audit(backend: Backend) {
    let w = world(backend).await;
    let (a, path) = (&w.a, rulesets(&w, &w.a));
    let officer_pcn = senior(&w, a, a.pcn);
    let body = json!({"name": "scripts", "source": format!("{RULE_JS}{RULE_HTML}"), "description": "attachments"});

    // Everyone else in scope may read, not write.
    for role in [Role::Administrator, Role::SecurityAuditor, Role::SecurityOfficer] {
        let r = w.app.post(&path, &w.member(a, role, a.pcn), body.clone()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{role:?}: {:?}", r.body);
    }
    let r = w.app.post(&path, &w.operator, body.clone()).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the operator manages tenancy only: {:?}", r.body);

    let created = w.app.post(&path, &officer_pcn, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("{path}/{id}").as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.body["node_id"], a.pcn.to_string(), "attached where the officer signed in");
    assert_eq!(created.body["rules"], json!(["js_attachment", "html_file"]));
    assert_eq!((created.body["enabled"].as_bool(), created.body["revision"].as_i64()), (Some(true), Some(1)));
    let one = format!("{path}/{id}");
    for role in [Role::Administrator, Role::SecurityAuditor, Role::SecurityOfficer, Role::SeniorSecurityOfficer] {
        let r = w.app.get(&one, &w.member(a, role, a.pcn)).await;
        assert_eq!(r.status, StatusCode::OK, "{role:?}");
        assert_eq!(r.body["source"], body["source"]);
    }
    // An SCN's people see their SCN's rulesets only; tenant B's, nothing of A's.
    let officer_scn = senior(&w, a, a.scn);
    assert_eq!(w.app.get(&one, &officer_scn).await.status, StatusCode::NOT_FOUND);
    assert_eq!(w.app.get(&one, &senior(&w, &w.b, w.b.pcn)).await.status, StatusCode::NOT_FOUND);
    let b_path = format!("/v1/tenants/{}/detection-rulesets/{id}", w.b.id);
    assert_eq!(w.app.get(&b_path, &senior(&w, &w.b, w.b.pcn)).await.status, StatusCode::NOT_FOUND);
    let r = w.app.patch(&one, &senior(&w, &w.b, w.b.pcn), json!({"enabled": false})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let local = w.app.post(&path, &officer_scn, json!({"name": "local", "source": RULE_HTML})).await;
    assert_eq!(local.status, StatusCode::CREATED, "{:?}", local.body);
    assert_eq!(local.body["node_id"], a.scn.to_string());
    let r = w.app.post(&path, &officer_scn, json!({"name": "global?", "source": RULE_HTML, "node_id": a.pcn})).await;
    assert_eq!((r.status, r.pointers()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["/node_id".to_owned()]));
    let listed = w.app.get(&path, &officer_scn).await;
    let names: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["local"]);
    let listed = w.app.get(&path, &officer_pcn).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
    let r = w.app.post(&path, &officer_pcn, json!({"name": "scripts", "source": RULE_HTML})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "names are unique in a tenant: {:?}", r.body);

    // Switch one rule off, then the whole ruleset; an old ETag is refused.
    let r = w.app.patch(&one, &officer_pcn, json!({"disabled_rules": ["html_file"]})).await;
    assert_eq!((r.status, r.body["revision"].as_i64()), (StatusCode::OK, Some(2)), "{:?}", r.body);
    assert_eq!(r.body["disabled_rules"], json!(["html_file"]));
    let stale = w
        .app
        .call(
            reqwest::Method::PATCH,
            &one,
            Some(&officer_pcn),
            Some(json!({"enabled": false})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{:?}", stale.body);
    let r = w.app.patch(&one, &officer_pcn, json!({"enabled": false})).await;
    assert_eq!((r.status, r.body["enabled"].as_bool()), (StatusCode::OK, Some(false)));
    let r = w.app.patch(&one, &officer_pcn, json!({"disabled_rules": ["no_such_rule"]})).await;
    assert_eq!((r.status, r.pointers()), (StatusCode::UNPROCESSABLE_ENTITY, vec!["/disabled_rules/0".to_owned()]));

    // History, and restoring the first revision as a fourth.
    let history = w.app.get(&format!("{one}/revisions"), &w.member(a, Role::SecurityAuditor, a.pcn)).await;
    let revisions: Vec<i64> =
        history.body["items"].as_array().unwrap().iter().map(|r| r["revision"].as_i64().unwrap()).collect();
    assert_eq!(revisions, [3, 2, 1]);
    let r =
        w.app.post(&format!("{one}/revisions/1/restore"), &w.member(a, Role::Administrator, a.pcn), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = w.app.post(&format!("{one}/revisions/1/restore"), &officer_pcn, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!((r.body["revision"].as_i64(), r.body["enabled"].as_bool()), (Some(4), Some(true)));
    assert_eq!(r.body["disabled_rules"], json!([]));
    let history = w.app.get(&format!("{one}/revisions?limit=1"), &officer_pcn).await;
    assert_eq!(history.body["items"][0]["restored_from"], 1);

    // Replace, then delete; every write is in the audit trail.
    let r = w.app.put(&one, &officer_pcn, json!({"name": "scripts", "source": RULE_JS})).await;
    assert_eq!((r.status, r.body["rules"].clone()), (StatusCode::OK, json!(["js_attachment"])), "{:?}", r.body);
    assert_eq!(w.app.delete(&one, &officer_pcn).await.status, StatusCode::NO_CONTENT);
    assert_eq!(w.app.get(&one, &officer_pcn).await.status, StatusCode::NOT_FOUND);
    let audit = w.app.get(&format!("/v1/tenants/{}/audit-events?limit=500", a.id), &w.admin_pcn()).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"]["id"] == id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "detection_ruleset.create",
            "detection_ruleset.replace",
            "detection_ruleset.replace",
            "detection_ruleset.restore",
            "detection_ruleset.replace",
            "detection_ruleset.delete"
        ]
    );
}

async fn hostile_and_broken_rulesets_are_refused_with_every_problem(backend: Backend) {
    let w = world(backend).await;
    let (a, path) = (&w.a, rulesets(&w, &w.a));
    let officer = senior(&w, a, a.pcn);
    let refused = async |body: Value| -> Value {
        let r = w.app.post(&path, &officer, body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
        r.body
    };

    // Two errors in one source: both, each with its line and column.
    let body = refused(json!({"name": "broken", "source": "rule a {\n  condition: $nope\n}\nrule b {\n  condition: nothing_here\n}\n"})).await;
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{body}");
    assert_eq!((errors[0]["pointer"].as_str(), errors[0]["line"].as_u64()), (Some("/source"), Some(2)));
    assert_eq!(errors[1]["line"], 5);
    assert!(errors.iter().all(|e| e["column"].as_u64().is_some() && e["code"].is_string()), "{body}");
    // With a bad field beside it: every problem in the one answer.
    let body = refused(json!({"name": "", "source": "rule x { condition: }", "enabled": "yes"})).await;
    let pointers: Vec<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
    assert!(pointers.contains(&"/name") && pointers.contains(&"/enabled"), "{body}");

    let body = refused(json!({"name": "inc", "source": "include \"/etc/passwd\"\nrule x { condition: true }\n"})).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("include"), "{body}");
    let body =
        refused(json!({"name": "slow", "source": "rule slow {\n  strings: $a = /[0-9]+/\n  condition: $a\n}\n"})).await;
    assert_eq!(
        (body["errors"][0]["code"].as_str(), body["errors"][0]["line"].as_u64()),
        (Some("slow_pattern"), Some(2)),
        "{body}"
    );
    let many: String = (0..10_000).map(|i| format!("rule r{i} {{ condition: true }}\n")).collect();
    let body = refused(json!({"name": "many", "source": many})).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("at most 1000"), "{body}");
    let huge_hex = format!("rule hex {{\n  strings: $h = {{ {} }}\n  condition: $h\n}}\n", "4D 5A ".repeat(100_000));
    let body = refused(json!({"name": "hex", "source": huge_hex})).await;
    assert_eq!(body["errors"][0]["pointer"], "/source", "{body}");
    let body = refused(json!({"name": "off", "source": RULE_JS, "disabled_rules": ["js_attachment", "ghost"]})).await;
    assert_eq!(body["errors"][0]["pointer"], "/disabled_rules/1", "{body}");
    // Nothing of it was kept.
    assert_eq!(w.app.get(&path, &officer).await.body["items"], json!([]));
}

async fn the_explainer_says_which_rule_matched_which_object_and_where(backend: Backend) {
    use base64::Engine;
    let w = world(backend).await;
    let a = &w.a;
    let path = format!("{}/test", rulesets(&w, a));
    let zip = {
        // A zip written by Python: the member is an object of its own.
        let out = std::process::Command::new("python3")
            .args(["-c", "import io,sys,zipfile\nb=io.BytesIO()\nz=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\nz.writestr('inner/run.js','var x = 1; // marker-42')\nz.close()\nsys.stdout.buffer.write(b.getvalue())"])
            .output()
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.stdout)
    };
    let raw = format!(
        "From: a@example.org\r\nTo: b@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/zip; name=\"code.zip\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{zip}\r\n--b--\r\n"
    );
    let source =
        "rule marker : demo {\n  meta: severity = \"malicious\"\n  strings: $m = \"marker-42\"\n  condition: $m\n}\n";
    for role in [Role::SecurityAuditor, Role::SeniorSecurityOfficer, Role::Administrator] {
        let r = w.app.post(&path, &w.member(a, role, a.pcn), json!({"source": source, "raw_message": raw})).await;
        assert_eq!(r.status, StatusCode::OK, "{role:?}: {:?}", r.body);
        assert_eq!((r.body["rules"].clone(), r.body["verdict"].clone()), (json!(["marker"]), json!("malicious")));
        let m = &r.body["matches"][0];
        assert_eq!((m["rule"].as_str(), m["part"].as_u64()), (Some("marker"), Some(1)), "{}", r.body);
        assert_eq!(m["archive_path"], json!(["inner/run.js"]));
        assert_eq!(m["strings"], json!([{"pattern": "$m", "offset": 14, "length": 9}]));
        assert_eq!(m["tags"], json!(["demo"]));
    }
    // A stored message as the sample, in scope only; nothing saved.
    let sensor = a.pcn_sensor;
    let worker = mx_at(&w, a, sensor, settings(&["example.com"], &[], unlimited()), |_| {}).await;
    send_sample(&worker, "html_smuggling", "bob@example.com").await;
    let stored = until_stored(&w, a, 1).await;
    let id = stored[0]["id"].as_str().unwrap();
    let officer = senior(&w, a, a.pcn);
    let r = w.app.post(&path, &officer, json!({"source": RULE_HTML, "message_id": id})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        r.body["matches"].as_array().unwrap().iter().any(|m| m["object"] == "attachment \"invoice.html\""),
        "{}",
        r.body
    );
    let r = w.app.post(&path, &officer, json!({"source": RULE_HTML, "message_id": id, "raw_message": "x"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let b_path = format!("{}/test", rulesets(&w, &w.b));
    let r = w.app.post(&b_path, &senior(&w, &w.b, w.b.pcn), json!({"source": RULE_HTML, "message_id": id})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "another tenant's message is missing: {:?}", r.body);
    let r = w.app.post(&path, &officer, json!({"source": "rule x { condition: nope }", "raw_message": "x"})).await;
    assert_eq!((r.status, r.body["errors"][0]["line"].as_u64()), (StatusCode::UNPROCESSABLE_ENTITY, Some(1)));
    assert_eq!(w.app.get(&rulesets(&w, a), &officer).await.body["items"], json!([]));
    worker.shutdown().await;
}

/// Waits until `count` messages of `tenant` are scanned, and returns them.
async fn until_stored(w: &World, tenant: &TenantFixture, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let admin = w.member(tenant, Role::Administrator, tenant.pcn);
    loop {
        let r = w.app.get(&format!("/v1/tenants/{}/messages?limit=500", tenant.id), &admin).await;
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= count && items.iter().all(|m| m["verdict"] != "pending") {
            return items;
        }
        assert!(std::time::Instant::now() < deadline, "{count} messages not scanned in 20 s: {:?}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The YARA detections of `m`: (namespace, rule).
fn yara_rules(m: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = m["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["engine"] == "yara")
        .map(|d| (d["namespace"].as_str().unwrap().to_owned(), d["rule"].as_str().unwrap().to_owned()))
        .collect();
    found.sort();
    found.dedup();
    found
}

#[tokio::test]
async fn pcn_rulesets_reach_every_sensor_scn_rulesets_their_own_and_tenant_b_none() {
    let w = world(Backend::Postgres).await;
    let a = &w.a;
    let path = rulesets(&w, a);
    let r = w.app.post(&path, &senior(&w, a, a.pcn), json!({"name": "global", "source": RULE_JS})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = w.app.post(&path, &senior(&w, a, a.scn), json!({"name": "local", "source": RULE_HTML})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let local = r.body["id"].as_str().unwrap().to_owned();
    let accept = || settings(&["example.com"], &[], unlimited());
    let at_pcn = mx_at(&w, a, a.pcn_sensor, accept(), |_| {}).await;
    let at_scn = mx_at(&w, a, a.scn_sensor, accept(), |_| {}).await;
    let in_b = mx_at(&w, &w.b, w.b.pcn_sensor, accept(), |_| {}).await;
    for worker in [&at_pcn, &at_scn, &in_b] {
        send_sample(worker, "js_attachment", "bob@example.com").await;
        send_sample(worker, "html_smuggling", "bob@example.com").await;
    }
    let found = |stored: &[Value], sensor: uuid::Uuid, sample: &str| -> Vec<(String, String)> {
        let subject = format!("sample {sample}");
        let m = stored
            .iter()
            .find(|m| m["sensor_id"] == sensor.to_string() && m["headers"]["subject"] == subject.as_str())
            .unwrap_or_else(|| panic!("{sample} at {sensor}"));
        yara_rules(m)
    };
    let stored = until_stored(&w, a, 4).await;
    let pair = |ns: &str, rule: &str| vec![(ns.to_owned(), rule.to_owned())];
    let (global, html) = (pair("global", "js_attachment"), pair("local", "html_file"));
    assert_eq!(found(&stored, a.pcn_sensor, "js_attachment"), global);
    assert_eq!(found(&stored, a.pcn_sensor, "html_smuggling"), vec![], "the SCN's ruleset is not the PCN sensor's");
    assert_eq!(found(&stored, a.scn_sensor, "js_attachment"), global);
    assert_eq!(found(&stored, a.scn_sensor, "html_smuggling"), html);
    let b_stored = until_stored(&w, &w.b, 2).await;
    assert!(b_stored.iter().all(|m| yara_rules(m).is_empty()), "tenant B ran A's rules: {b_stored:?}");
    let m = stored.iter().find(|m| m["sensor_id"] == a.scn_sensor.to_string() && !yara_rules(m).is_empty()).unwrap();
    let run = m["engines"].as_array().unwrap().iter().find(|e| e["engine"] == "yara").unwrap();
    assert!(run["database"].as_str().unwrap().contains("2 rules"), "{run}");

    // Switched off, the SCN's rule stops at the next message; the write applies once committed.
    let one = format!("{path}/{local}");
    let r = w.app.patch(&one, &senior(&w, a, a.scn), json!({"disabled_rules": ["html_file"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    send_sample(&at_scn, "pdf_openaction", "bob@example.com").await;
    send_sample(&at_scn, "html_smuggling", "carol@example.com").await;
    let stored = until_stored(&w, a, 6).await;
    let again = stored.iter().find(|m| m["headers"]["to"] == "carol@example.com").expect("the second html_smuggling");
    assert_eq!(yara_rules(again), [], "a rule switched off still reported: {again}");
    // Listed by rule, through the API.
    let listed = w.app.get(&format!("/v1/tenants/{}/messages?engine=yara&rule=html_file", a.id), &w.admin_pcn()).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1, "{:?}", listed.body);
    for worker in [at_pcn, at_scn, in_b] {
        worker.shutdown().await;
    }
}
