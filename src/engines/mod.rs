//! Clients of the detection daemons a deployment may run beside the control plane: ClamAV's clamd
//! ([`clamd`]) and rspamd ([`rspamd`]). Each looks at a whole raw message and answers with an
//! [`EngineRun`] and its detections, which the scan queue adds to the report of the pure scan.
//! A daemon that cannot be reached, or does not answer in time, is a failed run: the scan queue
//! retries the message, it is never taken for clean.
pub mod clamd;
pub mod rspamd;

use std::time::Duration;

use crate::scan::{Detection, EngineRun, EngineStatus};

/// How long a readiness check waits for each daemon.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// One daemon's look at a message.
pub struct Look {
    pub run: EngineRun,
    pub detections: Vec<Detection>,
}

impl Look {
    /// A look that did not happen, and why.
    pub fn failed(engine: &str, status: EngineStatus, error: String, millis: u64) -> Self {
        let mut run = EngineRun::new(engine, status, String::new(), None, millis);
        run.error = Some(error);
        Look { run, detections: Vec::new() }
    }
}

/// The SMTP transaction that brought a message.
pub struct Delivery<'a> {
    pub client_ip: &'a str,
    pub helo: &'a str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
}

/// The daemons configured (`--clamd`, `--rspamd`).
#[derive(Default)]
pub struct Daemons {
    pub clamd: Option<clamd::Clamd>,
    pub rspamd: Option<rspamd::Rspamd>,
}

/// Whether a daemon answers, as the readiness check reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    pub engine: &'static str,
    /// Where it is reached.
    pub address: String,
    pub up: bool,
    /// Its version when up.
    pub version: Option<String>,
    /// Why it is down.
    pub error: Option<String>,
}

impl Daemons {
    pub fn is_empty(&self) -> bool {
        self.clamd.is_none() && self.rspamd.is_none()
    }

    /// Every configured daemon's look at `raw`, side by side.
    pub async fn look(&self, raw: &[u8], delivery: &Delivery<'_>) -> Vec<Look> {
        let clamd = async {
            match &self.clamd {
                Some(clamd) => Some(clamd.scan(raw).await),
                None => None,
            }
        };
        let rspamd = async {
            match &self.rspamd {
                Some(rspamd) => Some(rspamd.check(raw, delivery).await),
                None => None,
            }
        };
        let (clamd, rspamd) = tokio::join!(clamd, rspamd);
        clamd.into_iter().chain(rspamd).collect()
    }

    /// Asks every configured daemon whether it is up.
    pub async fn health(&self) -> Vec<Health> {
        let health = |engine, address: String, answer: Result<String, String>| {
            let up = answer.is_ok();
            let (version, error) = match answer {
                Ok(version) => (Some(version), None),
                Err(error) => (None, Some(error)),
            };
            Health { engine, address, up, version, error }
        };
        let clamd = async {
            match &self.clamd {
                Some(c) => Some(health(crate::scan::ENGINE_CLAMAV, c.address().to_string(), c.ping().await)),
                None => None,
            }
        };
        let rspamd = async {
            match &self.rspamd {
                Some(r) => Some(health(crate::scan::ENGINE_RSPAMD, r.url().to_string(), r.ping().await)),
                None => None,
            }
        };
        let (clamd, rspamd) = tokio::join!(clamd, rspamd);
        clamd.into_iter().chain(rspamd).collect()
    }
}
