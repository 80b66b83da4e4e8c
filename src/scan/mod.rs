//! MIME parsing and verdicts for received messages: pure logic, no I/O, no database.
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
//!
//! Parsing is `mail-parser`; [`scan()`] never panics and its time is linear in the input size.

mod detect;
mod findings;
mod guard;
mod mime;
mod scanner;

#[cfg(test)]
mod tests;

pub use findings::{
    Detection, HeaderSummary, KIND_EICAR, KIND_EXECUTABLE, KIND_RISKY_EXTENSION, KIND_TOO_COMPLEX,
    MAX_LISTED_DETECTIONS, MAX_LISTED_PARTS, Part, ScanReport, Verdict,
};
pub use scanner::scan;
