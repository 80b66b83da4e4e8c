//! Command line and environment configuration: every flag has a `MAILSENSOR_*` equivalent.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::auth::{AuthConfig, KeySpec, Role};

/// Default platform cap on message size: 100 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Parser)]
#[command(name = "mailsensor", version, about = "Control plane and sensor workers for SMTP mail-security sensors")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane API against PostgreSQL (applies pending migrations first).
    Serve(ServeArgs),
    /// Run everything locally with zero set-up: embedded SQLite, demo tenant, ready-to-paste tokens.
    Dev(DevArgs),
    /// Apply pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Run the expiry once and exit: mail past its tenant's retention, and deleted tenants' mail
    /// (every `serve` replica does this every 15 minutes by itself).
    Expire(ExpireArgs),
    /// Mint a JWT signed with the configured key (HS256 secret or MAILSENSOR_JWT_SIGNING_KEY).
    Token(TokenArgs),
    /// Print the OpenAPI 3.1 document.
    Openapi(OpenapiArgs),
    /// Run a sensor worker: SMTP in, settings from the config stream, messages to the API.
    Sensor(SensorArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL, e.g. postgres://mailsensor@127.0.0.1/mailsensor or sqlite://mailsensor.sqlite.
    #[arg(long, env = "MAILSENSOR_DATABASE_URL")]
    pub database_url: String,
    /// Most database connections this process opens.
    #[arg(long, env = "MAILSENSOR_DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
}

#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Required `iss` claim of every token.
    #[arg(long = "jwt-issuer", env = "MAILSENSOR_JWT_ISSUER", default_value = "mailsensor")]
    pub issuer: String,
    /// Required `aud` claim of every token.
    #[arg(long = "jwt-audience", env = "MAILSENSOR_JWT_AUDIENCE", default_value = "mailsensor-api")]
    pub audience: String,
    /// HS256 shared secret (at least 32 bytes). For development; use public keys in production.
    #[arg(long = "jwt-hs256-secret", env = "MAILSENSOR_JWT_HS256_SECRET", hide_env_values = true)]
    pub hs256_secret: Option<String>,
    /// Verification public key as KID=ALG:PATH (ALG: RS256, ES256, EdDSA; PEM file). Repeat, or
    /// comma-separate in the environment, to rotate: add the new key, re-issue tokens, remove the old.
    #[arg(long = "jwt-public-key", env = "MAILSENSOR_JWT_PUBLIC_KEYS", value_delimiter = ',')]
    pub public_keys: Vec<KeySpec>,
    /// Private signing key for `mailsensor token`, as KID=ALG:PATH.
    #[arg(long = "jwt-signing-key", env = "MAILSENSOR_JWT_SIGNING_KEY")]
    pub signing_key: Option<KeySpec>,
}

impl AuthArgs {
    pub fn config(&self) -> AuthConfig {
        AuthConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            hs256_secret: self.hs256_secret.clone(),
            public_keys: self.public_keys.clone(),
            signing_key: self.signing_key.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the API listens on.
    #[arg(long, env = "MAILSENSOR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Do not apply pending migrations at start (run `mailsensor migrate` separately).
    #[arg(long, env = "MAILSENSOR_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Apply pending migrations as this user (the tables' owner) before serving as the
    /// `--database-url` user (`mailsensor_api`); without it, migrations use `--database-url`.
    #[arg(long, env = "MAILSENSOR_MIGRATE_DATABASE_URL", hide_env_values = true, conflicts_with = "no_migrate")]
    pub migrate_database_url: Option<String>,
    /// Every SQL statement is cut off after this many seconds (0: never), so nothing waits forever
    /// on a database host that stopped answering.
    #[arg(long, env = "MAILSENSOR_DATABASE_STATEMENT_TIMEOUT_SECS", default_value_t = 60)]
    pub database_statement_timeout_secs: u64,
    /// How long a transaction that could not run (no writable primary: a failover, an outage) is
    /// tried again before the API answers 503 (and a worker's hand-off 451), in seconds.
    #[arg(long, env = "MAILSENSOR_DATABASE_RETRY_BUDGET_SECS", default_value_t = 10)]
    pub database_retry_budget_secs: u64,
    /// Platform hard cap on message size in bytes; "unlimited" settings mean this cap.
    #[arg(long, env = "MAILSENSOR_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: u64,
    /// How long, in hours, a stored message is recognised when a sender retries it (same sensor,
    /// sender, recipients and bytes) and answered with the id already stored; 0 turns this off.
    #[arg(long, env = "MAILSENSOR_DEDUP_WINDOW_HOURS", default_value_t = 24)]
    pub dedup_window_hours: u64,
    /// Scan workers in this replica (each parses one message at a time, holding it whole); 0 makes
    /// a replica that only stores, leaving the scan queue to the others.
    #[arg(long, env = "MAILSENSOR_SCAN_WORKERS", default_value_t = 2)]
    pub scan_workers: usize,
    /// HTTP worker threads (default: one per CPU).
    #[arg(long, env = "MAILSENSOR_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// A folder of YARA rules (`.yar`, `.yara`; each file its own namespace) the scan runs over
    /// every object of every tenant's mail: the platform ruleset. Compiled at start; a rule that
    /// does not compile stops the start, naming its file, line and column.
    #[arg(long, env = "MAILSENSOR_YARA_RULES")]
    pub yara_rules: Option<PathBuf>,
    #[command(flatten)]
    pub daemons: DaemonArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// Retro-hunts running at once across every replica (each tenant runs one at a time; the
    /// others wait, queued).
    #[arg(long, env = "MAILSENSOR_RETROHUNTS_RUNNING", default_value_t = 2)]
    pub retrohunts_running: u64,
    /// How long the revision log keeps changes for resuming workers, in hours; a worker whose
    /// resume token is older gets a fresh snapshot.
    #[arg(long, env = "MAILSENSOR_REVISION_RETENTION_HOURS", default_value_t = 7 * 24)]
    pub revision_retention_hours: u64,
}

/// The detection daemons the scan workers use beside the built-in checks and YARA-X.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// ClamAV's clamd, scanned with through `INSTREAM`: `tcp://HOST:PORT` or `unix:PATH`.
    #[arg(long, env = "MAILSENSOR_CLAMD")]
    pub clamd: Option<String>,
    /// An rspamd normal worker, asked through `POST /checkv2`: `http://HOST:PORT`.
    #[arg(long, env = "MAILSENSOR_RSPAMD")]
    pub rspamd: Option<String>,
    /// How long a daemon may take over one message, in seconds, before the look counts as timed
    /// out and the message is retried.
    #[arg(long, env = "MAILSENSOR_ENGINE_TIMEOUT_SECS", default_value_t = 30)]
    pub engine_timeout_secs: u64,
}

