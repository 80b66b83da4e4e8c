//! Starting the control plane HTTP server.
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};

use actix_web::{HttpServer, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;

use crate::api::{self, AppState};
use crate::auth::KeySet;

/// The process-wide Prometheus recorder; installed once, shared by every server in the process.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok()).clone()
}

pub struct ServerParts {
    pub db: DatabaseConnection,
    pub keys: Arc<KeySet>,
    pub max_message_bytes: u64,
    pub workers: Option<usize>,
}

/// Starts serving on `listener`; the returned future runs the server until it is stopped.
pub fn start(listener: TcpListener, parts: ServerParts) -> std::io::Result<actix_web::dev::Server> {
    let state = web::Data::new(AppState {
        db: parts.db,
        keys: parts.keys,
        max_message_bytes: parts.max_message_bytes,
        metrics: prometheus(),
    });
    let spec = api::openapi();
    let mut server = HttpServer::new(move || api::app(state.clone(), spec.clone())).listen(listener)?;
    if let Some(n) = parts.workers {
        server = server.workers(n);
    }
    Ok(server.shutdown_timeout(10).run())
}
