//! Tenants, nodes and sensors: create, list, read, rename, re-attach, delete; pagination; the
//! operational endpoints.
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;
use crate::on_both_backends;
use mailsensor::auth::Role;

async fn tenant_and_node_lifecycle(backend: Backend) {
    let w = world(backend).await;
    let op = &w.operator;
    let r = w.app.post("/v1/tenants", op, json!({"name": "  Globex  ", "pcn_name": "HQ"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/tenants/{id}").as_str()));
    assert_eq!(r.body["name"], "Globex", "names are trimmed");
    assert_eq!(r.body["pcn"]["name"], "HQ");
    assert_eq!(r.body["pcn"]["kind"], "pcn");
    assert_eq!(r.body["pcn_id"], r.body["pcn"]["id"]);
    let dup = w.app.post("/v1/tenants", op, json!({"name": "Globex"})).await;
    assert_eq!(dup.status, 409, "{:?}", dup.body);
    let bad = w.app.post("/v1/tenants", op, json!({"name": " ", "pcn_name": 5, "x": 1})).await;
    assert_eq!(bad.status, 422);
    let mut pointers = bad.pointers();
    pointers.sort();
    assert_eq!(pointers, vec!["/name", "/pcn_name", "/x"]);
    let r = w.app.patch(&format!("/v1/tenants/{id}"), op, json!({"name": "Globex Inc"})).await;
    assert_eq!((r.status.as_u16(), r.body["name"].as_str()), (200, Some("Globex Inc")));

    // The PCN cannot go on its own; an SCN with sensors cannot go either.
    let pcn = w.app.delete(&format!("/v1/tenants/{}/nodes/{}", w.a.id, w.a.pcn), op).await;
    assert_eq!(pcn.status, 409, "{:?}", pcn.body);
    let scn = w.app.delete(&format!("/v1/tenants/{}/nodes/{}", w.a.id, w.a.scn), op).await;
    assert_eq!(scn.status, 409, "{:?}", scn.body);
    assert!(scn.body["detail"].as_str().unwrap().contains("1 sensor"));
    let dup = w.app.post(&format!("/v1/tenants/{}/nodes", w.a.id), op, json!({"name": "SCN"})).await;
    assert_eq!(dup.status, 409);
    let r = w.app.get(&format!("/v1/tenants/{}/nodes/{}", w.a.id, w.a.scn), op).await;
    assert_eq!(r.body["kind"], "scn");
}

async fn sensor_lifecycle(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let t = w.a.id;
    let r =
        w.app.post(&format!("/v1/tenants/{t}/sensors"), &admin, json!({"name": "edge-1", "node_id": w.a.pcn})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.header("location"), Some(format!("/v1/tenants/{t}/sensors/{id}").as_str()));
    let settings = w.app.get(&format!("/v1/tenants/{t}/sensors/{id}/smtp-integration"), &admin).await;
    assert_eq!(settings.body["enabled"], false, "created with the defaults");
    let dup =
        w.app.post(&format!("/v1/tenants/{t}/sensors"), &admin, json!({"name": "edge-1", "node_id": w.a.pcn})).await;
    assert_eq!(dup.status, 409);
    // A node of another tenant reads as absent.
    let other = w.app.post(&format!("/v1/tenants/{t}/sensors"), &admin, json!({"name": "x", "node_id": w.b.pcn})).await;
    assert_eq!(other.status, 422);
    assert_eq!(other.pointers(), vec!["/node_id"]);
    let bad = w.app.post(&format!("/v1/tenants/{t}/sensors"), &admin, json!({"node_id": "nope"})).await;
    assert_eq!(bad.pointers(), vec!["/name", "/node_id"]);

    // Re-attach to the SCN: the SCN administrator now sees it, then renames it.
    let admin_scn = w.member(&w.a, Role::Administrator, w.a.scn);
    let path = format!("/v1/tenants/{t}/sensors/{id}");
    assert_eq!(w.app.get(&path, &admin_scn).await.status, 404);
    let r = w.app.patch(&path, &admin, json!({"node_id": w.a.scn})).await;
    assert_eq!(r.body["node_id"], w.a.scn.to_string());
    let r = w.app.patch(&path, &admin_scn, json!({"name": "edge-1-renamed"})).await;
    assert_eq!((r.status.as_u16(), r.body["name"].as_str()), (200, Some("edge-1-renamed")));
    let filtered = w.app.get(&format!("/v1/tenants/{t}/sensors?node_id={}", w.a.scn), &admin).await;
    assert_eq!(filtered.body["items"].as_array().unwrap().len(), 2);
    let r = w.app.delete(&path, &admin_scn).await;
    assert_eq!(r.status, 204);
    assert_eq!(w.app.get(&path, &admin).await.status, 404);
    assert_eq!(w.app.get(&format!("{path}/smtp-integration"), &admin).await.status, 404);
}

async fn pagination(backend: Backend) {
    let w = world(backend).await;
    let admin = w.admin_pcn();
    let t = w.a.id;
    for i in 0..5 {
        let r = w
            .app
            .post(&format!("/v1/tenants/{t}/sensors"), &admin, json!({"name": format!("p{i}"), "node_id": w.a.pcn}))
            .await;
        assert_eq!(r.status, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("/v1/tenants/{t}/sensors?limit=3&cursor={c}"),
            None => format!("/v1/tenants/{t}/sensors?limit=3"),
        };
        let r = w.app.get(&url, &admin).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        pages += 1;
        for item in r.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7, "2 fixture sensors + 5 new, each once");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);
    for bad in ["limit=0", "limit=501", "limit=x", "cursor=zzz", "node_id=1"] {
        let r = w.app.get(&format!("/v1/tenants/{t}/sensors?{bad}"), &admin).await;
        assert_eq!(r.status, 422, "{bad}");
        assert!(r.body["errors"][0]["parameter"].is_string(), "{bad}: {:?}", r.body);
    }
}

async fn operational_endpoints(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.call(Method::GET, "/healthz", None, None, &[]).await;
    assert_eq!((r.status.as_u16(), &r.body["status"]), (200, &json!("ok")));
    let r = app.call(Method::GET, "/readyz", None, None, &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.call(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.as_str().unwrap().contains("mailsensor_http_requests_total"), "{:?}", r.body);
    let r = app.call(Method::GET, "/docs/", None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.as_str().unwrap().contains("swagger"), "Swagger UI is served from the binary");
    let r = app.call(Method::GET, "/docs/swagger-ui-bundle.js", None, None, &[]).await;
    assert_eq!(r.status, 200, "vendored assets");
    let r = app.call(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(r.body["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    // Request ids: generated, or the caller's own echoed back.
    let r = app.call(Method::GET, "/healthz", None, None, &[]).await;
    assert!(r.header("x-request-id").is_some_and(|id| id.len() >= 32));
    let r = app.call(Method::GET, "/healthz", None, None, &[("x-request-id", "trace-123")]).await;
    assert_eq!(r.header("x-request-id"), Some("trace-123"));
    let r = app.call(Method::GET, "/v1/nothing-here", None, None, &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.header("x-request-id").is_some());
    let token = app.token(&claims("olga", Role::PlatformOperator, None, None, None));
    let r = app.get("/v1/tenants/not-a-uuid", &token).await;
    assert_eq!(r.status, 404);
    let r = app.get(&format!("/v1/tenants/{}", Uuid::now_v7()), &token).await;
    assert_eq!(r.status, 404);
}

/// Defence in depth: the schema itself refuses a row that points into another tenant.
async fn schema_refuses_cross_tenant_references(backend: Backend) {
    use mailsensor::store::entity::{sensor, smtp_settings};
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let w = world(backend).await;
    let now = chrono::Utc::now();
    let cross = sensor::Entity::insert(sensor::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(w.b.id),
        node_id: Set(w.a.pcn),
        name: Set("smuggled".into()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&w.app.owner)
    .await;
    assert!(cross.is_err(), "a tenant-B sensor on a tenant-A node must violate the composite foreign key");
    let cross = smtp_settings::Entity::insert(smtp_settings::ActiveModel {
        sensor_id: Set(Uuid::now_v7()),
        tenant_id: Set(w.b.id),
        enabled: Set(true),
        destination_domains: Set(json!([])),
        clients: Set(json!([])),
        size_unlimited: Set(true),
        size_value: Set(None),
        size_unit: Set(None),
        revision: Set(1),
        updated_at: Set(now),
        updated_by: Set("x".into()),
    })
    .exec_without_returning(&w.app.owner)
    .await;
    assert!(cross.is_err(), "settings for a sensor that is not the tenant's must be refused");
    let same = sensor::Entity::insert(sensor::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(w.a.id),
        node_id: Set(w.a.pcn),
        name: Set("legit".into()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_without_returning(&w.app.owner)
    .await;
    assert!(same.is_ok(), "{same:?}");
}

on_both_backends!(
    schema_refuses_cross_tenant_references,
    tenant_and_node_lifecycle,
    sensor_lifecycle,
    pagination,
    operational_endpoints
);
