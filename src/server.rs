//! Starting the control plane HTTP server.
use std::net::TcpListener;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::{dev::AppConfig, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::DatabaseConnection;

use crate::api::{self, AppState};
use crate::auth::KeySet;
use crate::delivery::{Deliverer, DeliveryOptions};
use crate::scan_queue::{Engines, HuntOptions, ScanQueue};
use crate::store::retention::RetentionPolicy;
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
    /// How long a stored message is recognised when it is handed off again (`None`: never).
    pub dedup_window: Option<Duration>,
    /// Scan workers in this replica; each holds one message whole while parsing it.
    pub scan_workers: usize,
    /// The engines the scan workers run beside the built-in checks.
    pub engines: Engines,
    /// How its scan workers run retro-hunts.
    pub retrohunts: HuntOptions,
    /// How it delivers alerts.
    pub alerts: DeliveryOptions,
    /// How long tenants keep their mail (the operator's default and cap).
    pub retention: RetentionPolicy,
    /// How often this replica runs the expiry (`None`: never; tests run it with their own clock).
    pub expire_every: Option<Duration>,
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
            dedup_window: Some(Duration::from_secs(24 * 3600)),
            scan_workers: 2,
            engines: Engines::default(),
            retrohunts: HuntOptions::default(),
            alerts: DeliveryOptions::default(),
            retention: RetentionPolicy::default(),
            expire_every: Some(crate::store::retention::EXPIRE_EVERY),
        }
    }
}

/// A started server: await (or spawn) `server` to run it; `feed` is its revision-log tailer. It
/// handles no signals itself: whoever runs it calls [`Stopper::stop`] (see [`terminated`]).
pub struct Running {
    pub server: actix_web::dev::Server,
    pub feed: Arc<ChangeFeed>,
    /// Its scan workers.
    pub scanner: Arc<ScanQueue>,
    /// Its alert delivery workers.
    pub deliverer: Arc<Deliverer>,
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Running {
    pub fn stopper(&self) -> Stopper {
        Stopper { handle: self.server.handle(), stopping: self.stopping.clone() }
    }
}

/// Stops a running server gracefully: open config streams end at once, requests in flight finish.
pub struct Stopper {
    handle: actix_web::dev::ServerHandle,
    stopping: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Stopper {
    pub async fn stop(self) {
        self.stopping.send_replace(true);
        self.handle.stop(true).await;
    }
}

/// SIGTERM (orchestrators) or Ctrl-C.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Expires mail every `every` until the server stops (`store::retention`).
async fn expire(
    db: DatabaseConnection,
    policy: RetentionPolicy,
    keys_kept: Duration,
    every: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match crate::store::retention::expire(&db, policy, keys_kept, chrono::Utc::now()).await {
            Ok(expired) if expired == Default::default() => {}
            Ok(expired) => tracing::info!(?expired, "expired mail past its tenant's retention"),
            Err(e) => tracing::warn!(error = %e, "expiring mail failed; trying again next time"),
        }
        // Tenants deleted while their erasure was cut short (a replica stopped midway).
        match crate::store::erasure::pending(&db).await {
            Ok(tenants) => {
                for tenant in tenants {
                    if let Err(e) = crate::store::erasure::erase_tenant(&db, tenant).await {
                        tracing::warn!(%tenant, error = %e, "erasing a deleted tenant failed; trying again next time");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing deleted tenants failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Starts the revision-log tailer and the HTTP server on `listener`.
pub async fn start(listener: TcpListener, parts: ServerParts) -> anyhow::Result<Running> {
    let feed = ChangeFeed::start(parts.db.clone(), parts.feed).await?;
    let stopping = Arc::new(tokio::sync::watch::channel(false).0);
    let scanner = ScanQueue::start(
        parts.db.clone(),
        parts.scan_workers,
        parts.engines.clone(),
        parts.retrohunts,
        stopping.subscribe(),
    );
    let alerts_allow_private = parts.alerts.allow_private;
    let deliverer = Deliverer::start(parts.db.clone(), parts.alerts, stopping.subscribe());
    if let Some(every) = parts.expire_every {
        // The message keys must recognise a retry for the whole dedup window, and an idempotent
        // re-send for a day at least.
        let keys_kept = parts.dedup_window.unwrap_or_default().max(Duration::from_secs(24 * 3600));
        tokio::spawn(expire(parts.db.clone(), parts.retention, keys_kept, every, stopping.subscribe()));
    }
    let state = web::Data::new(AppState {
        db: parts.db,
        keys: parts.keys,
        max_message_bytes: parts.max_message_bytes,
        metrics: prometheus(),
        feed: feed.clone(),
        bookmark_interval: parts.bookmark_interval,
        dedup_window: parts.dedup_window,
        intake: scanner.intake.clone(),
        engines: parts.engines,
        stopping: stopping.clone(),
        alerts_allow_private,
        retention: parts.retention,
    });
    let spec = api::openapi();
    let address = listener.local_addr()?;
    let mut builder = actix_server::Server::build();
    if let Some(n) = parts.workers {
        builder = builder.workers(n);
    }
    // What actix-web's `HttpServer` assembles, with one addition: each connection is wrapped so the
    // errors the HTTP/1 codec answers by itself are problem documents too (`api::ProblemIo`).
    let graceful = builder.graceful_shutdown_signal();
    let server = builder
        .listen("mailsensor-api", listener, move || {
            let app =
                api::app(state.clone(), spec.clone()).into_factory().map_err(|e: actix_web::Error| e.error_response());
            let graceful = graceful.clone();
            let http = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                // actix-web's defaults: a request head within 5 s; after an early answer (a 413
                // before the body was read) keep reading for 1 s, so the client hears the answer
                // instead of a reset.
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(address)
                // Host and address for URL generation come from each request; nothing here builds URLs.
                .h1(map_config(app, |_| AppConfig::default()));
            fn_service(|io: actix_web::rt::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((api::ProblemIo::new(io), peer))
            })
            .and_then(http)
        })?
        .shutdown_timeout(10)
        .disable_signals()
        .run();
    Ok(Running { server, feed, scanner, deliverer, stopping })
}
