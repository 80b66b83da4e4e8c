//! A sensor's SMTP integration settings: read, replace (PUT) and change (JSON merge patch).
use actix_web::{HttpRequest, HttpResponse, get, http::header, patch, put, web};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject};
use super::caller::{Caller, Permission, Token, node_gone};
use super::error::{ApiError, FieldError};
use super::fleet::{WaitParams, wait_applied};
use super::responses::*;
use crate::auth::Principal;
use crate::policy::SmtpSettings;
use crate::store::{self, StoreError, TenantScope, settings::SettingsRecord};
use crate::wire::{SettingsDocument, SettingsPatch, SizeLimitPatch, SmtpIntegration};

/// The settings of a sensor the caller may reach with `needs`; out of scope reads like missing.
pub(super) async fn settings_in_scope(
    state: &AppState,
    caller: &Caller,
    (tenant, sensor): (Uuid, Uuid),
    needs: Permission,
) -> Result<(TenantScope, SettingsRecord), ApiError> {
    caller.reach(state, tenant, needs, async |scope| store::settings::get(&state.db, scope, sensor).await).await
}

/// [`settings_in_scope`] as the hot read: for a member, the token's node, the scope it gives and
/// the settings come from one statement ([`store::settings::read_as_member`]), with the same
/// answers in the same order — 401 for a node that is gone, 404 outside the scope, then 403.
pub(super) async fn read_settings(
    state: &AppState,
    token: Token,
    (tenant, sensor): (Uuid, Uuid),
    needs: Permission,
) -> Result<SettingsRecord, ApiError> {
    let Principal::Member { tenant: own, node, .. } = token.principal else {
        let caller = token.check(state).await?;
        return Ok(settings_in_scope(state, &caller, (tenant, sensor), needs).await?.1);
    };
    let read = store::settings::read_as_member(&state.db, own, node, sensor).await?;
    let caller = token.known(read.at_pcn.ok_or_else(node_gone)?);
    caller.scope(state, tenant).await?;
    let record = read.settings.ok_or(ApiError::NotFound("sensor"))?;
    caller.require(needs)?;
    Ok(record)
}

/// `If-Match` on a settings write.
pub(super) enum IfMatch {
    /// No header, or `*`: write over whatever is current.
    Any,
    /// Only over one of these revisions.
    Revisions(Vec<i64>),
}

impl IfMatch {
    pub(super) fn of(req: &HttpRequest) -> IfMatch {
        let Some(value) = req.headers().get(header::IF_MATCH) else { return IfMatch::Any };
        let value = value.to_str().unwrap_or("");
        if value.trim() == "*" {
            return IfMatch::Any;
        }
        let revisions = value
            .split(',')
            .filter_map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"').parse::<i64>().ok())
            .collect();
        IfMatch::Revisions(revisions)
    }

    /// The revision the write must be based on (`None`: any); 412 when `current` is not one asked for.
    pub(super) fn expected(&self, current: &SettingsRecord) -> Result<Option<i64>, ApiError> {
        self.against(current.revision, || current.etag())
    }

    /// [`IfMatch::expected`] for any resource at `revision`, whose ETag `etag` renders.
    pub(super) fn against(&self, revision: i64, etag: impl FnOnce() -> String) -> Result<Option<i64>, ApiError> {
        match self {
            IfMatch::Any => Ok(None),
            IfMatch::Revisions(revisions) if revisions.contains(&revision) => Ok(Some(revision)),
            IfMatch::Revisions(_) => Err(StoreError::Stale { current_etag: etag() }.into()),
        }
    }
}

/// Answers a settings write, after waiting for the workers when asked to.
pub(super) async fn answer_write(
    state: &AppState,
    scope: TenantScope,
    record: SettingsRecord,
    wait: Option<std::time::Duration>,
) -> Result<HttpResponse, ApiError> {
    let mut body = record.served(state.max_message_bytes);
    if let Some(timeout) = wait {
        body.rollout = Some(wait_applied(state, scope, record.sensor_id, record.revision, timeout).await?);
    }
    Ok(HttpResponse::Ok().insert_header((header::ETAG, record.etag())).json(body))
}

impl FromFields for SettingsPatch {
    /// Every field that has the right JSON type; the others are reported in `f`.
    fn from_fields(f: &mut Fields) -> Option<Self> {
        Some(SettingsPatch {
            enabled: f.optional("enabled"),
            destination_domains: f.string_list("destination_domains"),
            clients: f.string_list("clients"),
            message_size_limit: f.object("message_size_limit", |g| {
                g.refuse_nulls("cannot be null; to lift the limit, give {\"unlimited\": true}");
                SizeLimitPatch {
                    unlimited: g.optional("unlimited"),
                    value: g.optional("value"),
                    unit: g.optional("unit"),
                }
            }),
        })
    }
}

