//! The audit trail of a tenant.
use actix_web::{get, web};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::AppState;
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::pagination::{Page, PageParams, present, time_param, uuid_param};
use super::responses::*;
use super::views::AuditEventView;
use crate::store::{self, audit::AuditFilter};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events about this sensor.
    #[param(value_type = Option<Uuid>)]
    pub sensor_id: Option<String>,
    /// Only events by this actor (`sub` claim).
    pub actor: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>, example = "2026-11-28T00:00:00Z")]
    pub since: Option<String>,
    /// Only events before this time (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    pub until: Option<String>,
}

impl AuditQuery {
    fn filter(&self, errors: &mut Vec<FieldError>) -> AuditFilter {
        let since = time_param("since", &self.since, errors);
        let until = time_param("until", &self.until, errors);
        let sensor_id = uuid_param("sensor_id", &self.sensor_id, errors);
        AuditFilter { sensor_id, actor: present(&self.actor).map(str::to_owned), since, until }
    }
}

/// List audit events, oldest first: every successful write with actor, action, target, before and after.
#[utoipa::path(
    tag = "audit",
    params(("tenant_id" = Uuid, Path), AuditQuery, PageParams),
    responses(
        (status = 200, body = Page<AuditEventView>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/audit-events")]
pub async fn list_audit_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<AuditQuery>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<AuditEventView>>, ApiError> {
    let scope = caller.scope(&state, path.into_inner()).await?;
    caller.require(Permission::ReadAudit)?;
    let mut errors = Vec::new();
    let filter = query.filter(&mut errors);
    let page = page.parse(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let events = store::audit::list(&state.db, scope, &filter, page).await?;
    Ok(web::Json(Page::from_store(events, AuditEventView::from)))
}
