//! rspamd through `POST /checkv2`: the raw message with the SMTP transaction that brought it
//! (`IP`, `Helo`, `From`, one `Rcpt` per recipient), answered with a score, an action and the
//! symbols that fired.
//!
//! The verdict it adds (documented in `docs/operations.md`):
//! - action `reject`, `rewrite subject` or `add header` → a `spam` detection (verdict `spam`);
//!   `soft reject`, `greylist` and `no action` add none;
//! - a symbol of the phishing module (`PHISHING`, `PHISHED_*`) with a positive score → a
//!   `phishing` detection (verdict `suspicious`), whatever the action.
//!
//! Score, action and symbols are recorded with the engine's run either way.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Delivery, Look};
use crate::scan::{
    Detection, ENGINE_RSPAMD, EngineRun, EngineStatus, KIND_PHISHING, KIND_SPAM, MAX_LISTED_SYMBOLS, SpamCheck,
    SpamSymbol, Verdict,
};

/// An rspamd normal worker to ask.
pub struct Rspamd {
    base: reqwest::Url,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct CheckV2 {
    #[serde(default)]
    score: f64,
    #[serde(default)]
    required_score: f64,
    action: String,
    #[serde(default)]
    symbols: HashMap<String, Symbol>,
}

#[derive(Deserialize)]
struct Symbol {
    #[serde(default)]
    score: f64,
}

impl Rspamd {
    /// `url` is the worker's base, e.g. `http://127.0.0.1:11333`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let base = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(format!("{url:?}: expected http://HOST:PORT"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Rspamd { base, client })
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.base
    }

    fn endpoint(&self, path: &str) -> reqwest::Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// rspamd answers `/ping`: its version, or why not.
    pub async fn ping(&self) -> Result<String, String> {
        let answer = self
            .client
            .get(self.endpoint("ping"))
            .timeout(super::PING_TIMEOUT)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("rspamd at {} does not answer: {e}", self.base))?;
        Ok(server_version(&answer))
    }

    /// Checks one raw message.
    pub async fn check(&self, raw: &[u8], delivery: &Delivery<'_>) -> Look {
        let started = Instant::now();
        let mut request = self.client.post(self.endpoint("checkv2")).body(raw.to_vec());
        let envelope = [("IP", delivery.client_ip), ("Helo", delivery.helo), ("From", delivery.mail_from)];
        let recipients = delivery.rcpt_to.iter().map(|r| ("Rcpt", r.as_str()));
        for (name, value) in envelope.into_iter().chain(recipients) {
            // What a client sent in HELO need not be a valid header value; rspamd then goes without it.
            if let Ok(value) = reqwest::header::HeaderValue::from_str(value)
                && !value.is_empty()
            {
                request = request.header(name, value);
            }
        }
        let answered = async {
            let response = request.send().await?.error_for_status()?;
            let version = server_version(&response);
            Ok::<_, reqwest::Error>((version, response.json::<CheckV2>().await?))
        }
        .await;
        let millis = started.elapsed().as_millis() as u64;
        match answered {
            Ok((version, check)) => {
                let detections = detections_of(&check);
                let mut run = EngineRun::new(ENGINE_RSPAMD, EngineStatus::Ok, version, None, millis);
                run.spam = Some(spam_check(check));
                Look { run, detections }
            }
            Err(e) => {
                let status = if e.is_timeout() { EngineStatus::Timeout } else { EngineStatus::Error };
                Look::failed(ENGINE_RSPAMD, status, format!("rspamd at {}: {e}", self.base), millis)
            }
        }
    }
}

/// `rspamd 3.4` from the `Server: rspamd/3.4` header.
fn server_version(response: &reqwest::Response) -> String {
    let server = response.headers().get(reqwest::header::SERVER).and_then(|v| v.to_str().ok());
    server.map(|s| s.replace('/', " ")).unwrap_or_else(|| "rspamd".to_owned())
}

