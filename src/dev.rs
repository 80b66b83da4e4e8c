//! `mailsensor dev`: the whole product on one machine with zero set-up.
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use uuid::Uuid;

use crate::auth::{AuthConfig, Claims, KeySet, Role};
use crate::cli::DevArgs;
use crate::scan_queue::Engines;
use crate::server::{self, ServerParts};
use crate::store::{self, Actor, TenantScope};

const DEMO_TENANT: &str = "Demo";

/// Prints the banner; a closed standard output (`mailsensor dev | head`) must not stop the product.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The demo objects `dev` creates once and finds again on every later run.
pub struct Demo {
    pub tenant: Uuid,
    pub pcn: Uuid,
    pub scn: Uuid,
    pub pcn_sensor: Uuid,
    pub scn_sensor: Uuid,
}

/// The development HS256 secret: generated at first run, kept in the data folder so tokens
/// printed by an earlier run stay valid. Never used outside `dev`.
fn dev_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("hs256.secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_owned();
        if secret.len() >= 32 {
            return Ok(secret);
        }
    }
    let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    std::fs::write(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    owner_only(&path, 0o600)?;
    Ok(secret)
}

/// The data folder holds a signing secret and the database: only its owner may read them.
fn owner_only(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("restricting {} to its owner", path.display()))
}

pub async fn seed(db: &sea_orm::DatabaseConnection, cap: u64) -> anyhow::Result<Demo> {
    let actor = Actor {
        sub: "mailsensor-dev".into(),
        role: Role::PlatformOperator.as_str().into(),
        node: None,
        request_id: "dev-seed".into(),
    };
    let tenant = match store::tenants::find_by_name(db, DEMO_TENANT).await? {
        Some(t) => t,
        None => store::tenants::create(db, DEMO_TENANT, "Demo PCN", &actor).await?.0,
    };
    let scope = TenantScope::whole_tenant(tenant.id);
    let nodes = store::nodes::list(db, scope, store::PageRequest { after: None, limit: 500 }).await?.items;
    let pcn = nodes.iter().find(|n| n.kind == store::nodes::PCN).context("demo tenant has no PCN")?.id;
    let scn = match nodes.iter().find(|n| n.kind == store::nodes::SCN) {
        Some(n) => n.id,
        None => store::nodes::create_scn(db, tenant.id, "Demo SCN", &actor).await?.id,
    };
    let sensors = store::sensors::list(db, scope, None, store::PageRequest { after: None, limit: 500 }).await?.items;
    let sensor_on = async |node: Uuid, name: &str| -> anyhow::Result<Uuid> {
        match sensors.iter().find(|s| s.node_id == node) {
            Some(s) => Ok(s.id),
            None => Ok(store::sensors::create(db, scope, name, node, &actor, cap).await?.id),
        }
    };
    let fresh = !sensors.iter().any(|s| s.node_id == pcn);
    let pcn_sensor = sensor_on(pcn, "demo-pcn-sensor").await?;
    if fresh {
        // The demo worker should accept mail from this machine out of the box: enabled, both lists
        // blank, so the "same subnet as the worker" rule lets loopback clients in.
        let enabled = crate::policy::SmtpSettings { enabled: true, ..Default::default() };
        let write = store::settings::Write { actor: &actor, expected: None, restored_from: None, cap };
        store::settings::replace(db, scope, pcn_sensor, &enabled, write).await?;
    }
    let scn_sensor = sensor_on(scn, "demo-scn-sensor").await?;
    Ok(Demo { tenant: tenant.id, pcn, scn, pcn_sensor, scn_sensor })
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    owner_only(&args.data_dir, 0o700)?;
    let secret = dev_secret(&args.data_dir)?;
    let keys = Arc::new(KeySet::from_config(&AuthConfig {
        issuer: "mailsensor".into(),
        audience: "mailsensor-api".into(),
        hs256_secret: Some(secret),
        ..Default::default()
    })?);
    let db_path = args.data_dir.join("mailsensor.sqlite");
    let url = args.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", db_path.display()));
    let db = store::connect(&url, 4).await?;
    store::migrate(&db).await.context("applying migrations")?;
    if args.database_url.is_none() {
        owner_only(&db_path, 0o600)?;
    }
    let demo = seed(&db, args.max_message_bytes).await?;

    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let token = |sub: &str, role: Role, node: Option<Uuid>| {
        keys.mint(&Claims {
            sub: sub.into(),
            role,
            tenant: (role != Role::PlatformOperator).then_some(demo.tenant),
            node,
            sensor: None,
            iss: keys.issuer().into(),
            aud: keys.audience().into(),
            exp: now + args.token_ttl,
            iat: now,
        })
    };
    let listener = TcpListener::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let base = format!("http://{}", listener.local_addr()?);
    let admin = token("alice", Role::Administrator, Some(demo.pcn))?;
    say!("\nmailsensor dev is running (data in {}).\n", args.data_dir.display());
    say!("Swagger UI:   {base}/docs/");
    say!("OpenAPI:      {base}/openapi.json\n");
    say!("Demo tenant {}: PCN {}, SCN {}", demo.tenant, demo.pcn, demo.scn);
    say!("Sensors: {} (on the PCN), {} (on the SCN)\n", demo.pcn_sensor, demo.scn_sensor);
    say!("Tokens (valid {} h; paste into Swagger UI's Authorize):", args.token_ttl / 3600);
    say!("  export ADMIN_PCN={admin}");
    say!("  export ADMIN_SCN={}", token("bob", Role::Administrator, Some(demo.scn))?);
    say!("  export AUDITOR={}", token("carol", Role::SecurityAuditor, Some(demo.pcn))?);
    say!("  export OFFICER={}", token("dave", Role::SecurityOfficer, Some(demo.pcn))?);
    say!("  export SENIOR_OFFICER={}", token("erin", Role::SeniorSecurityOfficer, Some(demo.pcn))?);
    say!("  export OPERATOR={}\n", token("olga", Role::PlatformOperator, None)?);
    say!("Try:");
    say!(
        "  curl -s -H \"Authorization: Bearer $ADMIN_PCN\" {base}/v1/tenants/{}/sensors/{}/smtp-integration\n",
        demo.tenant,
        demo.pcn_sensor
    );
    let sensor_token = keys.mint(&Claims {
        sub: "demo-worker".into(),
        role: Role::Sensor,
        tenant: Some(demo.tenant),
        node: None,
        sensor: Some(demo.pcn_sensor),
        iss: keys.issuer().into(),
        aud: keys.audience().into(),
        exp: now + 30 * 24 * 3600,
        iat: now,
    })?;
    let mut parts = ServerParts::new(db, keys, args.max_message_bytes);
    parts.workers = Some(2);
    parts.engines.yara = Some(match &args.yara_rules {
        Some(dir) => Engines::yara_from_dir(dir)?,
        None => Engines::demo_yara()?,
    });
    parts.engines.daemons = daemons(&args.daemons)?;
    parts.alerts = alerts(&args.alerts);
    parts.retention = retention(&args.retention)?;
    let running = server::start(listener, parts).await?;
    let stopper = running.stopper();
    let api = tokio::spawn(running.server);
    let worker = crate::sensor::start(crate::sensor::WorkerConfig {
        api: base.clone(),
        token: sensor_token,
        sensor_id: demo.pcn_sensor,
        listen: args.smtp_listen,
        admin_listen: None,
        tls: None,
        hostname: "localhost".into(),
        instance_id: "dev-worker".into(),
        sensor_network: None,
        limits: Default::default(),
    })
    .await?;
    say!("SMTP worker for the demo sensor on the PCN: {} (accepts mail from this machine)", worker.smtp_addr);
    say!("  swaks --server {} --to someone@example.com --from me@example.org", worker.smtp_addr);
    say!("  curl -s -H \"Authorization: Bearer $OFFICER\" {base}/v1/tenants/{}/messages\n", demo.tenant);
    server::terminated().await;
    // Mail first: stop taking SMTP sessions (the open ones finish) while the API can still store
    // what they hand off; then the API.
    worker.shutdown().await;
    stopper.stop().await;
    api.await??;
    running.feed.shutdown();
    Ok(())
}

