//! Tenants and their PCN (platform operator).
use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::ApiError;
use super::pagination::{Page, PageParams};
use super::responses::*;
use super::views::{NodeView, TenantView};
use crate::auth::Principal;
use crate::store;
use crate::wire::NameSchema;

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(value_type = NameSchema, example = "Acme Corp")]
    pub name: String,
    /// Name of the tenant's PCN; defaults to "PCN".
    #[schema(nullable = false, value_type = Option<NameSchema>, example = "Head office PCN")]
    pub pcn_name: Option<String>,
}

impl FromFields for CreateTenant {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let name = f.name("name");
        let pcn_name = f.optional_name("pcn_name");
        Some(CreateTenant { name: name?, pcn_name })
    }
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTenant {
    #[schema(value_type = NameSchema, example = "Acme Corporation")]
    pub name: String,
}

impl FromFields for RenameTenant {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        Some(RenameTenant { name: f.name("name")? })
    }
}

#[derive(serde::Serialize, ToSchema)]
pub struct CreatedTenant {
    #[serde(flatten)]
    pub tenant: TenantView,
    pub pcn: NodeView,
}

/// Create a tenant together with its PCN.
#[utoipa::path(
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = CreatedTenant, headers(("Location" = String, description = "URL of the new tenant"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 409, response = Conflict), (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants")]
pub async fn create_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ManageTenants)?;
    let CreateTenant { name, pcn_name } = body.parse()?;
    let pcn_name = pcn_name.as_deref().unwrap_or("PCN");
    let (tenant, pcn) = store::tenants::create(&state.db, &name, pcn_name, &caller.actor()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{}", tenant.id)))
        .json(CreatedTenant { tenant: TenantView::new(tenant, pcn.id), pcn: pcn.into() }))
}

/// List tenants: every tenant for the platform operator, one's own tenant for everybody else.
#[utoipa::path(
    tag = "tenants",
    params(PageParams),
    responses((status = 200, body = Page<TenantView>), (status = 401, response = Unauthorized), (status = 422, response = Unprocessable)),
    security(("bearer" = []))
)]
#[get("/v1/tenants")]
pub async fn list_tenants(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<TenantView>>, ApiError> {
    let page = query.page()?;
    let only = match &caller.principal {
        Principal::Operator { .. } => None,
        Principal::Member { tenant, .. } | Principal::Sensor { tenant, .. } => Some(*tenant),
    };
    let tenants = store::tenants::list(&state.db, only, page).await?;
    Ok(web::Json(Page::from_store(tenants, |(t, pcn)| TenantView::new(t, pcn))))
}

async fn visible_tenant(state: &AppState, caller: &Caller, id: Uuid) -> Result<TenantView, ApiError> {
    caller.scope(state, id).await?;
    let tenant = store::tenants::get(&state.db, id).await?;
    let pcn = store::tenants::pcn_of(&state.db, id).await?;
    Ok(TenantView::new(tenant, pcn.id))
}

/// Read a tenant (the operator: any; members: their own).
#[utoipa::path(
    tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 200, body = TenantView), (status = 401, response = Unauthorized), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}")]
pub async fn get_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<web::Json<TenantView>, ApiError> {
    Ok(web::Json(visible_tenant(&state, &caller, path.into_inner()).await?))
}

/// Rename a tenant.
#[utoipa::path(
    tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    request_body = RenameTenant,
    responses(
        (status = 200, body = TenantView), (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}")]
pub async fn rename_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<web::Json<TenantView>, ApiError> {
    let id = path.into_inner();
    caller.scope(&state, id).await?;
    caller.require(Permission::ManageTenants)?;
    let RenameTenant { name } = body.parse()?;
    let tenant = store::tenants::rename(&state.db, id, &name, &caller.actor()).await?;
    let pcn = store::tenants::pcn_of(&state.db, id).await?;
    Ok(web::Json(TenantView::new(tenant, pcn.id)))
}

/// Delete a tenant: it is gone at once (with its nodes, sensors and settings; no token of its
/// people or workers is accepted after), and its mail — messages, content, scan results,
/// retro-hunts and alerts — is erased in the background, a batch at a time. Audit events stay.
#[utoipa::path(
    tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[delete("/v1/tenants/{tenant_id}")]
pub async fn delete_tenant(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    caller.scope(&state, id).await?;
    caller.require(Permission::ManageTenants)?;
    store::tenants::delete(&state.db, id, &caller.actor()).await?;
    // Its mail goes in the background, a batch at a time; a replica that stops midway leaves the
    // rest to the next expiry run of any replica.
    let db = state.db.clone();
    tokio::spawn(async move {
        match store::erasure::erase_tenant(&db, id).await {
            Ok(messages) => tracing::info!(tenant = %id, messages, "erased a deleted tenant"),
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "erasing a deleted tenant failed; the next expiry run goes on")
            }
        }
    });
    Ok(HttpResponse::NoContent().finish())
}
