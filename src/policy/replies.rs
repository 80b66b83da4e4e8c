//! The SMTP replies of ARCHITECTURE §6 that depend on the settings. The worker sends
//! them and the evaluate endpoint shows them, so both come from here.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

/// Longest recipient echoed in a reply; RFC 5321 limits a path to 256 octets and a reply
/// line to 512, so anything longer is someone else's bug and is shortened.
const MAX_ECHOED_RECIPIENT: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    pub code: u16,
    /// RFC 3463 enhanced status code, e.g. "5.7.1".
    pub enhanced: &'static str,
    pub text: String,
}

impl Reply {
    fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Self { code, enhanced, text: text.into() }
    }

    /// The reply line without CRLF, e.g. `550 5.7.1 <x@y>: recipient domain not accepted by this sensor`.
    pub fn line(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

pub fn reply_disabled() -> Reply {
    Reply::new(421, "4.3.2", "SMTP integration is disabled on this sensor, closing connection")
}

pub fn reply_client_rejected(peer: IpAddr) -> Reply {
    Reply::new(554, "5.7.1", format!("client {} is not allowed to send mail to this sensor", peer.to_canonical()))
}

/// The greeting; the worker replaces the text with its banner.
pub fn reply_client_accepted() -> Reply {
    Reply::new(220, "2.0.0", "ready")
}

pub fn reply_recipient_rejected(rcpt: &str) -> Reply {
    Reply::new(550, "5.7.1", format!("{}: recipient domain not accepted by this sensor", angle_address(rcpt)))
}

pub fn reply_recipient_accepted(rcpt: &str) -> Reply {
    Reply::new(250, "2.1.5", format!("{}: recipient ok", angle_address(rcpt)))
}

pub fn reply_size_rejected(max: u64) -> Reply {
    Reply::new(552, "5.3.4", format!("message size exceeds fixed maximum message size of {max} bytes"))
}

pub fn reply_size_accepted() -> Reply {
    Reply::new(250, "2.1.0", "sender ok, message size within limit")
}

/// `<rcpt>` for a reply line. The address may come from the evaluate endpoint's JSON, so
/// control characters (CR/LF would forge a second reply line) become '?'.
fn angle_address(rcpt: &str) -> String {
    let address = rcpt.trim();
    let address = address.strip_prefix('<').unwrap_or(address);
    let address = address.strip_suffix('>').unwrap_or(address);
    let mut shown: String =
        address.chars().take(MAX_ECHOED_RECIPIENT).map(|c| if c.is_control() { '?' } else { c }).collect();
    if address.chars().nth(MAX_ECHOED_RECIPIENT).is_some() {
        shown.push_str("...");
    }
    format!("<{shown}>")
}
