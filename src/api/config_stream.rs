//! Worker-facing endpoints: the config change stream (SSE), its long-poll twin, acknowledgements,
//! and the fleet view administrators read.
use std::convert::Infallible;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, http::header, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, JsonObject};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::responses::*;
use crate::store::{self, entity::sensor_worker};
use crate::stream::{self, Event, EventKind, SessionError, Subscription, wire};

/// A worker not heard from for this long counts as disconnected.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(30);

pub fn is_live(w: &sensor_worker::Model) -> bool {
    Utc::now().signed_duration_since(w.last_seen).to_std().map(|age| age <= WORKER_TIMEOUT).unwrap_or(true)
}

fn session_error(e: SessionError) -> ApiError {
    match e {
        SessionError::NotFound => ApiError::NotFound("sensor"),
        SessionError::Lagging(rev) => ApiError::Unavailable(format!(
            "this API replica has not yet seen revision {rev}; retry (another replica may answer)"
        )),
        SessionError::Store(e) => e.into(),
    }
}

struct Streaming {
    sub: Subscription,
    bookmark: tokio::time::Interval,
    _open: OpenStreams,
}

/// Counts open streams in `/metrics` for as long as one lives.
struct OpenStreams;

impl OpenStreams {
    fn new() -> Self {
        metrics::gauge!("mailsensor_config_streams_open").increment(1.0);
        OpenStreams
    }
}

impl Drop for OpenStreams {
    fn drop(&mut self) {
        metrics::gauge!("mailsensor_config_streams_open").decrement(1.0);
    }
}

