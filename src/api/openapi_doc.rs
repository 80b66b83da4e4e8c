//! The OpenAPI document: what utoipa derives from the handlers, then made into what SDK generators,
//! linters and Swagger UI expect (each pass says what and why).
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::responses;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "mailsensor API",
        description = "Control plane of mailsensor: tenants, central nodes (PCN/SCN), sensors and their SMTP integration settings. \
Authenticate with a bearer JWT; objects outside your scope answer 404, actions your role may not perform answer 403. \
Errors are RFC 9457 problem documents; a 422 lists every bad field.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
        contact(name = "mailsensor")
    ),
    servers((url = "/", description = "This server")),
    modifiers(&BearerAuth),
    components(
        schemas(
            crate::wire::SensorConfig, crate::wire::SensorDeleted, crate::wire::Reset, super::error::Problem,
            super::fleet::WaitFor, crate::policy::SizeUnit, crate::alerts::AlertEvent, crate::alerts::AlertData,
        ),
        responses(
        responses::Unauthorized, responses::Forbidden, responses::NotFound, responses::Conflict,
        responses::PreconditionFailed, responses::BadRequest, responses::UnsupportedMediaType, responses::Unprocessable
    )),
    tags(
        (name = "tenants", description = "Tenants and their PCN (platform operator)"),
        (name = "nodes", description = "Central nodes: the PCN and SCNs"),
        (name = "sensors", description = "Sensors attached to central nodes"),
        (name = "smtp-integration", description = "A sensor's SMTP integration settings: read, replace, change"),
        (name = "evaluate", description = "The policy explainer: what a worker would do with a connection and envelope"),
        (name = "revisions", description = "A sensor's settings history, and restoring an earlier revision"),
        (name = "fleet", description = "The workers of a sensor and which settings revision each runs"),
        (name = "audit", description = "Who changed what"),
        (name = "messages", description = "Messages received by sensors, with scan verdicts"),
        (name = "detection", description = "Detection rulesets: the tenant's own YARA rules, attached to the PCN (every sensor) or an SCN (its sensors); history, restore, and an explainer"),
        (name = "alerts", description = "Alert destinations (signed webhooks, syslog CEF over TCP or TLS, e-mail), their delivery log, tests, retries and replays; the alert events. The events' payloads are under `webhooks`"),
        (name = "workers", description = "For sensor workers only (sensor token): the config stream, acknowledgements, the message hand-off"),
        (name = "operations", description = "Health, readiness and metrics (no authentication)")
    )
)]
pub(super) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        scheme.description = Some("A JWT from `mailsensor token` or your identity provider (claims: sub, role, tenant, node, sensor, iss, aud, exp).".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// The document as served at `/openapi.json` and checked in at `openapi/openapi.json`.
pub fn polish(spec: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(spec).expect("the OpenAPI document serialises");
    without_segment_patterns(&mut doc);
    merge_all_of(&mut doc);
    name_page_items(&mut doc);
    size_limit_as_one_of(&mut doc);
    for operation in operations(&mut doc) {
        described(operation);
        describe_responses(operation);
        raw_bytes(operation);
        parameters_not_nullable(operation);
        public_unless_secured(operation);
        merge_patch_also_as_json(operation);
    }
    problem_responses(&mut doc);
    request_id_on_every_response(&mut doc);
    alert_webhooks(&mut doc);
    doc
}

/// What a webhook destination receives, one entry per event type (OpenAPI 3.1 `webhooks`): the
/// event as the body, signed by Standard Webhooks v1.
fn alert_webhooks(doc: &mut Value) {
    let mut webhooks = Map::new();
    for kind in crate::alerts::EVENT_KINDS {
        let signed = "Standard Webhooks v1: `webhook-signature` is `v1,` + base64 HMAC-SHA256 of \
            `webhook-id.webhook-timestamp.body` with the destination's `whsec_` secret (two signatures, space-separated, \
            for 24 h after a rotation). Answer 2xx; 410 disables the destination; 429/503 with `Retry-After` delay the retry.";
        let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}});
        webhooks.insert(
            kind.to_owned(),
            json!({"post": {
                "operationId": format!("on_{}", kind.replace('.', "_")),
                "summary": format!("A `{kind}` alert event"),
                "description": signed,
                "tags": ["alerts"],
                "parameters": [
                    header("webhook-id", "The event's id: the same on every attempt; de-duplicate by it"),
                    header("webhook-timestamp", "Seconds since the Unix epoch when this attempt was signed"),
                    header("webhook-signature", "Space-separated `v1,<base64>` signatures"),
                ],
                // The receiver authenticates the sender by its signature, not by a scheme here.
                "security": [],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertEvent"}}}},
                "responses": {"200": {"description": "Received (any 2xx)"}},
            }}),
        );
    }
    doc["webhooks"] = Value::Object(webhooks);
}

