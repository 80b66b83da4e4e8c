//! Retro-hunts: a ruleset (saved or inline) over the tenant's stored mail in a time range, as a
//! job: start, follow, abort, read what it found. The senior security officer starts and aborts;
//! the others in scope read.
use actix_web::{HttpResponse, get, http::header, post, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::detection_rulesets::{StringMatchView, source_problems};
use super::error::{ApiError, FieldError};
use super::pagination::{Page, PageParams};
use super::responses::*;
use crate::store::{self, entity::retrohunt as hunt, entity::retrohunt_match as found};

/// The most matches a retro-hunt records (`match_cap` at most; default 1,000).
pub const MAX_MATCH_CAP: i64 = 10_000;
const DEFAULT_MATCH_CAP: i64 = 1_000;

/// A retro-hunt to start: exactly one of `ruleset_id` and `source`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRetrohunt {
    /// A saved detection ruleset in your scope; its source as it is now is what runs.
    #[schema(nullable = false)]
    pub ruleset_id: Option<Uuid>,
    /// YARA source to run, checked like a ruleset's (422 with line and column).
    #[schema(nullable = false, max_length = 524288)]
    pub source: Option<String>,
    /// Mail received at or after this time.
    pub since: DateTime<Utc>,
    /// Mail received before this time.
    pub until: DateTime<Utc>,
    /// Only these sensors' mail (default: every sensor in your scope).
    #[schema(nullable = false)]
    pub sensor_ids: Option<Vec<Uuid>>,
    /// Stop after this many matches, 1–10,000 (default 1,000).
    #[schema(nullable = false, minimum = 1, maximum = 10000)]
    pub match_cap: Option<i64>,
}

impl FromFields for CreateRetrohunt {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let ruleset_id = f.optional("ruleset_id");
        let source = f.optional("source");
        let since = f.required("since");
        let until = f.required("until");
        let sensor_ids = f.optional("sensor_ids");
        let match_cap: Option<i64> = f.optional("match_cap");
        if ruleset_id.is_some() == source.is_some() && !f.has_error_at("ruleset_id") && !f.has_error_at("source") {
            f.error("", "give exactly one of ruleset_id and source");
        }
        if match_cap.is_some_and(|c| !(1..=MAX_MATCH_CAP).contains(&c)) {
            f.error("/match_cap", format!("must be from 1 to {MAX_MATCH_CAP}"));
        }
        let (since, until): (DateTime<Utc>, DateTime<Utc>) = (since?, until?);
        if since >= until {
            f.error("/until", "must be after since");
        }
        Some(CreateRetrohunt { ruleset_id, source, since, until, sensor_ids, match_cap })
    }
}

/// How far a retro-hunt has got.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetrohuntProgress {
    /// Messages in its range when it started.
    pub total: i64,
    pub scanned: i64,
    /// Messages whose content has expired or been erased.
    pub skipped: i64,
    pub bytes: i64,
    pub matches: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetrohuntState {
    /// Waiting: another of the tenant's retro-hunts runs, or the platform's cap is reached.
    Queued,
    Running,
    Finished,
    Aborted,
    /// Its rules could not run; `error` says why.
    Failed,
}

/// A retro-hunt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Retrohunt {
    pub id: Uuid,
    pub state: RetrohuntState,
    /// The saved ruleset it runs (none: an inline source).
    pub ruleset_id: Option<Uuid>,
    /// The rules' namespace: the saved ruleset's name, or `inline`.
    pub ruleset_name: String,
    pub source: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The sensors whose mail it reads (empty: every sensor of the tenant).
    pub sensor_ids: Vec<Uuid>,
    pub match_cap: i64,
    /// It stopped because it recorded `match_cap` matches.
    pub cap_reached: bool,
    pub progress: RetrohuntProgress,
    /// Seconds left at the pace so far (running only).
    pub eta_seconds: Option<u64>,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<hunt::Model> for Retrohunt {
    fn from(h: hunt::Model) -> Self {
        let eta_seconds = store::retrohunts::eta_seconds(&h, Utc::now());
        let state = match h.state.as_str() {
            store::retrohunts::QUEUED => RetrohuntState::Queued,
            store::retrohunts::RUNNING => RetrohuntState::Running,
            store::retrohunts::ABORTED => RetrohuntState::Aborted,
            store::retrohunts::FAILED => RetrohuntState::Failed,
            _ => RetrohuntState::Finished,
        };
        Retrohunt {
            id: h.id,
            state,
            ruleset_id: h.ruleset_id,
            ruleset_name: h.ruleset_name,
            source: h.source,
            since: h.since,
            until: h.until,
            sensor_ids: serde_json::from_value(h.sensor_ids).unwrap_or_default(),
            match_cap: h.match_cap,
            cap_reached: h.cap_reached,
            progress: RetrohuntProgress {
                total: h.total,
                scanned: h.scanned,
                skipped: h.skipped,
                bytes: h.bytes,
                matches: h.matches,
            },
            eta_seconds,
            error: h.error,
            created_by: h.created_by,
            created_at: h.created_at,
            started_at: h.started_at,
            finished_at: h.finished_at,
        }
    }
}

