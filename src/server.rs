//! Starting the control plane HTTP server.
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_web::{HttpServer, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;

use crate::api::{self, AppState};
use crate::auth::KeySet;
use crate::stream::{ChangeFeed, FeedOptions};

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
    pub feed: FeedOptions,
    /// How often an idle config stream sends a `bookmark`.
    pub bookmark_interval: Duration,
}

impl ServerParts {
    pub fn new(db: DatabaseConnection, keys: Arc<KeySet>, max_message_bytes: u64) -> Self {
        ServerParts {
            db,
            keys,
            max_message_bytes,
            workers: None,
            feed: FeedOptions::default(),
            bookmark_interval: Duration::from_secs(15),
        }
    }
}

/// A started server: await `server` to run it; `feed` is its revision-log tailer.
pub struct Running {
    pub server: actix_web::dev::Server,
    pub feed: Arc<ChangeFeed>,
}

/// Starts the revision-log tailer and the HTTP server on `listener`.
pub async fn start(listener: TcpListener, parts: ServerParts) -> anyhow::Result<Running> {
    let feed = ChangeFeed::start(parts.db.clone(), parts.feed).await?;
    let state = web::Data::new(AppState {
        db: parts.db,
        keys: parts.keys,
        max_message_bytes: parts.max_message_bytes,
        metrics: prometheus(),
        feed: feed.clone(),
        bookmark_interval: parts.bookmark_interval,
        scans: Arc::new(tokio::sync::Semaphore::new(2)),
    });
    let spec = api::openapi();
    let mut server = HttpServer::new(move || api::app(state.clone(), spec.clone())).listen(listener)?;
    if let Some(n) = parts.workers {
        server = server.workers(n);
    }
    Ok(Running { server: server.shutdown_timeout(10).run(), feed })
}