/// A route may limit what a path segment matches (`{ruleset_id:[0-9a-fA-F-]+}`, so that
/// `…/detection-rulesets/test` is not taken for an id): the document names the parameter only.
fn without_segment_patterns(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    let plain = |path: &str| {
        let mut plain = String::new();
        let (mut depth, mut skipping) = (0, false);
        for c in path.chars() {
            match c {
                '{' => {
                    depth += 1;
                    if depth == 1 {
                        plain.push(c);
                    }
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        skipping = false;
                        plain.push(c);
                    }
                }
                ':' if depth == 1 => skipping = true,
                _ if skipping => {}
                _ => plain.push(c),
            }
        }
        plain
    };
    // Rebuilt in order: the document keeps the order of the routes.
    *paths = std::mem::take(paths).into_iter().map(|(path, item)| (plain(&path), item)).collect();
}

fn operations(doc: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.iter_mut().filter(|(m, _)| METHODS.contains(&m.as_str())).map(|(_, op)| op))
        .filter_map(Value::as_object_mut)
}

/// `#[serde(flatten)]` comes out as `allOf`; generators make awkward types of it, and an `allOf`
/// part with `additionalProperties: false` would refuse the other parts' properties. One object
/// with every property says the same.
fn merge_all_of(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let Some(all) = doc["components"]["schemas"].as_object_mut() else { return };
    for schema in all.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array).cloned() else { continue };
        let (mut properties, mut required) = (Map::new(), Vec::new());
        for part in &parts {
            let part = match part["$ref"].as_str() {
                Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
                None => part,
            };
            properties.extend(part["properties"].as_object().cloned().unwrap_or_default());
            required.extend(part["required"].as_array().cloned().unwrap_or_default());
        }
        let object = schema.as_object_mut().expect("a schema with allOf is an object");
        object.remove("allOf");
        object.insert("type".into(), json!("object"));
        object.insert("required".into(), Value::Array(required));
        object.insert("properties".into(), Value::Object(properties));
    }
}

/// `message_size_limit` is one of two shapes; saying so lets generated clients build either one
/// without a field that the other forbids. `Limited` comes first: clients try the alternatives in
/// order, and only it requires `value` and `unit`.
fn size_limit_as_one_of(doc: &mut Value) {
    let schema = &mut doc["components"]["schemas"]["MessageSizeLimit"];
    let description = schema["description"].clone();
    *schema = json!({
        "description": description,
        "oneOf": [
            {
                "title": "Limited",
                "description": "At most `value` `unit`s (binary units).",
                "type": "object",
                "required": ["unlimited", "value", "unit"],
                "properties": {
                    "unlimited": {"type": "boolean", "const": false},
                    "value": {"type": "integer", "format": "int64", "minimum": 1, "example": 25},
                    "unit": {"$ref": "#/components/schemas/SizeUnit"}
                },
                "additionalProperties": false
            },
            {
                "title": "Unlimited",
                "description": "Up to the platform cap.",
                "type": "object",
                "required": ["unlimited"],
                "properties": {"unlimited": {"type": "boolean", "const": true}},
                "additionalProperties": false
            }
        ]
    });
}

/// Bodies that are bytes, not JSON: a raw message, and the hand-off (envelope line + message).
fn raw_bytes(operation: &mut Map<String, Value>) {
    const RAW: [&str; 2] = ["message/rfc822", "application/vnd.mailsensor.handoff"];
    let mut contents: Vec<&mut Map<String, Value>> = Vec::new();
    for (key, value) in operation.iter_mut() {
        match key.as_str() {
            "requestBody" => contents.extend(value.get_mut("content").and_then(Value::as_object_mut)),
            "responses" => contents.extend(
                value
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|r| r.values_mut())
                    .filter_map(|r| r.get_mut("content").and_then(Value::as_object_mut)),
            ),
            _ => {}
        }
    }
    for content in contents {
        for (media_type, media) in content.iter_mut().filter(|(m, _)| RAW.contains(&m.as_str())) {
            media["schema"] = json!({"type": "string", "format": "binary", "contentMediaType": media_type});
        }
    }
}