/// How long tenants keep their mail (every replica should have the same values).
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Days a tenant's messages (with content, scan results, retro-hunt results and alert events)
    /// are kept when its administrator chose none.
    #[arg(long, env = "MAILSENSOR_RETENTION_DEFAULT_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_default_days: u32,
    /// The most days a tenant may choose; a choice above a cap lowered since is clamped to it.
    #[arg(long, env = "MAILSENSOR_RETENTION_MAX_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention_max_days: u32,
}

/// How this replica delivers alerts (webhooks, syslog, e-mail).
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    /// Alert delivery workers in this replica (each claims its own batches from the outbox); 0
    /// leaves delivery to the other replicas.
    #[arg(long, env = "MAILSENSOR_ALERT_WORKERS", default_value_t = 2)]
    pub alert_workers: usize,
    /// Also send alerts to loopback, private, link-local and CGNAT addresses (an on-premises SIEM
    /// or relay). Off, a destination that resolves there is refused at connect time.
    #[arg(long, env = "MAILSENSOR_ALERTS_ALLOW_PRIVATE")]
    pub alerts_allow_private: bool,
    /// How long a webhook receiver or syslog server may take, in seconds.
    #[arg(long, env = "MAILSENSOR_ALERT_TIMEOUT_SECS", default_value_t = 15)]
    pub alert_timeout_secs: u64,
    /// The API's address as people reach it: alert e-mails link to messages under it.
    #[arg(long, env = "MAILSENSOR_PUBLIC_URL", default_value = "http://localhost:8080")]
    pub public_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Address the API listens on.
    #[arg(long, env = "MAILSENSOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Folder for the SQLite database and the generated development secret; re-running reuses both.
    #[arg(long, env = "MAILSENSOR_DEV_DIR", default_value = ".mailsensor-dev")]
    pub data_dir: PathBuf,
    /// Platform hard cap on message size in bytes.
    #[arg(long, env = "MAILSENSOR_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: u64,
    /// Lifetime of the printed tokens, in seconds.
    #[arg(long, env = "MAILSENSOR_DEV_TOKEN_TTL", default_value_t = 12 * 3600)]
    pub token_ttl: u64,
    /// A folder of YARA rules to scan with instead of the built-in demo ruleset (see `serve`).
    #[arg(long, env = "MAILSENSOR_YARA_RULES")]
    pub yara_rules: Option<PathBuf>,
    #[command(flatten)]
    pub daemons: DaemonArgs,
    #[command(flatten)]
    pub alerts: AlertArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// SMTP address of the in-process sensor worker for the demo sensor on the PCN.
    #[arg(long, env = "MAILSENSOR_SMTP_LISTEN", default_value = "127.0.0.1:2525")]
    pub smtp_listen: SocketAddr,
    /// Use this database instead of the SQLite file in the data folder (e.g. a PostgreSQL URL, to try
    /// the demo on the production backend).
    #[arg(long = "database-url", env = "MAILSENSOR_DEV_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExpireArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// How long, in hours, the message keys must recognise a retry (serve's dedup window; at least
    /// a day is kept).
    #[arg(long, env = "MAILSENSOR_DEDUP_WINDOW_HOURS", default_value_t = 24)]
    pub dedup_window_hours: u64,
    /// Expire as of this time (RFC 3339) instead of now: what a later run would remove, for a
    /// test or a benchmark of simulated days. Never set it later than now on real mail you keep.
    #[arg(long)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Role of the principal.
    #[arg(long, value_enum)]
    pub role: Role,
    /// Subject (who): user name or sensor instance.
    #[arg(long)]
    pub sub: String,
    /// Tenant id (all roles but platform_operator).
    #[arg(long)]
    pub tenant: Option<Uuid>,
    /// Central node (PCN or SCN) the person signs in at.
    #[arg(long)]
    pub node: Option<Uuid>,
    /// Sensor id (role sensor).
    #[arg(long)]
    pub sensor: Option<Uuid>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

