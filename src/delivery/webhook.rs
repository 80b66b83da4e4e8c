//! Webhooks, Standard Webhooks v1: the event as the JSON body, `webhook-id` (the event's id, the
//! same on every attempt), `webhook-timestamp`, and `webhook-signature` with every secret that
//! signs (two during a rotation). Redirects are not followed; proxies are not used; names resolve
//! through the address guard, and an address in the URL itself is checked before anything is sent.
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;

use super::{DeliveryOptions, Failure, Sent};
use crate::alerts::{guard, schedule, signature};
use crate::store::alerts::{Due, Outcome};

/// The most of a receiver's answer kept in the delivery log.
const SNIPPET: usize = 1024;

#[derive(Deserialize)]
struct WebhookConfig {
    url: String,
}

/// Resolves through the address guard: reqwest connects only to what this answers.
struct Guarded {
    allow_private: bool,
}

/// The guard's refusal, found again in reqwest's error chain.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            match super::address::resolve(name.as_str(), 0, allow_private).await {
                Ok(found) => Ok(Box::new(found.into_iter()) as Addrs),
                Err(f) if f.outcome == Outcome::Refused => Err(Box::new(Refused(f.error)) as _),
                Err(f) => Err(f.error.into()),
            }
        })
    }
}

pub(super) struct Webhooks {
    client: reqwest::Client,
    allow_private: bool,
    timeout: std::time::Duration,
}

impl Webhooks {
    pub(super) fn new(options: &DeliveryOptions) -> Self {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(Guarded { allow_private: options.allow_private }))
            .user_agent(concat!("mailsensor-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the webhook client's settings are valid");
        Webhooks { client, allow_private: options.allow_private, timeout: options.timeout }
    }

    pub(super) async fn send(&self, due: &Due) -> Result<Sent, Failure> {
        let config: WebhookConfig = serde_json::from_value(due.destination.config.clone())
            .map_err(|e| Failure::failed(format!("the destination's settings are unreadable: {e}")))?;
        let url = reqwest::Url::parse(&config.url).map_err(|e| Failure::failed(format!("bad URL: {e}")))?;
        // An address written into the URL is not resolved, so it is checked here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && let Some(why) = guard::refused(ip)
        {
            return Err(Failure::refused(guard::refusal(&ip.to_string(), ip, why)));
        }
        let body = serde_json::to_vec(&due.event).unwrap_or_default();
        let id = due.event.id.to_string();
        let now = chrono::Utc::now();
        let timestamp = now.timestamp();
        let mut secrets: Vec<&str> = due.destination.secret.iter().map(String::as_str).collect();
        if let (Some(old), Some(until)) = (&due.destination.previous_secret, due.destination.previous_secret_until)
            && until > now
        {
            secrets.push(old);
        }
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature::header(&secrets, &id, timestamp, &body))
            .body(body);
        let response = request.send().await.map_err(|e| self.failure(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| schedule::parse_retry_after(v, now));
        let snippet = snippet(response).await;
        let code = Some(status.as_u16() as i32);
        if status.is_success() {
            return Ok(Sent { outcome: Outcome::Delivered, status: code, error: None, response: snippet });
        }
        let (outcome, error) = match status.as_u16() {
            410 => (Outcome::Gone, "the receiver answered 410 Gone: the destination is disabled".to_owned()),
            429 | 503 => (Outcome::Failed { retry_after }, format!("the receiver answered {status}")),
            300..=399 => (
                Outcome::Failed { retry_after: None },
                format!("the receiver answered {status}; redirects are not followed"),
            ),
            _ => (Outcome::Failed { retry_after: None }, format!("the receiver answered {status}")),
        };
        Ok(Sent { outcome, status: code, error: Some(error), response: snippet })
    }

    fn failure(&self, e: reqwest::Error) -> Failure {
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<Refused>() {
                return Failure::refused(refused.0.clone());
            }
            source = s.source();
        }
        if e.is_timeout() {
            return Failure::failed(format!("no answer within {} s", self.timeout.as_secs()));
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Failure::failed(text)
    }
}

/// The start of an answer's body, for the delivery log.
async fn snippet(mut response: reqwest::Response) -> Option<String> {
    let mut kept = Vec::new();
    while kept.len() < SNIPPET {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(SNIPPET - kept.len())]),
            _ => break,
        }
    }
    (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
}
