//! Liveness, readiness and metrics.
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;

use crate::store;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness, with the health of each detection daemon configured.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`: the database is reachable and migrated. A daemon that is down does not make the
    /// replica unready (intake goes on; messages wait for their scan), it makes it `degraded`.
    #[schema(example = "ready")]
    pub status: ReadinessStatus,
    /// Each daemon configured (`--clamd`, `--rspamd`), asked at this request.
    pub engines: Vec<EngineHealth>,
}

#[derive(Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    Ready,
    /// Ready, but a detection daemon is down: messages stay pending until it is back.
    Degraded,
}

/// Whether a detection daemon answers.
#[derive(Serialize, ToSchema)]
pub struct EngineHealth {
    #[schema(example = "clamav")]
    pub engine: String,
    /// Where it is reached.
    #[schema(example = "tcp://127.0.0.1:3310")]
    pub address: String,
    pub status: EngineUp,
    /// Its version, when up.
    #[schema(example = "ClamAV 1.4.6")]
    pub version: Option<String>,
    /// Why it is down.
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EngineUp {
    Up,
    Down,
}

/// The process is up.
#[utoipa::path(operation_id = "get_health", tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> web::Json<Health> {
    web::Json(Health { status: "ok".into() })
}

/// The database is reachable and every migration is applied; each detection daemon's health.
#[utoipa::path(
    operation_id = "get_readiness",
    tag = "operations",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "Not ready", body = super::error::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<web::Json<Readiness>, ApiError> {
    // A probe gives up after a second or two: answer before it does, whatever the database does.
    match tokio::time::timeout(std::time::Duration::from_millis(900), store::is_ready(&state.db)).await {
        Ok(ready) => ready.map_err(ApiError::Unavailable)?,
        Err(_) => return Err(ApiError::Unavailable("the database did not answer within 0.9 s".into())),
    }
    let engines: Vec<EngineHealth> = state
        .engines
        .daemons
        .health()
        .await
        .into_iter()
        .map(|h| EngineHealth {
            engine: h.engine.to_owned(),
            address: h.address,
            status: if h.up { EngineUp::Up } else { EngineUp::Down },
            version: h.version,
            error: h.error,
        })
        .collect();
    let status = match engines.iter().all(|e| e.status == EngineUp::Up) {
        true => ReadinessStatus::Ready,
        false => ReadinessStatus::Degraded,
    };
    Ok(web::Json(Readiness { status, engines }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    operation_id = "get_metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.as_ref().map(|m| m.render()).unwrap_or_default())
}
