//! Central nodes: the tenant's PCN and its SCNs.
use actix_web::{HttpResponse, delete, get, http::header, post, web};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::ApiError;
use super::pagination::{Page, PageParams};
use super::responses::*;
use super::views::NodeView;
use crate::store;
use crate::wire::NameSchema;

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScn {
    #[schema(value_type = NameSchema, example = "Branch office SCN")]
    pub name: String,
}

impl FromFields for CreateScn {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        Some(CreateScn { name: f.name("name")? })
    }
}

/// Create an SCN (secondary central node) in a tenant.
#[utoipa::path(
    tag = "nodes",
    params(("tenant_id" = Uuid, Path)),
    request_body = CreateScn,
    responses(
        (status = 201, description = "Created", body = NodeView, headers(("Location" = String, description = "URL of the new node"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/nodes")]
pub async fn create_scn(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    caller.scope(&state, tenant).await?;
    caller.require(Permission::ManageScns)?;
    let CreateScn { name } = body.parse()?;
    let node = store::nodes::create_scn(&state.db, tenant, &name, &caller.actor()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/nodes/{}", node.id)))
        .json(NodeView::from(node)))
}

/// List the central nodes in scope (at an SCN: only that SCN).
#[utoipa::path(
    tag = "nodes",
    params(("tenant_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = Page<NodeView>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/nodes")]
pub async fn list_nodes(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<NodeView>>, ApiError> {
    let scope = caller.scope(&state, path.into_inner()).await?;
    caller.require(Permission::ReadNodes)?;
    let page = query.page()?;
    let nodes = store::nodes::list(&state.db, scope, page).await?;
    Ok(web::Json(Page::from_store(nodes, NodeView::from)))
}

/// Read a central node.
#[utoipa::path(
    tag = "nodes",
    params(("tenant_id" = Uuid, Path), ("node_id" = Uuid, Path)),
    responses((status = 200, body = NodeView), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/nodes/{node_id}")]
pub async fn get_node(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<NodeView>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (_, node) = caller
        .reach(&state, tenant, Permission::ReadNodes, async |s| store::nodes::get(&state.db, s, id).await)
        .await?;
    Ok(web::Json(node.into()))
}

/// Delete an SCN. Its sensors must be re-attached or deleted first (409); the PCN cannot be deleted.
#[utoipa::path(
    tag = "nodes",
    params(("tenant_id" = Uuid, Path), ("node_id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
    ),
    security(("bearer" = []))
)]
#[delete("/v1/tenants/{tenant_id}/nodes/{node_id}")]
pub async fn delete_scn(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageScns, async |s| store::nodes::get(&state.db, s, id).await)
        .await?;
    store::nodes::delete_scn(&state.db, scope, id, &caller.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}
