//! A sensor's settings history: list and read revisions, restore one.
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::caller::{Caller, Permission};
use super::error::ApiError;
use super::fleet::WaitParams;
use super::pagination::{Page, RevisionPageParams};
use super::responses::*;
use super::settings::{IfMatch, answer_write, settings_in_scope};
use crate::policy::SmtpSettings;
use crate::store;
use crate::wire::{SettingsDocument, SmtpIntegration};

/// One revision of a sensor's settings history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsRevision {
    pub revision: i64,
    #[serde(flatten)]
    pub document: SettingsDocument,
    pub max_message_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The revision this one restored, if it was written by a restore.
    pub restored_from: Option<i64>,
}

impl SettingsRevision {
    fn new(e: store::settings::HistoryEntry, cap: u64) -> Self {
        SettingsRevision {
            revision: e.revision,
            document: SettingsDocument::from(&e.settings),
            max_message_bytes: e.settings.max_message_bytes(cap),
            created_at: e.created_at,
            created_by: e.created_by,
            restored_from: e.restored_from,
        }
    }
}

/// List a sensor's settings revisions, newest first.
#[utoipa::path(
    operation_id = "list_settings_revisions",
    tag = "revisions",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path), RevisionPageParams),
    responses(
        (status = 200, body = Page<SettingsRevision>), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/revisions")]
pub async fn list_revisions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<RevisionPageParams>,
) -> Result<web::Json<Page<SettingsRevision>>, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let (scope, _) = settings_in_scope(&state, &caller, (tenant, sensor), Permission::ReadSettings).await?;
    let (limit, before) = query.parse()?;
    let (entries, next) = store::settings::history(&state.db, scope, sensor, before, limit).await?;
    Ok(web::Json(Page {
        items: entries.into_iter().map(|e| SettingsRevision::new(e, state.max_message_bytes)).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Read one revision of a sensor's settings.
#[utoipa::path(
    operation_id = "get_settings_revision",
    tag = "revisions",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path), ("revision" = i64, Path)),
    responses(
        (status = 200, body = SettingsRevision), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/revisions/{revision}")]
pub async fn get_revision(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid, i64)>,
) -> Result<web::Json<SettingsRevision>, ApiError> {
    let (tenant, sensor, revision) = path.into_inner();
    let (scope, _) = settings_in_scope(&state, &caller, (tenant, sensor), Permission::ReadSettings).await?;
    let entry = store::settings::history_entry_at(&state.db, scope, sensor, revision).await?;
    Ok(web::Json(SettingsRevision::new(entry, state.max_message_bytes)))
}

/// Restore an earlier revision: writes a new revision with that content (audited, streamed to workers).
#[utoipa::path(
    operation_id = "restore_settings_revision",
    tag = "revisions",
    params(
        ("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path), ("revision" = i64, Path),
        ("If-Match" = Option<String>, Header, description = "ETag of the current settings; 412 if they changed since"),
        WaitParams,
    ),
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "New revision"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/revisions/{revision}/restore")]
pub async fn restore_revision(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid, i64)>,
    wait: web::Query<WaitParams>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, sensor, revision) = path.into_inner();
    let (scope, current) = settings_in_scope(&state, &caller, (tenant, sensor), Permission::WriteSettings).await?;
    let wait = wait.parse()?;
    let old = store::settings::history_entry_at(&state.db, scope, sensor, revision).await?;
    // The platform cap may have dropped since: the old content must still be valid today.
    let settings =
        SmtpSettings::parse(&old.settings.to_draft(), state.max_message_bytes).map_err(ApiError::validation)?;
    let expected = IfMatch::of(&req).expected(&current)?;
    let actor = caller.actor();
    let write =
        store::settings::Write { actor: &actor, expected, restored_from: Some(revision), cap: state.max_message_bytes };
    let record = store::settings::replace(&state.db, scope, sensor, &settings, write).await?;
    answer_write(&state, scope, record, wait).await
}
