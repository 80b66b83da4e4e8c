//! A tenant's own settings: how long its mail is kept (ARCHITECTURE §13). The operator sets the
//! platform's default and cap (`serve --retention-default-days/--retention-max-days`); the
//! tenant's administrator at the PCN chooses within them.
use actix_web::{HttpRequest, HttpResponse, get, http::header, patch, web};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, JsonObject};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::responses::*;
use super::settings::IfMatch;
use crate::store;
use crate::store::retention::RetentionPolicy;

/// A tenant's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSettings {
    /// Days a message is kept, with its content, scan result, retro-hunt results and alert
    /// events; older ones are gone within an hour. At least 1, at most
    /// `platform_max_retention_days`. Set it to `null` in a patch to follow the platform default.
    #[schema(minimum = 1, example = 30)]
    pub message_retention_days: u32,
    /// True when the tenant chose none: the days are the platform default, and follow it.
    #[schema(read_only)]
    pub message_retention_is_default: bool,
    /// True when the tenant's choice is above the platform cap (lowered since): the cap applies.
    #[schema(read_only)]
    pub clamped_to_platform_cap: bool,
    #[schema(read_only)]
    pub platform_default_retention_days: u32,
    #[schema(read_only)]
    pub platform_max_retention_days: u32,
}

impl TenantSettings {
    const READ_ONLY: &[&str] = &[
        "message_retention_is_default",
        "clamped_to_platform_cap",
        "platform_default_retention_days",
        "platform_max_retention_days",
    ];

    fn new(policy: RetentionPolicy, chosen: Option<i32>) -> Self {
        TenantSettings {
            message_retention_days: policy.days(chosen),
            message_retention_is_default: chosen.is_none(),
            clamped_to_platform_cap: chosen.is_some_and(|d| i64::from(d) > i64::from(policy.max_days)),
            platform_default_retention_days: policy.default_days,
            platform_max_retention_days: policy.max_days,
        }
    }
}

/// A change of a tenant's settings (JSON merge patch); what a `GET` served may be sent back.
#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the body; it is parsed field by field
pub struct TenantSettingsPatch {
    /// Days to keep mail, 1 to the platform cap; `null`: follow the platform default.
    #[schema(minimum = 1, example = 7, nullable = true)]
    message_retention_days: Option<u32>,
}

/// The days a patch asks for: `None` leaves them, `Some(None)` returns to the default.
fn parse_patch(body: JsonObject, policy: RetentionPolicy) -> Result<Option<Option<i32>>, ApiError> {
    let mut f = Fields::new(body).ignoring(TenantSettings::READ_ONLY);
    let days: Option<Option<i64>> = f.nullable("message_retention_days");
    let mut bad = Vec::new();
    if let Some(Some(n)) = days
        && !(1..=i64::from(policy.max_days)).contains(&n)
    {
        bad.push(FieldError::body(
            "/message_retention_days",
            format!(
                "must be between 1 and {} days (the platform's cap), or null for the platform default of {} days",
                policy.max_days, policy.default_days
            ),
        ));
    }
    f.finish_with(bad)?;
    Ok(days.map(|d| d.and_then(|n| i32::try_from(n).ok())))
}

/// Read a tenant's settings: its message retention, and the platform's bounds (with `ETag`).
#[utoipa::path(
    operation_id = "get_tenant_settings",
    tag = "tenants",
    params(("tenant_id" = Uuid, Path)),
    responses(
        (status = 200, body = TenantSettings, headers(("ETag" = String, description = "Current version, for If-Match"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/settings")]
pub async fn get_tenant_settings(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let (_, (chosen, version)) = caller
        .reach(&state, tenant, Permission::ReadRetention, async |_| store::retention::chosen(&state.db, tenant).await)
        .await?;
    Ok(answer(&state, chosen, version))
}

fn answer(state: &AppState, chosen: Option<i32>, version: i64) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, store::retention::etag(version)))
        .json(TenantSettings::new(state.retention, chosen))
}

/// Change a tenant's settings (JSON merge patch): its administrator at the PCN chooses the
/// message retention within the platform's cap. Lowering it takes effect at the next expiry run
/// (within the hour); audited as `tenant.retention`.
#[utoipa::path(
    operation_id = "update_tenant_settings",
    tag = "tenants",
    params(
        ("tenant_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag from a previous read; the write fails with 412 if the settings changed since"),
    ),
    request_body(content = TenantSettingsPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = TenantSettings, headers(("ETag" = String, description = "New version"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}/settings")]
pub async fn update_tenant_settings(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let (_, (chosen, version)) = caller
        .reach(&state, tenant, Permission::ManageRetention, async |_| store::retention::chosen(&state.db, tenant).await)
        .await?;
    // 412 when the caller's ETag is not the current one; the store checks again under its lock.
    IfMatch::of(&req).against(version, || store::retention::etag(version))?;
    match parse_patch(body, state.retention)? {
        Some(days) if days != chosen => {
            let version = store::retention::choose(&state.db, tenant, days, Some(version), &caller.actor()).await?;
            Ok(answer(&state, days, version))
        }
        _ => Ok(answer(&state, chosen, version)),
    }
}
