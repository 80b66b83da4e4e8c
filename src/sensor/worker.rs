//! Starting, running and stopping a worker.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use super::active::{self, Current};
use super::handoff::ApiClient;
use super::limits::SessionLimits;
use crate::stream::client::{FollowOptions, Follower};

#[derive(Debug, Clone)]
pub struct WorkerLimits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    pub idle_timeout: Duration,
    pub max_recipients: usize,
    /// How long to wait for the API to confirm a stored message after the data ends.
    pub handoff_timeout: Duration,
    pub heartbeat: Duration,
    /// On SIGTERM, how long in-flight sessions may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        WorkerLimits {
            max_sessions: 1000,
            max_sessions_per_ip: 50,
            idle_timeout: Duration::from_secs(300),
            max_recipients: 100,
            handoff_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
pub struct WorkerConfig {
    pub api: String,
    pub token: String,
    pub sensor_id: Uuid,
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub tls: Option<TlsAcceptor>,
    pub hostname: String,
    pub instance_id: String,
    /// Overrides the interface network used by the blank-field rule (e.g. behind NAT).
    pub sensor_network: Option<IpNet>,
    pub limits: WorkerLimits,
}

impl WorkerConfig {
    /// The sensor a `sensor` token is for, read from its claims (the API verifies the token).
    pub fn sensor_of(token: &str) -> anyhow::Result<Uuid> {
        let claims: serde_json::Value =
            jsonwebtoken::dangerous::insecure_decode_claims(token).context("the worker token is not a JWT")?;
        claims["sensor"].as_str().and_then(|s| s.parse().ok()).context(
            "the worker token has no `sensor` claim; mint one with `mailsensor token --role sensor --sensor ID`",
        )
    }
}

/// What every session of a worker shares.
pub struct Context {
    pub current: Current,
    pub api: ApiClient,
    pub tls: Option<TlsAcceptor>,
    pub hostname: String,
    pub instance_id: String,
    pub sensor_network: Option<IpNet>,
    pub limits: WorkerLimits,
}

pub struct RunningWorker {
    pub smtp_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    _follower: Arc<Follower>,
}

impl RunningWorker {
    /// The settings revision in force, if any.
    pub fn settings_revision(&self) -> Option<i64> {
        self.ctx.current.load().as_ref().map(|a| a.config.settings_revision)
    }

    /// Stops accepting, lets in-flight sessions finish within the grace period, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        for task in self.background {
            task.abort();
        }
    }
}

pub async fn start(config: WorkerConfig) -> anyhow::Result<RunningWorker> {
    let listener =
        TcpListener::bind(config.listen).await.with_context(|| format!("binding SMTP on {}", config.listen))?;
    let smtp_addr = listener.local_addr()?;
    let current: Current = Arc::new(ArcSwapOption::empty());
    let api = ApiClient::new(&config.api, &config.token, config.sensor_id, &config.instance_id, &smtp_addr.to_string());
    let follower =
        Arc::new(Follower::start(FollowOptions::new(config.api.clone(), config.token.clone(), config.sensor_id)));
    let mut background = vec![tokio::spawn(active::apply_and_acknowledge(
        follower.clone(),
        current.clone(),
        api.clone(),
        config.limits.heartbeat,
    ))];
    let ctx = Arc::new(Context {
        current,
        api,
        tls: config.tls.clone(),
        hostname: config.hostname.clone(),
        instance_id: config.instance_id.clone(),
        sensor_network: config.sensor_network,
        limits: config.limits.clone(),
    });
    let admin_addr = match config.admin_listen {
        Some(addr) => {
            let (server, bound) = admin_server(addr, ctx.clone())?;
            background.push(tokio::spawn(async move {
                let _ = server.await;
            }));
            Some(bound)
        }
        None => None,
    };
    let (stop, stopped) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, ctx.clone(), stopped));
    tracing::info!(smtp = %smtp_addr, sensor = %config.sensor_id, instance = %config.instance_id, "sensor worker listening");
    Ok(RunningWorker { smtp_addr, admin_addr, ctx, stop, accept, background, _follower: follower })
}

async fn accept_loop(listener: TcpListener, ctx: Arc<Context>, mut stopped: watch::Receiver<bool>) {
    let limits = SessionLimits::new(ctx.limits.max_sessions, ctx.limits.max_sessions_per_ip);
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(local) = stream.local_addr() else { continue };
                metrics::gauge!("mailsensor_smtp_sessions_open").set(limits.open() as f64);
                match limits.acquire(peer.ip()) {
                    Some(slot) => {
                        let ctx = ctx.clone();
                        sessions.spawn(async move {
                            let _slot = slot;
                            super::session::serve(Box::new(stream), ctx, peer, local).await;
                        });
                    }
                    None => {
                        tokio::spawn(async move {
                            let _ = stream.write_all(b"421 4.7.0 too many connections, try again later\r\n").await;
                            let _ = stream.shutdown().await;
                        });
                    }
                }
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    tracing::info!(sessions = sessions.len(), "stopped accepting; waiting for sessions to finish");
    let grace = ctx.limits.shutdown_grace;
    if tokio::time::timeout(grace, async { while sessions.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(remaining = sessions.len(), "grace period over; closing the remaining sessions");
        sessions.abort_all();
    }
}

fn admin_server(addr: SocketAddr, ctx: Arc<Context>) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let metrics = crate::server::prometheus();
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding the admin port {addr}"))?;
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        let ctx = ctx.clone();
        let metrics = metrics.clone();
        App::new()
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }))
            .route(
                "/readyz",
                web::get().to(move || {
                    let revision = ctx.current.load().as_ref().map(|a| a.config.settings_revision);
                    async move {
                        match revision {
                            Some(r) => {
                                HttpResponse::Ok().json(serde_json::json!({"status": "ready", "settings_revision": r}))
                            }
                            None => HttpResponse::ServiceUnavailable()
                                .json(serde_json::json!({"status": "waiting for the first settings snapshot"})),
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                web::get().to(move || {
                    let body = metrics.as_ref().map(|m| m.render()).unwrap_or_default();
                    async move { HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body) }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, bound))
}