fn detection(kind: &str, rule: &str, description: String, verdict: Verdict) -> Detection {
    let mut detection = Detection::builtin(kind, description, None, Vec::new(), verdict);
    detection.engine = ENGINE_RSPAMD.to_owned();
    detection.rule = Some(rule.to_owned());
    detection
}

fn detections_of(check: &CheckV2) -> Vec<Detection> {
    let mut found = Vec::new();
    if matches!(check.action.as_str(), "reject" | "rewrite subject" | "add header") {
        let description = format!(
            "rspamd scored it {:.2} (reject from {:.2}): action {:?}",
            check.score, check.required_score, check.action
        );
        found.push(detection(KIND_SPAM, &check.action, description, Verdict::Spam));
    }
    let mut phishing: Vec<(&String, f64)> = check
        .symbols
        .iter()
        .filter(|(name, symbol)| (name.starts_with("PHISHING") || name.starts_with("PHISHED_")) && symbol.score > 0.0)
        .map(|(name, symbol)| (name, symbol.score))
        .collect();
    phishing.sort_by(|a, b| a.0.cmp(b.0));
    for (name, score) in phishing {
        let description = format!("rspamd symbol {name} (score {score:.2}): a link that is not where its text says");
        found.push(detection(KIND_PHISHING, name, description, Verdict::Suspicious));
    }
    found
}

fn spam_check(check: CheckV2) -> SpamCheck {
    let mut symbols: Vec<SpamSymbol> =
        check.symbols.into_iter().map(|(name, symbol)| SpamSymbol { name, score: symbol.score }).collect();
    symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()).then_with(|| a.name.cmp(&b.name)));
    symbols.truncate(MAX_LISTED_SYMBOLS);
    SpamCheck { score: check.score, required_score: check.required_score, action: check.action, symbols }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(action: &str, symbols: &[(&str, f64)]) -> CheckV2 {
        CheckV2 {
            score: 11.8,
            required_score: 15.0,
            action: action.to_owned(),
            symbols: symbols.iter().map(|(n, s)| (n.to_string(), Symbol { score: *s })).collect(),
        }
    }

    #[test]
    fn actions_and_phishing_symbols_decide_the_verdict() {
        assert!(detections_of(&check("no action", &[("MISSING_DATE", 1.0)])).is_empty());
        assert!(detections_of(&check("greylist", &[])).is_empty());
        assert!(detections_of(&check("soft reject", &[])).is_empty());
        for action in ["reject", "add header", "rewrite subject"] {
            let found = detections_of(&check(action, &[]));
            assert_eq!((found[0].kind.as_str(), found[0].verdict), (KIND_SPAM, Verdict::Spam), "{action}");
            assert_eq!(found[0].rule.as_deref(), Some(action));
        }
        let found = detections_of(&check("add header", &[("PHISHING", 1.8), ("PHISHED_OPENPHISH", 0.0)]));
        let kinds: Vec<_> = found.iter().map(|d| (d.kind.as_str(), d.rule.as_deref(), d.verdict)).collect();
        assert_eq!(
            kinds,
            [(KIND_SPAM, Some("add header"), Verdict::Spam), (KIND_PHISHING, Some("PHISHING"), Verdict::Suspicious)]
        );
    }

    #[test]
    fn symbols_are_kept_by_weight_and_capped() {
        let many: Vec<(String, f64)> = (0..80).map(|i| (format!("S{i:02}"), i as f64 - 40.0)).collect();
        let refs: Vec<(&str, f64)> = many.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let kept = spam_check(check("no action", &refs));
        assert_eq!(kept.symbols.len(), MAX_LISTED_SYMBOLS);
        assert_eq!(kept.symbols[0].name, "S00");
        assert!(kept.symbols.windows(2).all(|w| w[0].score.abs() >= w[1].score.abs()));
    }

    #[test]
    fn the_url_is_checked() {
        assert!(Rspamd::new("http://127.0.0.1:11333", Duration::from_secs(1)).is_ok());
        for bad in ["127.0.0.1:11333", "ftp://x:1", "http://"] {
            assert!(Rspamd::new(bad, Duration::from_secs(1)).is_err(), "{bad}");
        }
    }
}