/// A generic `Page<T>` inlines `T`; name it, so every list shares the item type of its single read.
fn name_page_items(doc: &mut Value) {
    let Some(all) = doc["components"]["schemas"].as_object_mut() else { return };
    for (name, schema) in all.iter_mut() {
        if let Some(item) = name.strip_prefix("Page_") {
            schema["properties"]["items"]["items"] = json!({"$ref": format!("#/components/schemas/{item}")});
        }
    }
}

/// A one-line doc comment becomes only a summary; tools (and Swagger UI's expanded view) want the
/// description too.
fn described(operation: &mut Map<String, Value>) {
    if operation.get("description").and_then(Value::as_str).is_none_or(str::is_empty)
        && let Some(summary) = operation.get("summary").cloned()
    {
        operation.insert("description".into(), summary);
    }
}

/// OpenAPI requires a description on every response; where a path gave none, use the reason phrase.
fn describe_responses(operation: &mut Map<String, Value>) {
    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { return };
    for (status, response) in responses.iter_mut() {
        if response.get("$ref").is_none() && response["description"].as_str().is_none_or(str::is_empty) {
            let reason = status
                .parse::<u16>()
                .ok()
                .and_then(|code| actix_web::http::StatusCode::from_u16(code).ok())
                .and_then(|code| code.canonical_reason())
                .unwrap_or("Response");
            response["description"] = json!(reason);
        }
    }
}

/// A parameter is absent or has a value; `null` is not something a client can send in a header,
/// path or query (generated clients otherwise send `None` as a header value).
fn parameters_not_nullable(operation: &mut Map<String, Value>) {
    for parameter in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        let schema = &mut parameter["schema"];
        if let Some(types) = schema["type"].as_array() {
            let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            schema["type"] = if types.len() == 1 { types[0].clone() } else { Value::Array(types) };
        }
        if let Some(one_of) = schema["oneOf"].as_array() {
            let kept: Vec<Value> = one_of.iter().filter(|s| s["type"] != "null").cloned().collect();
            if kept.len() == 1 {
                *schema = kept[0].clone();
            }
        }
    }
}

/// Operations that declare no security need none (health, readiness, metrics); say so, so tools do
/// not assume a global requirement.
fn public_unless_secured(operation: &mut Map<String, Value>) {
    operation.entry("security").or_insert_with(|| json!([]));
}

/// A merge patch is also accepted as plain `application/json`.
fn merge_patch_also_as_json(operation: &mut Map<String, Value>) {
    let Some(content) = operation.get_mut("requestBody").and_then(|b| b["content"].as_object_mut()) else { return };
    if let Some(patch) = content.get("application/merge-patch+json").cloned() {
        content.entry("application/json").or_insert(patch);
    }
}

/// Every error response is one `Problem`, with an example of its own status.
fn problem_responses(doc: &mut Value) {
    let Some(all) = doc["components"]["responses"].as_object_mut() else { return };
    for (name, response) in all.iter_mut() {
        let Some(media) = response["content"].get_mut("application/problem+json") else { continue };
        media["schema"] = json!({"$ref": "#/components/schemas/Problem"});
        if let Some(example) = responses::example(name) {
            media["example"] = example;
        }
        match name.as_str() {
            "Unauthorized" => {
                response["headers"]["WWW-Authenticate"] = json!({
                    "description": "`Bearer`, with `error` and `error_description` saying why the token was refused (RFC 6750)",
                    "schema": {"type": "string"}
                })
            }
            "PreconditionFailed" => {
                response["headers"]["ETag"] = json!({
                    "description": "The current revision: re-read, or retry with this in `If-Match`",
                    "schema": {"type": "string"}
                })
            }
            _ => {}
        }
    }
}

/// Every response carries `X-Request-Id` (the caller's, or a new one), also in the logs.
fn request_id_on_every_response(doc: &mut Value) {
    doc["components"]["headers"]["X-Request-Id"] = json!({
        "description": "The request's id: the caller's `X-Request-Id` if it sent a sane one, else a new one; logged with the request",
        "schema": {"type": "string"}
    });
    let header = json!({"$ref": "#/components/headers/X-Request-Id"});
    if let Some(all) = doc["components"]["responses"].as_object_mut() {
        for response in all.values_mut() {
            response["headers"]["X-Request-Id"] = header.clone();
        }
    }
    for operation in operations(doc) {
        for response in
            operation.get_mut("responses").and_then(Value::as_object_mut).into_iter().flat_map(|r| r.values_mut())
        {
            if response.get("$ref").is_none() {
                response["headers"]["X-Request-Id"] = header.clone();
            }
        }
    }
}
