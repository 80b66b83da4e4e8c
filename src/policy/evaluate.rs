//! The explainer: every stage of an SMTP session decided by the same code the worker
//! runs, with the entry or rule that decided it and the exact reply.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

use super::replies::{
    reply_client_accepted, reply_client_rejected, reply_disabled, reply_recipient_accepted, reply_recipient_rejected,
    reply_size_accepted, reply_size_rejected,
};
use super::{ClientRule, DomainRule, Reply, SmtpSettings};

/// What to evaluate: a peer, its recipients and optionally a message size.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    pub client_ip: IpAddr,
    pub recipients: &'a [String],
    pub size: Option<u64>,
    /// The network of the worker's interface that took the connection (blank-field rule).
    pub sensor_network: Option<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accept,
    Reject,
}

impl Decision {
    pub fn from_allowed(allowed: bool) -> Self {
        if allowed { Decision::Accept } else { Decision::Reject }
    }

    pub fn is_accept(self) -> bool {
        self == Decision::Accept
    }
}

/// Why the connection was decided as it was. Serialises as one flat string:
/// `"disabled"` or the client rule (`"entry"`, `"sensor_subnet"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRule {
    Disabled,
    Client(ClientRule),
}

impl Serialize for ConnectRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ConnectRule::Disabled => serializer.serialize_str("disabled"),
            ConnectRule::Client(rule) => rule.serialize(serializer),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectOutcome {
    pub decision: Decision,
    pub rule: ConnectRule,
    pub matched_entry: Option<String>,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientOutcome {
    pub recipient: String,
    pub decision: Decision,
    pub rule: DomainRule,
    pub matched_entry: Option<String>,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeOutcome {
    pub size: u64,
    pub max_message_bytes: u64,
    pub decision: Decision,
    pub reply: Reply,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub connect: ConnectOutcome,
    pub recipients: Vec<RecipientOutcome>,
    pub size: Option<SizeOutcome>,
    /// Connect accepted, at least one recipient accepted (or none given), and the size
    /// accepted (if given): the message would be taken.
    pub accepted: bool,
}

/// Evaluates every stage, even after one rejects, so the explainer shows all of them.
pub fn evaluate(settings: &SmtpSettings, probe: &Probe, platform_cap: u64) -> Evaluation {
    let connect = evaluate_connect(settings, probe.client_ip, probe.sensor_network);
    let recipients: Vec<RecipientOutcome> =
        probe.recipients.iter().map(|rcpt| evaluate_recipient(settings, rcpt)).collect();
    let size = probe.size.map(|size| evaluate_size(settings, size, platform_cap));
    let accepted = connect.decision.is_accept()
        && (recipients.is_empty() || recipients.iter().any(|outcome| outcome.decision.is_accept()))
        && size.as_ref().is_none_or(|outcome| outcome.decision.is_accept());
    Evaluation { connect, recipients, size, accepted }
}

/// The connection stage: state first, then the client rules.
pub fn evaluate_connect(settings: &SmtpSettings, client_ip: IpAddr, sensor_network: Option<IpNet>) -> ConnectOutcome {
    if !settings.enabled {
        return ConnectOutcome {
            decision: Decision::Reject,
            rule: ConnectRule::Disabled,
            matched_entry: None,
            reply: reply_disabled(),
        };
    }
    let domains_configured = !settings.destination_domains.is_empty();
    let client = settings.clients.evaluate(client_ip, domains_configured, sensor_network);
    ConnectOutcome {
        decision: Decision::from_allowed(client.allowed),
        rule: ConnectRule::Client(client.rule),
        matched_entry: client.matched_entry,
        reply: if client.allowed { reply_client_accepted() } else { reply_client_rejected(client_ip) },
    }
}

/// The `RCPT TO` stage for one recipient.
pub fn evaluate_recipient(settings: &SmtpSettings, recipient: &str) -> RecipientOutcome {
    let domain = settings.destination_domains.evaluate(recipient);
    RecipientOutcome {
        recipient: recipient.to_owned(),
        decision: Decision::from_allowed(domain.allowed),
        rule: domain.rule,
        matched_entry: domain.matched_entry,
        reply: if domain.allowed { reply_recipient_accepted(recipient) } else { reply_recipient_rejected(recipient) },
    }
}

/// The size stage: `MAIL FROM ... SIZE=` or the byte count read in DATA.
pub fn evaluate_size(settings: &SmtpSettings, size: u64, platform_cap: u64) -> SizeOutcome {
    let max_message_bytes = settings.max_message_bytes(platform_cap);
    let allowed = size <= max_message_bytes;
    SizeOutcome {
        size,
        max_message_bytes,
        decision: Decision::from_allowed(allowed),
        reply: if allowed { reply_size_accepted() } else { reply_size_rejected(max_message_bytes) },
    }
}
