//! Starting, running and stopping a worker.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use super::acknowledge::acknowledge;
use super::api_health::ApiHealth;
use super::context::{Context, WorkerLimits};
use super::follower::{FollowOptions, Follower};
use super::handoff::ApiClient;
use super::limits::SessionLimits;

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

pub struct RunningWorker {
    pub smtp_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl RunningWorker {
    /// The settings revision in force, if any.
    pub fn settings_revision(&self) -> Option<i64> {
        self.ctx.follower.in_force().map(|f| f.revision())
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
    let health = Arc::new(ApiHealth::new(config.limits.api_grace));
    let listen = smtp_addr.to_string();
    let api =
        ApiClient::new(&config.api, &config.token, config.sensor_id, &config.instance_id, &listen, health.clone());
    let follow = FollowOptions {
        health: health.clone(),
        ..FollowOptions::new(config.api.clone(), config.token.clone(), config.sensor_id)
    };
    let follower = Arc::new(Follower::start(follow));
    let mut background = vec![tokio::spawn(acknowledge(follower.state(), api.clone(), config.limits.heartbeat))];
    let ctx = Arc::new(Context {
        follower,
        api,
        health,
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
    Ok(RunningWorker { smtp_addr, admin_addr, ctx, stop, accept, background })
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
                super::metrics::sessions_open(limits.open());
                match limits.acquire(peer.ip()) {
                    Some(slot) => {
                        let ctx = ctx.clone();
                        sessions.spawn(async move {
                            let _slot = slot;
                            super::smtp_session::serve(Box::new(stream), ctx, peer, local).await;
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
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding the admin port {addr}"))?;
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        let ctx = ctx.clone();
        App::new()
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }))
            .route(
                "/readyz",
                web::get().to(move || {
                    let revision = ctx.follower.in_force().map(|f| f.revision());
                    let unreachable = ctx.health.unreachable();
                    async move {
                        match (revision, unreachable) {
                            (_, Some(cause)) => HttpResponse::ServiceUnavailable()
                                .json(serde_json::json!({"status": format!("the API is unreachable: {cause}")})),
                            (Some(r), None) => {
                                HttpResponse::Ok().json(serde_json::json!({"status": "ready", "settings_revision": r}))
                            }
                            (None, None) => HttpResponse::ServiceUnavailable()
                                .json(serde_json::json!({"status": "waiting for the first settings snapshot"})),
                        }
                    }
                }),
            )
            .route(
                "/metrics",
                web::get().to(|| async {
                    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(super::metrics::render())
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((server, bound))
}