/// Builds the settings from a body (PUT: `merge` false, every field required; PATCH: fields left
/// out come from `current`), reporting type errors and policy violations together in one 422.
///
/// The platform cap binds a size limit being set, not one kept: a limit stored under a higher cap
/// and written back unchanged (a PATCH of other fields, a PUT of what a GET served) stays, served
/// clamped to the cap, rather than making every other change of the sensor answer 422.
fn parse_settings(body: JsonObject, current: &SmtpSettings, merge: bool, cap: u64) -> Result<SmtpSettings, ApiError> {
    let base = merge.then_some(current);
    let mut f = Fields::new(body).ignoring(SmtpIntegration::READ_ONLY);
    f.refuse_nulls("cannot be null: every setting has a value (leave the field out to keep it)");
    let patch = SettingsPatch::from_fields(&mut f).unwrap_or_default();
    if base.is_none() {
        let given = [
            ("enabled", patch.enabled.is_some()),
            ("destination_domains", patch.destination_domains.is_some()),
            ("clients", patch.clients.is_some()),
            ("message_size_limit", patch.message_size_limit.is_some()),
        ];
        for (name, given) in given {
            if !given && !f.has_error_at(name) {
                let pointer = f.pointer(name);
                f.error(pointer, "this field is required");
            }
        }
    }
    let draft = patch.over(base.map(SmtpSettings::to_draft));
    let kept = draft.message_size_limit == current.message_size_limit.to_draft();
    let checked = SmtpSettings::parse(&draft, if kept { u64::MAX } else { cap });
    let violations: Vec<FieldError> = match &checked {
        Ok(_) => Vec::new(),
        // A field that was already the wrong JSON type would only repeat itself here.
        Err(v) => v.iter().filter(|v| !f.has_error_under(&v.pointer)).cloned().map(FieldError::from).collect(),
    };
    f.finish_with(violations)?;
    checked.map_err(ApiError::validation)
}

/// Read a sensor's SMTP integration settings (with `ETag`).
#[utoipa::path(
    operation_id = "get_smtp_integration",
    tag = "smtp-integration",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "Current revision, for If-Match"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration")]
pub async fn get_settings(
    state: web::Data<AppState>,
    token: Token,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let record = read_settings(&state, token, path.into_inner(), Permission::ReadSettings).await?;
    let body = record.served(state.max_message_bytes);
    Ok(HttpResponse::Ok().insert_header((header::ETAG, record.etag())).json(body))
}

/// Replace a sensor's SMTP integration settings. Every bad entry is reported in one 422. Read-only fields from a `GET` may be sent back; they are ignored.
#[utoipa::path(
    operation_id = "replace_smtp_integration",
    tag = "smtp-integration",
    params(
        ("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag from a previous read; the write fails with 412 if the settings changed since"),
        WaitParams,
    ),
    request_body = SettingsDocument,
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "New revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[put("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration")]
pub async fn put_settings(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    wait: web::Query<WaitParams>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let wait = wait.parse()?;
    let (scope, current) = settings_in_scope(&state, &caller, *path, Permission::WriteSettings).await?;
    let expected = IfMatch::of(&req).expected(&current)?;
    let new = parse_settings(body, &current.settings, false, state.max_message_bytes)?;
    let write =
        store::settings::Write { actor: &caller.actor(), expected, restored_from: None, cap: state.max_message_bytes };
    let record = store::settings::replace(&state.db, scope, current.sensor_id, &new, write).await?;
    answer_write(&state, scope, record, wait).await
}

/// Change some of a sensor's SMTP integration settings (JSON merge patch).
#[utoipa::path(
    operation_id = "update_smtp_integration",
    tag = "smtp-integration",
    params(
        ("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag from a previous read; the write fails with 412 if the settings changed since"),
        WaitParams,
    ),
    request_body(content = SettingsPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "New revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration")]
pub async fn patch_settings(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    wait: web::Query<WaitParams>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let wait = wait.parse()?;
    let if_match = IfMatch::of(&req);
    let actor = caller.actor();
    // Without If-Match the patch applies to whatever is current: on a concurrent write, re-read and re-apply.
    let mut attempts = 0;
    loop {
        let (scope, current) = settings_in_scope(&state, &caller, *path, Permission::WriteSettings).await?;
        let expected = if_match.expected(&current)?;
        let new = parse_settings(JsonObject(body.0.clone()), &current.settings, true, state.max_message_bytes)?;
        let over = expected.or(Some(current.revision));
        let write =
            store::settings::Write { actor: &actor, expected: over, restored_from: None, cap: state.max_message_bytes };
        match store::settings::replace(&state.db, scope, current.sensor_id, &new, write).await {
            Err(StoreError::Stale { .. }) if expected.is_none() && attempts < 3 => attempts += 1,
            result => return answer_write(&state, scope, result?, wait).await,
        }
    }
}
