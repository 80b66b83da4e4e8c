//! The API as SDK users meet it: writes that change nothing write nothing, nulls and empty
//! parameters mean what a generated client means by them, and the document says so.
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_backends;

async fn audit_count(w: &World) -> usize {
    let path = format!("/v1/tenants/{}/audit-events?sensor_id={}&limit=500", w.a.id, w.a.pcn_sensor);
    w.app.get(&path, &w.admin_pcn()).await.body["items"].as_array().map_or(0, Vec::len)
}

async fn no_op_write_writes_nothing(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let first = w.app.patch(&path, &admin, json!({"enabled": true})).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let revision = first.body["revision"].as_i64().unwrap();
    let audits = audit_count(&w).await;
    // Where the config stream stands now: a no-op must add nothing after it.
    let token = w.sensor_token(&w.a, w.a.pcn_sensor);
    let poll = w.app.get(&format!("/v1/sensors/{}/config?wait=0", w.a.pcn_sensor), &token).await;
    let position = poll.body["next"].as_str().unwrap().to_owned();

    for (method, body) in [("PATCH", json!({"enabled": true})), ("PUT", first.body.clone())] {
        let r = if method == "PATCH" {
            w.app.patch(&path, &admin, body).await
        } else {
            w.app.put(&path, &admin, body).await
        };
        assert_eq!(r.status, 200, "{method}: {:?}", r.body);
        assert_eq!(r.body["revision"], revision, "{method} of the same settings is not a new revision");
        assert_eq!(r.header("etag"), Some(format!("\"{revision}\"").as_str()));
        assert_eq!(r.body["updated_at"], first.body["updated_at"]);
    }
    let restore = w.app.post(&format!("{path}/revisions/{revision}/restore"), &admin, json!({})).await;
    assert_eq!(
        (restore.status.as_u16(), restore.body["revision"].as_i64()),
        (200, Some(revision)),
        "{:?}",
        restore.body
    );
    assert_eq!(audit_count(&w).await, audits, "no audit event for a write that changed nothing");
    let history = w.app.get(&format!("{path}/revisions"), &admin).await;
    assert_eq!(history.body["items"][0]["revision"], revision, "no new history entry");
    let after = w.app.get(&format!("/v1/sensors/{}/config?after={position}&wait=1", w.a.pcn_sensor), &token).await;
    assert_eq!(after.body["events"], json!([]), "no stream event: {:?}", after.body);
}

async fn nulls_and_empty_parameters(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let path = w.a.settings_path(w.a.pcn_sensor);
    let limited = json!({"message_size_limit": {"unlimited": false, "value": 10, "unit": "MB"}});
    assert_eq!(w.app.patch(&path, &admin, limited).await.status, 200);
    // A merge patch's null removes a member; no setting can be removed, so it is refused, not ignored.
    let r = w.app.patch(&path, &admin, json!({"message_size_limit": {"unit": null}, "enabled": null})).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.pointers(), ["/enabled", "/message_size_limit/unit"], "{:?}", r.body);
    assert_eq!(w.app.get(&path, &admin).await.body["message_size_limit"]["unit"], "MB", "nothing changed");
    // A typed parameter's empty value is as malformed as any other (the schema says so too); an
    // empty free-text filter is simply no filter.
    let parameters = |r: &Reply| -> Vec<String> {
        r.body["errors"].as_array().unwrap().iter().map(|e| e["parameter"].as_str().unwrap().to_owned()).collect()
    };
    let r = w.app.get(&format!("/v1/tenants/{}/messages?limit=&cursor=&since=&verdict=", w.a.id), &admin).await;
    assert_eq!(
        (r.status.as_u16(), parameters(&r)),
        (422, vec!["since".to_owned(), "verdict".to_owned(), "limit".to_owned(), "cursor".to_owned()]),
        "{:?}",
        r.body
    );
    let r = w.app.get(&format!("/v1/tenants/{}/audit-events?actor=", w.a.id), &admin).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = w.app.patch(&format!("{path}?wait=&timeout="), &admin, json!({"enabled": false})).await;
    assert_eq!(
        (r.status.as_u16(), parameters(&r)),
        (422, vec!["wait".to_owned(), "timeout".to_owned()]),
        "{:?}",
        r.body
    );
}

on_both_backends!(no_op_write_writes_nothing, nulls_and_empty_parameters);

fn spec() -> Value {
    serde_json::from_str(&mailsensor::api::openapi_json()).unwrap()
}

#[test]
fn every_error_is_one_problem_and_every_list_names_its_items() {
    let spec = spec();
    for (name, response) in spec["components"]["responses"].as_object().unwrap() {
        let media = &response["content"]["application/problem+json"];
        assert_eq!(media["schema"]["$ref"], "#/components/schemas/Problem", "{name}");
        assert_eq!(media["example"]["status"].as_u64().map(|s| s >= 400), Some(true), "{name}: an example of its own");
    }
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        if let Some(item) = name.strip_prefix("Page_") {
            assert_eq!(schema["properties"]["items"]["items"]["$ref"], format!("#/components/schemas/{item}"));
        }
        assert!(schema.get("allOf").is_none(), "{name} is one object, not an allOf");
    }
}

#[test]
fn operations_read_as_methods_and_parameters_are_never_null() {
    let spec = spec();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(
                id.contains('_') && id.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{method} {path}: {id}"
            );
            assert!(ids.insert(id.to_owned()), "{id} twice");
            assert!(op["security"].is_array(), "{method} {path}: security stated");
            for p in op["parameters"].as_array().into_iter().flatten() {
                let types = &p["schema"]["type"];
                assert!(!types.as_array().is_some_and(|t| t.contains(&json!("null"))), "{method} {path}: {p}");
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if response.get("$ref").is_none() {
                    assert!(response["headers"]["X-Request-Id"].is_object(), "{method} {path} {status}: X-Request-Id");
                }
            }
        }
    }
    let public = ["get_health", "get_readiness", "get_metrics"];
    for (path, item) in spec["paths"].as_object().unwrap() {
        for op in item.as_object().unwrap().values() {
            let open = op["security"].as_array().unwrap().is_empty();
            assert_eq!(open, public.contains(&op["operationId"].as_str().unwrap()), "{path}");
        }
    }
}
