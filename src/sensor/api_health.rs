//! Whether the worker can reach the API. It decides `/readyz` and whether a new session is
//! greeted: a worker that cannot store mail says so at once (`421 4.3.0`) rather than read a whole
//! message to refuse it, and a health-checked DNS or load balancer takes it out.
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct ApiHealth {
    /// How long the API may fail before the worker calls itself unready.
    grace: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failing_since: Option<Instant>,
    cause: String,
    /// The outage was logged; its end will be too.
    logged: bool,
}

impl ApiHealth {
    pub fn new(grace: Duration) -> Self {
        ApiHealth { grace, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An exchange with the API went through.
    pub fn reached(&self) {
        let mut state = self.state();
        if state.logged {
            tracing::info!("the API is reachable again");
        }
        *state = State::default();
    }

    /// An exchange failed; `cause` says why in plain words.
    pub fn failed(&self, cause: impl Into<String>) {
        let mut state = self.state();
        state.failing_since.get_or_insert_with(Instant::now);
        state.cause = cause.into();
        self.log_once(&mut state);
    }

    /// Why the API counts as unreachable now, if it does (failing for longer than the grace).
    pub fn unreachable(&self) -> Option<String> {
        let mut state = self.state();
        self.log_once(&mut state);
        state.logged.then(|| state.cause.clone())
    }

    fn log_once(&self, state: &mut State) {
        let down_long = state.failing_since.is_some_and(|since| since.elapsed() >= self.grace);
        if down_long && !state.logged {
            tracing::warn!(cause = %state.cause, "the API is unreachable; refusing new sessions until it is back");
            state.logged = true;
        }
    }
}

/// A request error in plain words: the innermost cause and where, e.g. "Connection refused (os
/// error 111) at http://127.0.0.1:8080/v1/…".
pub fn plain(e: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let what = if e.is_timeout() { "timed out".to_owned() } else { innermost.to_string() };
    match e.url() {
        Some(url) => format!("{what} at {}{}", url.origin().ascii_serialization(), url.path()),
        None => what,
    }
}
