//! The fleet of a sensor's workers: their acknowledgements and heartbeats, the view administrators
//! read, and waiting for a settings write to reach every live worker.
use std::time::Duration;

use actix_web::{get, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::responses::*;
use crate::store::{self, TenantScope, entity::sensor_worker};
use crate::wire::{RejectedItem, Rollout, WorkerReport};

/// A worker not heard from for this long counts as disconnected.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(30);

fn is_live(w: &sensor_worker::Model) -> bool {
    Utc::now().signed_duration_since(w.last_seen).to_std().map(|age| age <= WORKER_TIMEOUT).unwrap_or(true)
}

/// What a write may wait for.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    /// Every live worker of the sensor has applied the write.
    Applied,
}

/// `?wait=applied&timeout=5`: answer only once every live worker has applied the write, or the timeout passed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// `applied`: answer only once every live worker of the sensor has applied the new revision (or `timeout` passed).
    #[param(value_type = Option<WaitFor>)]
    pub wait: Option<String>,
    /// With `wait`: seconds to wait at most, 1–60 (default 10).
    #[param(value_type = Option<u8>, minimum = 1, maximum = 60)]
    pub timeout: Option<String>,
}

impl WaitParams {
    pub(super) fn parse(&self) -> Result<Option<Duration>, ApiError> {
        let mut errors = Vec::new();
        let wait = match self.wait.as_deref() {
            None => false,
            Some(v) if serde_json::from_value::<WaitFor>(v.into()).is_ok() => true,
            Some(_) => {
                errors.push(FieldError::parameter("wait", "the only value is `applied`"));
                false
            }
        };
        let timeout = match self.timeout.as_deref().map(|t| t.trim_end_matches('s').parse::<u64>()) {
            None => Duration::from_secs(10),
            Some(Ok(n)) if (1..=60).contains(&n) => Duration::from_secs(n),
            Some(_) => {
                errors.push(FieldError::parameter("timeout", "must be 1 to 60 seconds"));
                Duration::ZERO
            }
        };
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(wait.then_some(timeout))
    }
}

/// Polls the fleet until every live worker reports `revision` applied, or `timeout` passes.
pub(super) async fn wait_applied(
    state: &AppState,
    scope: TenantScope,
    sensor: Uuid,
    revision: i64,
    timeout: Duration,
) -> Result<Rollout, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let workers = store::workers::list(&state.db, scope, sensor).await?;
        let live: Vec<_> = workers.iter().filter(|w| is_live(w)).collect();
        let pending: Vec<String> = live
            .iter()
            .filter(|w| w.applied_settings_revision.unwrap_or(0) < revision)
            .map(|w| w.instance_id.clone())
            .collect();
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Rollout {
                settings_revision: revision,
                workers: live.len(),
                applied: live.len() - pending.len(),
                complete: pending.is_empty(),
                pending,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a worker reports: sent after applying a revision, and as a periodic heartbeat.
impl FromFields for WorkerReport {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let applied_token = f.optional("applied_token");
        let applied_settings_revision = f.optional("applied_settings_revision");
        let rejected = f.optional("rejected");
        let version = f.name("version");
        let listen_address = f.optional("listen_address");
        Some(WorkerReport { applied_token, applied_settings_revision, rejected, version: version?, listen_address })
    }
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
    operation_id = "report_worker_state",
    tag = "workers",
    params(
        ("sensor_id" = Uuid, Path),
        ("instance_id" = String, Path, description = "The worker's own id: 1–128 of A-Z a-z 0-9 - _ . :", pattern = "^[A-Za-z0-9._:-]{1,128}$"),
    ),
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
    let tenant = caller.own_sensor(&state, sensor).await?;
    let mut f = Fields::new(body);
    let report = WorkerReport::from_fields(&mut f);
    if !valid_instance_id(&instance_id) {
        f.push(FieldError::parameter("instance_id", "must be 1–128 of A-Z a-z 0-9 - _ . :"));
    }
    let report = f.finish(report)?;
    let scope = store::TenantScope::whole_tenant(tenant);
    let current = store::settings::get(&state.db, scope, sensor).await?;
    let worker = store::workers::report(&state.db, tenant, sensor, &instance_id, report).await?;
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
    operation_id = "list_sensor_workers",
    tag = "fleet",
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
    let (scope, current) = caller
        .reach(&state, tenant, Permission::ReadSettings, async |s| store::settings::get(&state.db, s, sensor).await)
        .await?;
    let workers = store::workers::list(&state.db, scope, sensor).await?;
    Ok(web::Json(Fleet {
        settings_revision: current.revision,
        items: workers.into_iter().map(|w| WorkerView::new(w, current.revision)).collect(),
    }))
}
