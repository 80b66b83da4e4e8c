//! SMTP integration settings: parse, validate, normalise and evaluate (ARCHITECTURE §4).
//!
//! Pure logic with no I/O. The API validates and explains settings with it and the sensor
//! worker enforces them with it, so no other code decides whether a client, a recipient
//! or a message size is allowed.
//!
//! - [`DomainRules`]: destination domains; the most specific entry wins, `!` excludes.
//! - [`ClientRules`]: client addresses and networks; the longest prefix wins, `!` excludes,
//!   and the blank-field rules apply when there is no positive entry.
//! - [`SizeLimit`]: unlimited (up to the platform cap) or a value in binary KB/MB/GB.
//! - [`SmtpSettings`]: all of it, parsed from a [`SettingsDraft`] with every problem
//!   reported as a [`Violation`] carrying a JSON pointer for the 422.
//! - [`evaluate()`]: every stage of a session with its reply (ARCHITECTURE §6).

mod clients;
mod domains;
mod evaluate;
mod replies;
mod settings;
mod size;
mod violation;

#[cfg(test)]
mod tests;

pub use clients::{ClientDecision, ClientRule, ClientRules};
pub use domains::{DomainDecision, DomainRule, DomainRules};
pub use evaluate::{
    ConnectOutcome, ConnectRule, Decision, Evaluation, Probe, RecipientOutcome, SizeOutcome, evaluate,
    evaluate_connect, evaluate_recipient, evaluate_size,
};
pub use replies::{
    Reply, reply_client_accepted, reply_client_rejected, reply_disabled, reply_recipient_accepted,
    reply_recipient_rejected, reply_size_accepted, reply_size_rejected,
};
pub use settings::{SettingsDraft, SmtpSettings};
pub use size::{SizeLimit, SizeLimitDraft, SizeUnit};
pub use violation::Violation;

/// The most entries either list may hold.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// The most recipients of one message (RFC 5321 §4.5.3.1.8 asks for at least 100); a worker
/// answers `452 4.5.3` beyond it, and the explainer refuses more.
pub const MAX_RECIPIENTS: usize = 100;
