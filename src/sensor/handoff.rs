//! Talking to the API: acknowledgements and heartbeats, and streaming accepted messages to it.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::api_health::{ApiHealth, plain};
use super::follower::AppliedState;
use crate::wire::{HANDOFF_CONTENT_TYPE, HandoffEnvelope, WorkerReport};

/// At most this many chunks wait for the API per session, which bounds a session's memory.
const IN_FLIGHT_CHUNKS: usize = 8;

/// How long a connection to the API may sit idle in the pool before it is dropped instead of
/// reused: well under the API's keep-alive (actix-web's 5 s). The pool hands out the connection
/// that went idle last, so under a steady load the ones at the bottom stay idle; one taken up just
/// as the API closed it failed its hand-off ("connection closed before message completed"), and
/// the sender heard a 451 (once in 15,000 messages at ~1,000/s, `bench/scan.sh` run A).
const API_IDLE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    api: String,
    token: String,
    sensor: Uuid,
    instance: String,
    listen: String,
    health: Arc<ApiHealth>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("the API could not be reached: {0}")]
    Unreachable(String),
    #[error("the API answered {0}")]
    Refused(u16),
    #[error("the API did not answer in time")]
    TimedOut,
}

impl HandoffError {
    /// The API refused this message itself (413 too large, 422 invalid): sending it again cannot
    /// help, so the sender must hear a 5xx, not a 4xx it would retry forever. Anything else (the
    /// worker's own token refused, the API away) may pass, and is a 451.
    pub fn is_permanent(&self) -> bool {
        matches!(self, HandoffError::Refused(413 | 422))
    }
}

impl ApiClient {
    pub fn new(api: &str, token: &str, sensor: Uuid, instance: &str, listen: &str, health: Arc<ApiHealth>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(API_IDLE)
            .build()
            .unwrap_or_default();
        ApiClient {
            http,
            api: api.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            sensor,
            instance: instance.to_owned(),
            listen: listen.to_owned(),
            health,
        }
    }

    /// Acknowledges what is applied; also the heartbeat. Failures are logged and retried next time.
    pub async fn report(&self, state: &AppliedState) {
        let body = WorkerReport {
            applied_token: state.token.clone(),
            applied_settings_revision: state.settings_revision,
            rejected: Some(state.rejected.clone()),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            listen_address: Some(self.listen.clone()),
        };
        let url = format!("{}/v1/sensors/{}/workers/{}", self.api, self.sensor, self.instance);
        let sent =
            self.http.put(url).bearer_auth(&self.token).json(&body).timeout(Duration::from_secs(10)).send().await;
        match sent {
            Ok(r) if r.status().is_success() => self.health.reached(),
            Ok(r) if r.status().is_server_error() => self.health.failed(format!("the API answered {}", r.status())),
            Ok(r) => {
                self.health.reached();
                tracing::warn!(status = %r.status(), "acknowledgement refused");
            }
            Err(e) => self.health.failed(plain(&e)),
        }
    }

    /// Starts streaming one message: `envelope` first, then the chunks passed to [`Handoff::send`].
    pub fn start_handoff(&self, envelope: &HandoffEnvelope, answer_timeout: Duration) -> Handoff {
        let (tx, rx) = mpsc::channel::<Piece>(IN_FLIGHT_CHUNKS);
        let mut head = serde_json::to_vec(envelope).unwrap_or_default();
        head.push(b'\n');
        let first = Some(Bytes::from(head));
        // The body ends cleanly only on `Done`; if the session drops the sender instead, the body
        // fails, so the API never mistakes a broken message for a complete one.
        let body = futures_util::stream::unfold((first, Some(rx)), |(first, rx)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, std::io::Error>(first), (None, rx)));
            }
            let mut rx = rx?;
            match rx.recv().await {
                Some(Piece::Data(bytes)) => Some((Ok(bytes), (None, Some(rx)))),
                Some(Piece::Done) => None,
                None => Some((Err(std::io::Error::other("message aborted")), (None, None))),
            }
        });
        let request = self
            .http
            .post(format!("{}/v1/sensors/{}/messages", self.api, self.sensor))
            .bearer_auth(&self.token)
            .header("content-type", HANDOFF_CONTENT_TYPE)
            .header("idempotency-key", Uuid::now_v7().to_string())
            .body(reqwest::Body::wrap_stream(body));
        let health = self.health.clone();
        let task = tokio::spawn(async move {
            let response = request.send().await.map_err(|e| {
                let cause = plain(&e);
                health.failed(cause.clone());
                HandoffError::Unreachable(cause)
            })?;
            let status = response.status();
            if status.is_server_error() {
                health.failed(format!("the API answered {status}"));
            } else {
                health.reached();
            }
            if !(status.as_u16() == 200 || status.as_u16() == 201) {
                return Err(HandoffError::Refused(status.as_u16()));
            }
            let body: Value = response.json().await.map_err(|e| HandoffError::Unreachable(plain(&e)))?;
            Ok(body["id"].as_str().unwrap_or_default().to_owned())
        });
        Handoff { tx: Some(tx), task, answer_timeout }
    }
}

enum Piece {
    Data(Bytes),
    Done,
}

/// One message on its way to the API.
pub struct Handoff {
    tx: Option<mpsc::Sender<Piece>>,
    task: JoinHandle<Result<String, HandoffError>>,
    answer_timeout: Duration,
}

impl Handoff {
    /// Passes a chunk on; waits while the API is slower than the client. `false` once the upload
    /// has failed (the rest of the message is then only read and dropped).
    pub async fn send(&mut self, bytes: Bytes) -> bool {
        let Some(tx) = &self.tx else { return false };
        // An API that takes the connection but stops reading must not hold the session forever.
        match tokio::time::timeout(self.answer_timeout, tx.send(Piece::Data(bytes))).await {
            Ok(Ok(())) => true,
            // The request ended before its body did: the API answered early (a 413 over the
            // platform cap) or the connection broke. The task holds which, for `finish`.
            Ok(Err(_)) => {
                self.tx = None;
                false
            }
            Err(_) => {
                self.tx = None;
                self.task.abort();
                false
            }
        }
    }

    /// Ends the message and waits for the API: `Ok(id)` means stored.
    pub async fn finish(mut self) -> Result<String, HandoffError> {
        let done = async {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(Piece::Done).await;
            }
            (&mut self.task).await
        };
        match tokio::time::timeout(self.answer_timeout, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(HandoffError::Unreachable(e.to_string())),
            Err(_) => {
                self.task.abort();
                Err(HandoffError::TimedOut)
            }
        }
    }

    /// Gives the message up: the API sees the body fail and keeps nothing.
    pub fn abort(mut self) {
        self.tx.take();
        // Let the request observe the failed body, then make sure it ends.
        let task = std::mem::replace(&mut self.task, tokio::spawn(async { Err(HandoffError::TimedOut) }));
        tokio::spawn(async move {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::HandoffError;

    #[test]
    fn only_the_messages_own_faults_are_permanent() {
        assert!(HandoffError::Refused(422).is_permanent());
        assert!(HandoffError::Refused(413).is_permanent());
        for transient in [400, 401, 403, 404, 408, 409, 429, 500, 503] {
            assert!(!HandoffError::Refused(transient).is_permanent(), "{transient}");
        }
        assert!(!HandoffError::TimedOut.is_permanent());
        assert!(!HandoffError::Unreachable("refused".into()).is_permanent());
    }
}
