//! MIME parsing, archive expansion, YARA-X rules and verdicts for received messages: pure logic,
//! no I/O, no database.
//!
//! [`scan()`] takes one raw RFC 5322 message and returns a [`ScanReport`]: a header summary,
//! every leaf MIME part (nested multiparts and attached messages included) with its size and
//! hashes, and the [`Detection`]s that decide the [`Verdict`].
//!
//! - `eicar_test_file` (malicious): the EICAR test string in a decoded part, or in the raw
//!   message when no part holds it.
//! - `executable_content` (suspicious): a part that starts like a PE, ELF or Mach-O binary, a
//!   Java class or a `#!` script.
//! - `risky_extension` (suspicious): a part name with an executable or macro-enabled extension.
//! - `mime_structure_too_complex` (suspicious): the message was not fully parsed or listed.
//!   Either parsing it would not be bounded work (encoded attached messages nesting deeply, or
//!   more than 4 GiB), and it was only scanned as raw bytes; or it has more than
//!   [`MAX_LISTED_PARTS`] parts or [`MAX_LISTED_DETECTIONS`] detections, and the rest were
//!   scanned but not listed.
//! - archive members (zip, gzip; archives inside archives) are objects of their own: each gets
//!   the checks above, and a detection names its member path (`archive_path`). What the bounds
//!   of [`ARCHIVE_LIMITS`] stop is a detection, never a silent skip: `archive_bomb` (a bound hit
//!   at a ratio past 100:1), `encrypted_archive`, `too_complex` (all suspicious).
//! - `signature`, `spam`, `phishing`, `too_large_for_engine`: the daemons' findings (ClamAV,
//!   rspamd), added by their clients outside this module with [`ScanReport::add_engine`].
//! - `yara_rule`: with [`scan_with_yara()`], a rule of the compiled [`yara::Rules`] matched the
//!   raw message, a part or an archive member (`rule`, `namespace`, `tags`; verdict from the
//!   rule's `severity` metadata).
//!
//! Parsing is `mail-parser`; [`scan()`] never panics and its time is linear in the input size.

mod archive;
mod detect;
mod findings;
mod guard;
mod mime;
mod scanner;
pub mod yara;

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod yara_tests;

pub use archive::{
    KIND_ARCHIVE_BOMB, KIND_ARCHIVE_TOO_COMPLEX, KIND_ENCRYPTED_ARCHIVE, LIMITS as ARCHIVE_LIMITS,
    Limits as ArchiveLimits,
};
pub use findings::{
    Detection, ENGINE_BUILTIN, ENGINE_CLAMAV, ENGINE_RSPAMD, ENGINE_YARA, ENGINES, EngineRun, EngineStatus,
    HeaderSummary, KIND_EICAR, KIND_EXECUTABLE, KIND_PHISHING, KIND_RISKY_EXTENSION, KIND_SIGNATURE, KIND_SPAM,
    KIND_TOO_COMPLEX, KIND_TOO_LARGE_FOR_ENGINE, KIND_YARA_RULE, MAX_LISTED_DETECTIONS, MAX_LISTED_PARTS,
    MAX_LISTED_SYMBOLS, Part, ScanReport, SpamCheck, SpamSymbol, Verdict,
};
pub use scanner::{Explained, YaraRun, explain, scan, scan_with_yara};

/// The From, To, Subject, Message-ID and Date of a raw message, read from its top-level headers
/// alone (for a message not scanned yet, whose summary is not stored).
pub fn headers_of(raw: &[u8]) -> HeaderSummary {
    mime::parse_headers(raw).map(|message| mime::header_summary(&message)).unwrap_or_default()
}