/// One rule that matched one object of one stored message.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetrohuntMatch {
    pub id: Uuid,
    pub message_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub sensor_id: Uuid,
    pub namespace: String,
    pub rule: String,
    /// e.g. `attachment "invoice.html"`, `member "a/b.txt" of attachment "x.zip"`.
    pub object: String,
    pub part: Option<i32>,
    pub archive_path: Vec<String>,
    /// Where the rule's strings matched in the object.
    pub strings: Vec<StringMatchView>,
}

impl From<found::Model> for RetrohuntMatch {
    fn from(m: found::Model) -> Self {
        RetrohuntMatch {
            id: m.id,
            message_id: m.message_id,
            received_at: m.received_at,
            sensor_id: m.sensor_id,
            namespace: m.namespace,
            rule: m.rule,
            object: m.object,
            part: m.part,
            archive_path: serde_json::from_value(m.archive_path).unwrap_or_default(),
            strings: serde_json::from_value(m.strings).unwrap_or_default(),
        }
    }
}

/// Start a retro-hunt over the stored mail in scope; it runs in the background (`202`).
#[utoipa::path(
    operation_id = "start_retrohunt",
    tag = "detection",
    params(("tenant_id" = Uuid, Path)),
    request_body = CreateRetrohunt,
    responses(
        (status = 202, description = "Queued", body = Retrohunt, headers(("Location" = String, description = "URL of the retro-hunt"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/retrohunts")]
pub async fn start_retrohunt(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let (scope, _) = caller.reach(&state, tenant, Permission::RunRetrohunts, async |_| Ok(())).await?;
    let CreateRetrohunt { ruleset_id, source, since, until, sensor_ids, match_cap } = body.parse()?;
    let (name, source) = match (ruleset_id, source) {
        (Some(id), _) => match store::rulesets::get(&state.db, scope, id).await {
            Ok(ruleset) => (ruleset.name, ruleset.source),
            Err(store::StoreError::NotFound(_)) => {
                let error = FieldError::body("/ruleset_id", format!("no detection ruleset {id} in your scope"));
                return Err(ApiError::Validation(vec![error]));
            }
            Err(e) => return Err(e.into()),
        },
        (None, Some(source)) => ("inline".to_owned(), source),
        (None, None) => unreachable!("the body names one"),
    };
    if let Err(problems) = source_problems(&name, &source, "/source").await? {
        return Err(ApiError::Validation(problems));
    }
    let new = store::retrohunts::NewHunt {
        ruleset_id,
        ruleset_name: name,
        source,
        since,
        until,
        sensor_ids: sensor_ids.unwrap_or_default(),
        match_cap: match_cap.unwrap_or(DEFAULT_MATCH_CAP),
    };
    let node = caller.principal.node().unwrap_or_default();
    let created = store::retrohunts::create(&state.db, scope, node, new, &caller.actor()).await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/retrohunts/{}", created.id)))
        .json(Retrohunt::from(created)))
}

/// List the retro-hunts in scope, oldest first.
#[utoipa::path(
    operation_id = "list_retrohunts",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = Page<Retrohunt>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/retrohunts")]
pub async fn list_retrohunts(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<Retrohunt>>, ApiError> {
    let (scope, _) = caller.reach(&state, path.into_inner(), Permission::ReadRetrohunts, async |_| Ok(())).await?;
    let mut errors = Vec::new();
    let page = query.parse(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(web::Json(Page::from_store(store::retrohunts::list(&state.db, scope, page).await?, Retrohunt::from)))
}

/// Read a retro-hunt: its state, progress and ETA.
#[utoipa::path(
    operation_id = "get_retrohunt",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), ("retrohunt_id" = Uuid, Path)),
    responses((status = 200, body = Retrohunt), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/retrohunts/{retrohunt_id}")]
pub async fn get_retrohunt(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Retrohunt>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (_, h) = caller
        .reach(&state, tenant, Permission::ReadRetrohunts, async |s| store::retrohunts::get(&state.db, s, id).await)
        .await?;
    Ok(web::Json(h.into()))
}

/// Abort a queued or running retro-hunt; a chunk in progress (at most 100 messages) finishes first.
#[utoipa::path(
    operation_id = "abort_retrohunt",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), ("retrohunt_id" = Uuid, Path)),
    responses(
        (status = 200, body = Retrohunt), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/retrohunts/{retrohunt_id}/abort")]
pub async fn abort_retrohunt(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Retrohunt>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::RunRetrohunts, async |s| store::retrohunts::get(&state.db, s, id).await)
        .await?;
    Ok(web::Json(store::retrohunts::abort(&state.db, scope, id, &caller.actor()).await?.into()))
}

/// What a retro-hunt found, in the order found (also while it runs).
#[utoipa::path(
    operation_id = "list_retrohunt_matches",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), ("retrohunt_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = Page<RetrohuntMatch>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/retrohunts/{retrohunt_id}/matches")]
pub async fn list_retrohunt_matches(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<RetrohuntMatch>>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ReadRetrohunts, async |s| store::retrohunts::get(&state.db, s, id).await)
        .await?;
    let mut errors = Vec::new();
    let page = query.parse(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let found = store::retrohunts::matches(&state.db, scope, id, page).await?;
    Ok(web::Json(Page::from_store(found, RetrohuntMatch::from)))
}
