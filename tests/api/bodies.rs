//! Every request body the OpenAPI document describes is the one the server parses: each documented
//! property is taken (never "unknown field") and any other key is refused by name.
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::helpers::*;

/// The schema behind `schema`, following `$ref`s, with the properties of `allOf` parts merged.
fn properties(spec: &Value, schema: &Value) -> Map<String, Value> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return properties(spec, &spec["components"]["schemas"][name]);
    }
    let mut all = schema["properties"].as_object().cloned().unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        all.extend(properties(spec, part));
    }
    all
}

fn unknown_field_at(reply: &Reply, pointer: &str) -> bool {
    reply.body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["pointer"] == pointer && e["message"] == "unknown field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_request_properties_are_exactly_the_parsed_ones() {
    let w = world(Backend::Postgres).await;
    let spec: Value = serde_json::from_str(&mailsensor::api::openapi_json()).unwrap();
    let sensor_token = w.sensor_token(&w.a, w.a.pcn_sensor);
    let officer = w.member(&w.a, mailsensor::auth::Role::SeniorSecurityOfficer, w.a.pcn);
    let rulesets = format!("/v1/tenants/{}/detection-rulesets", w.a.id);
    let probe =
        w.app.post(&rulesets, &officer, json!({"name": "probe", "source": "rule probe { condition: true }"})).await;
    assert_eq!(probe.status, 201, "{:?}", probe.body);
    let ruleset = probe.body["id"].as_str().unwrap().to_owned();
    let destinations = format!("/v1/tenants/{}/alert-destinations", w.a.id);
    let destination = w
        .app
        .post(
            &destinations,
            &w.admin_pcn(),
            json!({"name": "probe", "webhook": {"url": "https://siem.example.com/hook"}}),
        )
        .await;
    assert_eq!(destination.status, 201, "{:?}", destination.body);
    let destination = destination.body["id"].as_str().unwrap().to_owned();
    let mut checked = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(content) = op["requestBody"]["content"].as_object() else { continue };
            let (media_type, schema) = content.iter().next().unwrap();
            let path = template
                .replace("{tenant_id}", &w.a.id.to_string())
                .replace("{sensor_id}", &w.a.pcn_sensor.to_string())
                .replace("{instance_id}", "probe-1")
                .replace("{ruleset_id}", &ruleset)
                .replace("{destination_id}", &destination);
            let token = if template.starts_with("/v1/sensors/") {
                sensor_token.clone()
            } else if template == "/v1/tenants" || template == "/v1/tenants/{tenant_id}" {
                w.operator.clone()
            } else if template.contains("/detection-rulesets") || template.contains("/retrohunts") {
                officer.clone()
            } else {
                w.admin_pcn()
            };
            let method: Method = method.to_uppercase().parse().unwrap();
            let send = async |body: Value| -> Reply {
                if media_type == "application/vnd.mailsensor.handoff" {
                    // The envelope is the first line; the message follows.
                    let raw = format!("{body}\nSubject: probe\r\n\r\nprobe\r\n");
                    let response = w
                        .app
                        .http
                        .request(method.clone(), format!("{}{path}", w.app.base))
                        .bearer_auth(&token)
                        .header("content-type", media_type.as_str())
                        .header("idempotency-key", format!("probe-{}", uuid::Uuid::new_v4()))
                        .body(raw)
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let headers = response.headers().clone();
                    Reply { status, headers, body: response.json().await.unwrap_or(Value::Null) }
                } else {
                    w.app.call(method.clone(), &path, Some(&token), Some(body), &[]).await
                }
            };
            // The hand-off body is bytes: an envelope line (its own schema) and the message.
            let documented = if media_type == "application/vnd.mailsensor.handoff" {
                properties(&spec, &json!({"$ref": "#/components/schemas/HandoffEnvelope"}))
            } else {
                properties(&spec, &schema["schema"])
            };
            assert!(!documented.is_empty(), "{method} {template}: the request body documents no property");
            for name in documented.keys() {
                // A value of the wrong type: refused, but as that field, never as an unknown one.
                let reply = send(json!({ name: {"probe": [1]} })).await;
                assert_eq!(reply.status, 422, "{method} {template} with {name}: {:?}", reply.body);
                let pointer = format!("/{name}");
                assert!(
                    !unknown_field_at(&reply, &pointer),
                    "{method} {template}: documented property {name} is not parsed: {:?}",
                    reply.body
                );
                assert!(
                    reply.pointers().iter().any(|p| p.starts_with(&pointer)),
                    "{method} {template} {name}: {:?}",
                    reply.body
                );
            }
            let reply = send(json!({"zz_undocumented": 1})).await;
            assert_eq!(reply.status, 422, "{method} {template}: {:?}", reply.body);
            assert!(
                unknown_field_at(&reply, "/zz_undocumented"),
                "{method} {template}: an undocumented key is not refused: {:?}",
                reply.body
            );
            checked.push(format!("{method} {template}"));
        }
    }
    // Every kind of body: JSON, merge patch and the hand-off.
    assert!(checked.len() >= 10, "{checked:?}");
}