impl TokenArgs {
    /// What the role needs or forbids among `--tenant`, `--node` and `--sensor`, one line per
    /// problem naming the flag: a token the API would refuse is never minted.
    pub fn claim_problems(&self) -> Vec<String> {
        let (needs, forbids): (&[&str], &[&str]) = match self.role {
            Role::PlatformOperator => (&[], &["--tenant", "--node", "--sensor"]),
            Role::Sensor => (&["--tenant", "--sensor"], &["--node"]),
            _ => (&["--tenant", "--node"], &["--sensor"]),
        };
        let given = |flag: &str| match flag {
            "--tenant" => self.tenant.is_some(),
            "--node" => self.node.is_some(),
            _ => self.sensor.is_some(),
        };
        let role = self.role.as_str();
        let missing = needs.iter().filter(|f| !given(f)).map(|f| format!("role {role} needs {f}"));
        let extra = forbids.iter().filter(|f| given(f)).map(|f| format!("role {role} takes no {f}"));
        missing.chain(extra).collect()
    }
}

#[derive(Debug, Clone, Args)]
pub struct SensorArgs {
    /// Base URL of the control plane API.
    #[arg(long, env = "MAILSENSOR_API_URL")]
    pub api: String,
    /// A `sensor` token for this sensor (`mailsensor token --role sensor --tenant T --sensor S`).
    #[arg(long, env = "MAILSENSOR_SENSOR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The sensor to serve (default: the token's `sensor` claim).
    #[arg(long, env = "MAILSENSOR_SENSOR_ID")]
    pub sensor_id: Option<Uuid>,
    /// SMTP listen address.
    #[arg(long, env = "MAILSENSOR_SMTP_LISTEN", default_value = "0.0.0.0:25")]
    pub listen: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics`: loopback unless you say otherwise, since
    /// `/metrics` is not for everyone. A health checker on another host (a load balancer, a
    /// kubelet) needs `0.0.0.0:8025`; several workers on one host need one port each.
    #[arg(long, env = "MAILSENSOR_ADMIN_LISTEN", default_value = "127.0.0.1:8025")]
    pub admin_listen: SocketAddr,
    /// PEM certificate chain for STARTTLS (with --tls-key); without both, STARTTLS is not offered.
    #[arg(long, env = "MAILSENSOR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for STARTTLS.
    #[arg(long, env = "MAILSENSOR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name in the greeting and EHLO reply (default: the machine's host name).
    #[arg(long, env = "MAILSENSOR_HOSTNAME")]
    pub hostname: Option<String>,
    /// This worker's id in the fleet view (default: host name plus a random suffix).
    #[arg(long, env = "MAILSENSOR_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Network used by the "same subnet as the sensor" rule instead of the receiving interface's
    /// (e.g. behind NAT), as a CIDR.
    #[arg(long, env = "MAILSENSOR_SENSOR_NETWORK")]
    pub sensor_network: Option<ipnet::IpNet>,
    /// Most SMTP sessions at once.
    #[arg(long, env = "MAILSENSOR_MAX_SESSIONS", default_value_t = 1000)]
    pub max_sessions: usize,
    /// Most SMTP sessions at once from one client address.
    #[arg(long, env = "MAILSENSOR_MAX_SESSIONS_PER_IP", default_value_t = 50)]
    pub max_sessions_per_ip: usize,
    /// Seconds one command line (or one wait for message data) may take, however slowly the client
    /// sends it; then the session is closed.
    #[arg(long, env = "MAILSENSOR_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// Seconds one SMTP session may last in all.
    #[arg(long, env = "MAILSENSOR_SESSION_TIMEOUT_SECS", default_value_t = 3600)]
    pub session_timeout_secs: u64,
    /// Bytes per second a message must arrive at, on average, after its first 30 seconds.
    #[arg(long, env = "MAILSENSOR_MIN_DATA_RATE", default_value_t = 1024)]
    pub min_data_rate: u64,
    /// Seconds a client the settings refuse may stay connected (to read why, and QUIT).
    #[arg(long, env = "MAILSENSOR_REFUSED_GRACE_SECS", default_value_t = 10)]
    pub refused_grace_secs: u64,
    /// Seconds in-flight sessions get to finish after SIGTERM.
    #[arg(long, env = "MAILSENSOR_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct OpenapiArgs {
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}
