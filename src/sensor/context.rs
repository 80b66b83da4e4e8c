//! What every SMTP session of a worker shares, and the limits it runs under.
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio_rustls::TlsAcceptor;

use super::api_health::ApiHealth;
use super::follower::Follower;
use super::handoff::ApiClient;

#[derive(Debug, Clone)]
pub struct WorkerLimits {
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// How long one command line (or one wait for more message data) may take, however the
    /// client trickles it in: a byte now and then does not keep a session alive.
    pub idle_timeout: Duration,
    /// How long one session may last in all.
    pub session_timeout: Duration,
    /// The slowest a message may arrive, on average, once `data_rate_grace` has passed.
    pub min_data_rate: u64,
    pub data_rate_grace: Duration,
    /// How long a client the settings refuse may stay connected (to read why, and QUIT).
    pub refused_grace: Duration,
    /// How long the API may be unreachable before the worker reports itself unready and answers
    /// new sessions `421 4.3.0` at the greeting.
    pub api_grace: Duration,
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
            session_timeout: Duration::from_secs(3600),
            min_data_rate: 1024,
            data_rate_grace: Duration::from_secs(30),
            refused_grace: Duration::from_secs(10),
            api_grace: Duration::from_secs(3),
            max_recipients: crate::policy::MAX_RECIPIENTS,
            handoff_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// What every session of a worker shares.
pub struct Context {
    /// The settings in force, from the config stream.
    pub follower: Arc<Follower>,
    pub api: ApiClient,
    /// Whether the API can be reached, from every exchange with it.
    pub health: Arc<ApiHealth>,
    pub tls: Option<TlsAcceptor>,
    pub hostname: String,
    pub instance_id: String,
    pub sensor_network: Option<IpNet>,
    pub limits: WorkerLimits,
}