/// Follow a sensor's settings as Server-Sent Events (sensor token for that sensor only).
///
/// Without a usable `Last-Event-ID`: `reset`, `snapshot` (a `SensorConfig`), `synced` (with the
/// resume token `<epoch>:<rev>` as its id). Then `upsert` (`SensorConfig`) and `delete`
/// (`SensorDeleted`) as changes commit, and `bookmark` every 15 s when idle. Reconnect with the
/// last id seen as `Last-Event-ID` to get exactly the changes missed; a token from another database
/// epoch or older than the retained history gets `reset` + `snapshot` again. A token newer than
/// this replica has seen waits up to 3 s for it, then answers 503 with `Retry-After`. A client that
/// does not keep up is disconnected and resumes from its last id.
#[utoipa::path(
    tag = "config-stream",
    params(
        ("sensor_id" = Uuid, Path),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume token `<epoch>:<rev>` from the last event received"),
    ),
    responses(
        (status = 200, description = "An endless event stream; each event's `data` is one of SensorConfig, SensorDeleted, Reset or `{}`",
            content_type = "text/event-stream", body = wire::StreamEvent),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 503, description = "This replica lags behind the resume token; retry", content_type = "application/problem+json", body = super::error::Problem),
    ),
    security(("bearer" = []))
)]
#[get("/v1/sensors/{sensor_id}/config-stream")]
pub async fn config_stream(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let sensor = path.into_inner();
    let tenant = caller.own_sensor(&state, sensor, false).await?;
    let last = req.headers().get("last-event-id").and_then(|v| v.to_str().ok());
    let sub = stream::open(&state.feed, tenant, sensor, last, state.max_message_bytes).await.map_err(session_error)?;
    let every = state.bookmark_interval;
    let streaming = Streaming {
        sub,
        bookmark: tokio::time::interval_at(tokio::time::Instant::now() + every, every),
        _open: OpenStreams::new(),
    };
    let body = futures_util::stream::unfold(streaming, |mut s| async move {
        let event = tokio::select! {
            // Queued events first: a bookmark must never overtake an event it covers.
            biased;
            next = s.sub.next() => next.ok()?,
            _ = s.bookmark.tick() => Event { kind: EventKind::Bookmark, id: Some(s.sub.position()), data: json!({}) },
        };
        Some((Ok::<_, Infallible>(Bytes::from(event.to_sse())), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PollParams {
    /// `next` from the previous answer (or an SSE event id); absent = start with a snapshot.
    pub after: Option<String>,
    /// Seconds to wait for a change when there is none yet, 0–60 (default 30).
    pub wait: Option<String>,
}

/// Long-poll alternative to the stream, for clients that cannot hold one open: the same events and
/// token semantics, returned as a JSON batch.
#[utoipa::path(
    tag = "config-stream",
    params(("sensor_id" = Uuid, Path), PollParams),
    responses(
        (status = 200, body = wire::ConfigPoll), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
        (status = 503, description = "This replica lags behind the token; retry", content_type = "application/problem+json", body = super::error::Problem),
    ),
    security(("bearer" = []))
)]
#[get("/v1/sensors/{sensor_id}/config")]
pub async fn config_poll(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<PollParams>,
) -> Result<web::Json<wire::ConfigPoll>, ApiError> {
    let sensor = path.into_inner();
    let tenant = caller.own_sensor(&state, sensor, false).await?;
    let wait = match query.wait.as_deref().map(str::parse::<u64>) {
        None => Duration::from_secs(30),
        Some(Ok(n)) if n <= 60 => Duration::from_secs(n),
        Some(_) => return Err(ApiError::validation([FieldError::parameter("wait", "must be 0 to 60 seconds")])),
    };
    let mut sub = stream::open(&state.feed, tenant, sensor, query.after.as_deref(), state.max_message_bytes)
        .await
        .map_err(session_error)?;
    let mut events = Vec::new();
    while let Some(event) = sub.next_ready().await {
        events.push(event.to_wire());
    }
    if events.is_empty()
        && let Ok(Ok(event)) = tokio::time::timeout(wait, sub.next()).await
    {
        events.push(event.to_wire());
        while let Some(event) = sub.next_ready().await {
            events.push(event.to_wire());
        }
    }
    Ok(web::Json(wire::ConfigPoll { events, next: sub.position().to_string() }))
}

/// What a worker reports: sent after applying a revision, and as a periodic heartbeat.
// Schema only: the body is parsed field by field (`api::body`) so every bad field is reported.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct WorkerReport {
    /// Stream position (`<epoch>:<rev>`) applied.
    pub applied_token: Option<String>,
    /// The settings revision (`settings_revision` of the last snapshot/upsert) applied.
    pub applied_settings_revision: Option<i64>,
    /// Items the worker could not apply, with the reason.
    pub rejected: Option<Vec<RejectedItem>>,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Where the worker accepts SMTP.
    #[schema(example = "10.0.3.7:25")]
    pub listen_address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectedItem {
    #[schema(example = "/clients/3")]
    pub item: String,
    #[schema(example = "host bits set")]
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Live and running the current settings revision.
    Synced,
    /// Live but behind the current settings revision.
    Stale,
    /// Live, but reported items it could not apply.
    Error,
    /// Not heard from for 30 s.
    Disconnected,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub instance_id: String,
    pub state: WorkerState,
    pub applied_settings_revision: Option<i64>,
    pub applied_token: Option<String>,
    pub rejected: Vec<RejectedItem>,
    pub version: String,
    pub listen_address: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl WorkerView {
    fn new(w: sensor_worker::Model, current: i64) -> Self {
        let rejected: Vec<RejectedItem> = serde_json::from_value(w.rejected.clone()).unwrap_or_default();
        let state = if !is_live(&w) {
            WorkerState::Disconnected
        } else if !rejected.is_empty() {
            WorkerState::Error
        } else if w.applied_settings_revision.unwrap_or(0) >= current {
            WorkerState::Synced
        } else {
            WorkerState::Stale
        };
        WorkerView {
            instance_id: w.instance_id,
            state,
            applied_settings_revision: w.applied_settings_revision,
            applied_token: w.applied_token,
            rejected,
            version: w.version,
            listen_address: w.listen_address,
            first_seen: w.first_seen,
            last_seen: w.last_seen,
        }
    }
}

fn valid_instance_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Acknowledge applied settings and heartbeat (sensor token for that sensor only).
#[utoipa::path(
    tag = "config-stream",
    params(("sensor_id" = Uuid, Path), ("instance_id" = String, Path, description = "The worker's own id: 1–128 of A-Z a-z 0-9 - _ . :")),
    request_body = WorkerReport,
    responses(
        (status = 200, body = WorkerView), (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[put("/v1/sensors/{sensor_id}/workers/{instance_id}")]
pub async fn report_worker(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, String)>,
    body: JsonObject,
) -> Result<web::Json<WorkerView>, ApiError> {
    let (sensor, instance_id) = path.into_inner();
    let tenant = caller.own_sensor(&state, sensor, true).await?;
    let mut f = Fields::new(body);
    let applied_token: Option<String> = f.optional("applied_token");
    let applied_settings_revision: Option<i64> = f.optional("applied_settings_revision");
    let rejected: Option<Vec<RejectedItem>> = f.optional("rejected");
    let version = f.name("version");
    let listen_address: Option<String> = f.optional("listen_address");
    if !valid_instance_id(&instance_id) {
        f.error("", "instance_id must be 1–128 of A-Z a-z 0-9 - _ . :");
    }
    let version = f.finish(version)?;
    let report = store::workers::Report {
        instance_id,
        applied_token,
        applied_settings_revision,
        rejected: serde_json::to_value(rejected.unwrap_or_default()).unwrap_or_default(),
        version,
        listen_address,
    };
    let scope = store::TenantScope::whole_tenant(tenant);
    let current = store::settings::get(&state.db, scope, sensor).await?;
    let worker = store::workers::report(&state.db, tenant, sensor, report).await?;
    Ok(web::Json(WorkerView::new(worker, current.revision)))
}

/// The fleet of a sensor's workers: who runs which settings revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Fleet {
    /// The sensor's current settings revision.
    pub settings_revision: i64,
    pub items: Vec<WorkerView>,
}

/// List a sensor's workers with their state (`synced`, `stale`, `error`, `disconnected`).
#[utoipa::path(
    tag = "config-stream",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    responses((status = 200, body = Fleet), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/workers")]
pub async fn list_workers(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<Fleet>, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let scope = caller.scope(&state, tenant).await?;
    let current = store::settings::get(&state.db, scope, sensor).await?;
    caller.require(Permission::ReadSettings)?;
    let workers = store::workers::list(&state.db, scope, sensor).await?;
    Ok(web::Json(Fleet {
        settings_revision: current.revision,
        items: workers.into_iter().map(|w| WorkerView::new(w, current.revision)).collect(),
    }))
}