/// How `serve` and `dev` deliver alerts (`--alert-workers`, `--alerts-allow-private`, …).
/// The platform's retention bounds from `serve`'s (or `dev`'s) flags.
pub fn retention(args: &crate::cli::RetentionArgs) -> anyhow::Result<crate::store::retention::RetentionPolicy> {
    anyhow::ensure!(
        args.retention_default_days <= args.retention_max_days,
        "--retention-default-days ({}) is above --retention-max-days ({})",
        args.retention_default_days,
        args.retention_max_days
    );
    Ok(crate::store::retention::RetentionPolicy {
        default_days: args.retention_default_days,
        max_days: args.retention_max_days,
    })
}

pub fn alerts(args: &crate::cli::AlertArgs) -> crate::delivery::DeliveryOptions {
    crate::delivery::DeliveryOptions {
        workers: args.alert_workers,
        allow_private: args.alerts_allow_private,
        timeout: std::time::Duration::from_secs(args.alert_timeout_secs.max(1)),
        public_url: args.public_url.clone(),
        host: crate::delivery::hostname(),
    }
}

/// The detection daemons of `serve` and `dev` (`--clamd`, `--rspamd`).
pub fn daemons(args: &crate::cli::DaemonArgs) -> anyhow::Result<std::sync::Arc<crate::scan_queue::Daemons>> {
    let timeout = std::time::Duration::from_secs(args.engine_timeout_secs.max(1));
    Engines::daemons(args.clamd.as_deref(), args.rspamd.as_deref(), timeout)
}
