//! Sensors: create, list, read, rename, re-attach, delete.
use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::ApiError;
use super::pagination::{Page, PageParams, uuid_param};
use super::responses::*;
use super::views::SensorView;
use crate::store;
use crate::wire::NameSchema;

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSensor {
    #[schema(value_type = NameSchema, example = "mx-copy-1")]
    pub name: String,
    /// The central node (PCN or SCN) to attach the sensor to. An administrator signed in at an SCN may only name that SCN.
    pub node_id: Uuid,
}

impl FromFields for CreateSensor {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let name = f.name("name");
        let node_id = f.required("node_id");
        Some(CreateSensor { name: name?, node_id: node_id? })
    }
}

/// Rename, re-attach, or both.
#[derive(ToSchema)]
#[schema(min_properties = 1)]
#[serde(deny_unknown_fields)]
pub struct UpdateSensor {
    /// New name.
    #[schema(nullable = false, value_type = Option<NameSchema>)]
    pub name: Option<String>,
    /// Re-attach the sensor to this central node.
    #[schema(nullable = false)]
    pub node_id: Option<Uuid>,
}

impl FromFields for UpdateSensor {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let name = f.optional_name("name");
        let node_id = f.optional("node_id");
        if name.is_none() && node_id.is_none() && !f.has_error_at("name") && !f.has_error_at("node_id") {
            f.error("", "give `name`, `node_id` or both");
        }
        Some(UpdateSensor { name, node_id })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SensorFilter {
    /// Only sensors attached to this node.
    #[param(value_type = Option<Uuid>)]
    pub node_id: Option<String>,
}

/// Create a sensor attached to a node; its SMTP integration settings start at the defaults (disabled, both lists empty, unlimited size).
#[utoipa::path(
    tag = "sensors",
    params(("tenant_id" = Uuid, Path)),
    request_body = CreateSensor,
    responses(
        (status = 201, description = "Created", body = SensorView, headers(("Location" = String, description = "URL of the new sensor"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/sensors")]
pub async fn create_sensor(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let scope = caller.scope(&state, tenant).await?;
    caller.require(Permission::ManageSensors)?;
    let CreateSensor { name, node_id } = body.parse()?;
    let sensor =
        store::sensors::create(&state.db, scope, &name, node_id, &caller.actor(), state.max_message_bytes).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/sensors/{}", sensor.id)))
        .json(SensorView::from(sensor)))
}

/// List the sensors in scope, optionally only those attached to one node.
#[utoipa::path(
    tag = "sensors",
    params(("tenant_id" = Uuid, Path), SensorFilter, PageParams),
    responses(
        (status = 200, body = Page<SensorView>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors")]
pub async fn list_sensors(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    filter: web::Query<SensorFilter>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<SensorView>>, ApiError> {
    let scope = caller.scope(&state, path.into_inner()).await?;
    caller.require(Permission::ReadSensors)?;
    let mut errors = Vec::new();
    let page = query.parse(&mut errors);
    let node = uuid_param("node_id", &filter.node_id, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let sensors = store::sensors::list(&state.db, scope, node, page).await?;
    Ok(web::Json(Page::from_store(sensors, SensorView::from)))
}

/// Read a sensor.
#[utoipa::path(
    tag = "sensors",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    responses((status = 200, body = SensorView), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}")]
pub async fn get_sensor(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<SensorView>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (_, sensor) = caller
        .reach(&state, tenant, Permission::ReadSensors, async |s| store::sensors::get(&state.db, s, id).await)
        .await?;
    Ok(web::Json(sensor.into()))
}

/// Rename a sensor and/or re-attach it to another central node.
#[utoipa::path(
    tag = "sensors",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    request_body(content = UpdateSensor, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = SensorView), (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}/sensors/{sensor_id}")]
pub async fn update_sensor(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<web::Json<SensorView>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageSensors, async |s| store::sensors::get(&state.db, s, id).await)
        .await?;
    let UpdateSensor { name, node_id } = body.parse()?;
    let actor = caller.actor();
    let sensor =
        store::sensors::update(&state.db, scope, id, name.as_deref(), node_id, &actor, state.max_message_bytes).await?;
    Ok(web::Json(sensor.into()))
}

/// Delete a sensor and its settings.
#[utoipa::path(
    tag = "sensors",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[delete("/v1/tenants/{tenant_id}/sensors/{sensor_id}")]
pub async fn delete_sensor(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageSensors, async |s| store::sensors::get(&state.db, s, id).await)
        .await?;
    store::sensors::delete(&state.db, scope, id, &caller.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}
