use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use mailsensor::auth::{Claims, KeySet};
use mailsensor::cli::SensorArgs;
use mailsensor::cli::{Cli, Command};
use mailsensor::scan_queue::Engines;
use mailsensor::sensor::{self, WorkerConfig, WorkerLimits};
use mailsensor::server::{self, ServerParts};
use mailsensor::{api, dev, store};

fn init_tracing() {
    // actix-http reports a client's malformed request (answered 400) as an ERROR "stream error";
    // it is the client's fault, not the server's, so it stays out of the default log.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILSENSOR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,sea_orm=warn,actix_http::h1::dispatcher=off")
    });
    // Colour only on a terminal (and never with NO_COLOR): log files and collectors get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(colour).init();
}

// A multi-threaded runtime: the work `serve` does besides answering HTTP (scan workers, alert
// delivery, retro-hunts, the revision-log tailer) and a sensor worker's SMTP sessions use every
// core. actix-web's own HTTP workers keep their one-thread runtimes either way.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi(args) => {
            let json = api::openapi_json();
            match args.output {
                Some(path) => std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{json}"),
            }
        }
        Command::Token(args) => {
            let problems = args.claim_problems();
            if !problems.is_empty() {
                anyhow::bail!("{}", problems.join("; "));
            }
            let keys = KeySet::for_minting(&args.auth.config())?;
            let now = chrono::Utc::now().timestamp().max(0) as u64;
            let claims = Claims {
                sub: args.sub,
                role: args.role,
                tenant: args.tenant,
                node: args.node,
                sensor: args.sensor,
                iss: keys.issuer().to_owned(),
                aud: keys.audience().to_owned(),
                exp: now + args.ttl,
                iat: now,
            };
            println!("{}", keys.mint(&claims)?);
        }
        Command::Expire(args) => {
            init_tracing();
            let db = store::connect(&args.database.database_url, 2).await?;
            let policy = mailsensor::dev::retention(&args.retention)?;
            let keys_kept = std::time::Duration::from_secs(args.dedup_window_hours.max(24) * 3600);
            let now = args.as_of.unwrap_or_else(chrono::Utc::now);
            let expired = store::retention::expire(&db, policy, keys_kept, now).await?;
            let mut tenants_erased = 0;
            for tenant in store::erasure::pending(&db).await? {
                store::erasure::erase_tenant(&db, tenant).await?;
                tenants_erased += 1;
            }
            println!(
                "{}",
                serde_json::json!({
                    "as_of": now,
                    "days_dropped": expired.days_dropped,
                    "messages": expired.messages,
                    "retrohunt_matches": expired.retrohunt_matches,
                    "alert_events": expired.alert_events,
                    "alert_attempts": expired.alert_attempts,
                    "keys": expired.keys,
                    "tenants_erased": tenants_erased,
                })
            );
        }
        Command::Migrate(args) => {
            init_tracing();
            let db = store::connect(&args.database.database_url, 2).await?;
            store::migrate(&db).await.context("applying migrations")?;
            tracing::info!("migrations applied");
        }
        Command::Serve(args) => {
            init_tracing();
            let keys = Arc::new(KeySet::from_config(&args.auth.config())?);
            if let Some(owner_url) = &args.migrate_database_url {
                let owner = store::connect(owner_url, 2).await.context("connecting to the database as its owner")?;
                store::migrate(&owner).await.context("applying migrations")?;
                owner.close().await?;
            }
            if !args.no_migrate && args.migrate_database_url.is_none() {
                // A trial with one URL: migrations as this user, without the statement timeout.
                let trial =
                    store::connect(&args.database.database_url, 2).await.context("connecting to the database")?;
                if store::is_ready(&trial).await.is_err() {
                    store::migrate(&trial).await.context(
                        "applying migrations (if this user does not own the tables, give the owner's URL with \
                         --migrate-database-url or run `mailsensor migrate` as the owner)",
                    )?;
                }
                trial.close().await?;
            }
            store::set_retry_budget(std::time::Duration::from_secs(args.database_retry_budget_secs));
            let statement_timeout = (args.database_statement_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(args.database_statement_timeout_secs));
            let db = store::connect_with(
                &args.database.database_url,
                args.database.database_max_connections,
                statement_timeout,
            )
            .await
            .context("connecting to the database")?;
            let listener = TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
            tracing::info!(address = %args.listen, "control plane listening");
            let mut parts = ServerParts::new(db.clone(), keys, args.max_message_bytes);
            parts.workers = args.http_workers;
            parts.scan_workers = args.scan_workers;
            if let Some(dir) = &args.yara_rules {
                parts.engines.yara = Some(Engines::yara_from_dir(dir)?);
            }
            parts.engines.daemons = mailsensor::dev::daemons(&args.daemons)?;
            parts.alerts = mailsensor::dev::alerts(&args.alerts);
            parts.retention = mailsensor::dev::retention(&args.retention)?;
            parts.retrohunts.max_running = args.retrohunts_running.max(1);
            parts.dedup_window =
                (args.dedup_window_hours > 0).then(|| std::time::Duration::from_secs(args.dedup_window_hours * 3600));
            parts.feed.retention = std::time::Duration::from_secs(args.revision_retention_hours * 3600);
            let running = server::start(listener, parts).await?;
            let stopper = running.stopper();
            let serving = tokio::spawn(running.server);
            server::terminated().await;
            tracing::info!("shutting down");
            stopper.stop().await;
            serving.await??;
            // Stop the background work before the runtime goes, so shutdown is quiet and clean.
            running.feed.shutdown();
            db.close().await.ok();
        }
        Command::Dev(args) => {
            init_tracing();
            dev::run(args).await?;
        }
        Command::Sensor(args) => {
            init_tracing();
            let worker = sensor::start(worker_config(args)?).await?;
            server::terminated().await;
            tracing::info!("shutting down");
            worker.shutdown().await;
        }
    }
    Ok(())
}

fn worker_config(args: SensorArgs) -> anyhow::Result<WorkerConfig> {
    let sensor_id = match args.sensor_id {
        Some(id) => id,
        None => WorkerConfig::sensor_of(&args.token)?,
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(sensor::tls::acceptor(cert, key)?),
        _ => None,
    };
    let hostname = args.hostname.unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "mailsensor".into())
    });
    let instance_id =
        args.instance_id.unwrap_or_else(|| format!("{hostname}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    Ok(WorkerConfig {
        api: args.api,
        token: args.token,
        sensor_id,
        listen: args.listen,
        admin_listen: Some(args.admin_listen),
        tls,
        hostname,
        instance_id,
        sensor_network: args.sensor_network,
        limits: WorkerLimits {
            max_sessions: args.max_sessions,
            max_sessions_per_ip: args.max_sessions_per_ip,
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout_secs),
            session_timeout: std::time::Duration::from_secs(args.session_timeout_secs),
            min_data_rate: args.min_data_rate,
            refused_grace: std::time::Duration::from_secs(args.refused_grace_secs),
            shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_secs),
            ..WorkerLimits::default()
        },
    })
}
