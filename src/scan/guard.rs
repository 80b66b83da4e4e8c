//! A pre-parse check that keeps `mail-parser` away from inputs it cannot handle in bounded work.
//!
//! `mail-parser` 0.11 parses the decoded content of a base64 or quoted-printable
//! `message/rfc822` part (which RFC 2046 forbids, but it happens) into a new message and then
//! converts that to an owned one. The conversion recurses once per message nested inside the
//! decoded content and copies the whole decoded content once for every such message: a 400 KB
//! input with ten thousand nested messages overflows any thread's stack and would need
//! gigabytes of memory.
//!
//! [`check`] finds that shape without triggering it. It parses a copy of the input in which
//! every `Content-Transfer-Encoding` header name is made unrecognisable, so nothing is decoded
//! and nested messages are only ever built iteratively. It takes every part that may be an
//! encoded message, decodes its body itself, and counts the messages inside, down as many
//! levels as `mail-parser` goes (three). The counts over-approximate: a base64 body parsed as
//! a message may swallow the parts that follow it, so those are searched and counted as well.

use std::ops::Range;

use mail_parser::{Message, MimeHeaders, PartType};

use super::mime;

/// How many levels of encoded messages `mail-parser` decodes and parses (`MAX_NESTED_ENCODED`).
const ENCODED_LEVELS: usize = 3;
/// The most parts that may be encoded messages in one message or decoded content.
pub(crate) const MAX_ENCODED_PARTS: usize = 64;
/// The most messages one encoded message part may hold.
pub(crate) const MAX_MESSAGES_IN_ENCODED: usize = 32;
/// The most bytes `mail-parser` may copy for messages inside encoded message parts.
pub(crate) const MAX_COPIED_BYTES: u64 = 256 << 20;
/// Decoding done here, beyond twice the input size.
const DECODE_ALLOWANCE: u64 = 16 << 20;

const CTE: &[u8] = b"content-transfer-encoding";
const NEUTERED_CTE: &str = "content-transfer-encodinx";

/// The most structure lines (MIME boundaries, `Content-Type` headers) a message may have before it
/// is only scanned as raw bytes. `mail-parser` spends up to a few KiB per part, so a message made of
/// nothing but tiny parts would otherwise cost some thirty times its size in memory.
pub(crate) const MAX_STRUCTURE_LINES: usize = 50_000;

/// `Err` with the reason when parsing `raw` with `mail-parser` would not be bounded work.
pub(crate) fn check(raw: &[u8]) -> Result<(), String> {
    if u32::try_from(raw.len()).is_err() {
        // mail-parser keeps offsets as u32.
        return Err("larger than 4 GiB".to_owned());
    }
    let structure = raw
        .split(|b| *b == b'\n')
        .filter(|line| line.starts_with(b"--") || starts_with_ci(line, b"content-type:"))
        .take(MAX_STRUCTURE_LINES + 1)
        .count();
    if structure > MAX_STRUCTURE_LINES {
        return Err(format!("more than {MAX_STRUCTURE_LINES} MIME boundaries and part headers"));
    }
    let mentions = Mentions::of(raw);
    if !mentions.message_type || !mentions.transfer_encoding {
        return Ok(());
    }
    let mut budget = Budget {
        copied: 0,
        decoded: 0,
        max_decoded: (raw.len() as u64).saturating_mul(2).saturating_add(DECODE_ALLOWANCE),
    };
    inspect(raw, ENCODED_LEVELS, false, &mut budget)
}

struct Budget {
    /// Bytes `mail-parser` would copy for messages nested in encoded content.
    copied: u64,
    /// Bytes decoded here so far.
    decoded: u64,
    max_decoded: u64,
}

/// `data` is a whole message, or the decoded content of an encoded message part (`encoded`)
/// that `mail-parser` parses with `levels` levels of encoded messages still allowed.
fn inspect(data: &[u8], levels: usize, encoded: bool, budget: &mut Budget) -> Result<(), String> {
    if !Mentions::of(data).message_type {
        return Ok(());
    }
    let neutered = neuter(data);
    let Some(message) = mime::parse(&neutered) else { return Ok(()) };
    let survey = survey(message, data);
    if survey.encoded.len() > MAX_ENCODED_PARTS {
        return Err(format!("more than {MAX_ENCODED_PARTS} encoded attached messages"));
    }
    if encoded {
        if survey.messages > MAX_MESSAGES_IN_ENCODED {
            return Err(format!(
                "an encoded attached message holds more than {MAX_MESSAGES_IN_ENCODED} nested messages"
            ));
        }
        let cost = u64::try_from(survey.messages).unwrap_or(u64::MAX).saturating_mul(data.len() as u64);
        budget.copied = budget.copied.saturating_add(cost);
        if budget.copied > MAX_COPIED_BYTES {
            return Err(format!(
                "messages nested in encoded attached messages would take more than {} MiB to parse",
                MAX_COPIED_BYTES >> 20
            ));
        }
    }
    if levels == 0 {
        return Ok(());
    }
    for (range, encoding) in survey.encoded {
        let body = data.get(range).unwrap_or_default();
        budget.decoded = budget.decoded.saturating_add(body.len() as u64);
        if budget.decoded > budget.max_decoded {
            return Err("encoded attached messages overlap too much to be checked".to_owned());
        }
        let decoded = match encoding {
            Encoding::Base64 => decode_base64(body),
            Encoding::QuotedPrintable => decode_quoted_printable(body),
        };
        inspect(&decoded, levels - 1, true, budget)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    QuotedPrintable,
}

/// What a neutered parse shows at one level.
struct Survey {
    /// Attached messages, and parts that may be encoded ones.
    messages: usize,
    /// Body ranges of parts that may be encoded messages, with their encoding.
    encoded: Vec<(Range<usize>, Encoding)>,
}

/// Counts the messages in a neutered parse of `data` and finds the parts that may be encoded
/// messages; then frees the parse (see [`mime::dismantle`]).
fn survey(message: Message<'_>, data: &[u8]) -> Survey {
    let mut survey = Survey { messages: 0, encoded: Vec::new() };
    let mut stack = vec![(message, vec![0u32])];
    while let Some((message, pending)) = stack.last_mut() {
        let Some(id) = pending.pop() else {
            if let Some((done, _)) = stack.pop() {
                mime::dismantle(done);
            }
            continue;
        };
        let Some(part) = message.parts.get_mut(id as usize) else { continue };
        let content_type = part.content_type().map(|ct| ct.c_type.trim().to_ascii_lowercase());
        let encoding = part
            .headers
            .iter()
            .filter(|h| h.name().eq_ignore_ascii_case(NEUTERED_CTE))
            .find_map(|h| h.value().as_text())
            .and_then(|value| match value.trim().to_ascii_lowercase().as_str() {
                "base64" => Some(Encoding::Base64),
                "quoted-printable" => Some(Encoding::QuotedPrintable),
                _ => None,
            });
        let maybe_message = part.is_message() || matches!(content_type.as_deref(), None | Some("message" | ""));
        if let (Some(encoding), true) = (encoding, maybe_message) {
            let range = body_range(data, part.offset_body as usize, part.offset_end as usize, encoding);
            survey.encoded.push((range, encoding));
            if !part.is_message() {
                survey.messages += 1;
            }
        }
        let nested = match &part.body {
            // Children always come after their parent; anything else would be a cycle.
            PartType::Multipart(children) => {
                pending.extend(children.iter().rev().filter(|&&child| child > id));
                None
            }
            PartType::Message(_) => match std::mem::take(&mut part.body) {
                PartType::Message(nested) => Some(nested),
                _ => None,
            },
            _ => None,
        };
        if let Some(nested) = nested {
            survey.messages += 1;
            stack.push((nested, vec![0]));
        }
    }
    survey
}

/// Where `mail-parser` would take an encoded body from.
///
/// Base64 is cut where `mail-parser` stops decoding: at the first `--` (the boundary, or a
/// failure) or the first byte that is neither base64, `=`, `-` nor white space (a failure,
/// after which the part is not parsed as a message at all). That also keeps the ranges of
/// different parts apart. Quoted-printable runs to where the neutered parse ended the part.
fn body_range(data: &[u8], start: usize, end: usize, encoding: Encoding) -> Range<usize> {
    let start = start.min(data.len());
    let end = if end > start && end <= data.len() { end } else { data.len() };
    match encoding {
        Encoding::QuotedPrintable => start..end,
        Encoding::Base64 => {
            let body = &data[start..];
            let stop = body
                .iter()
                .enumerate()
                .position(|(at, &byte)| match byte {
                    b'-' => body.get(at + 1) == Some(&b'-'),
                    b'=' | b' ' | b'\t' | b'\r' | b'\n' => false,
                    _ => !byte.is_ascii_alphanumeric() && byte != b'+' && byte != b'/',
                })
                .unwrap_or(body.len());
            start..start + stop
        }
    }
}

/// Which tokens that matter to [`check`] occur in `data`, ASCII case-insensitively.
#[derive(Debug, Default)]
struct Mentions {
    /// `rfc822`, `global` or `digest`: a `message/*` part is possible.
    message_type: bool,
    /// `content-transfer-encoding`: an encoded part is possible.
    transfer_encoding: bool,
}

impl Mentions {
    fn of(data: &[u8]) -> Self {
        use aho_corasick::AhoCorasick;
        // One pass for all four tokens (SIMD-assisted), rather than a comparison at every byte.
        static TOKENS: std::sync::LazyLock<AhoCorasick> = std::sync::LazyLock::new(|| {
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build([CTE, b"rfc822", b"global", b"digest"])
                .expect("fixed patterns build")
        });
        let mut found = Mentions::default();
        for token in TOKENS.find_overlapping_iter(data) {
            match token.pattern().as_usize() {
                0 => found.transfer_encoding = true,
                _ => found.message_type = true,
            }
            if found.message_type && found.transfer_encoding {
                break;
            }
        }
        found
    }
}

fn starts_with_ci(data: &[u8], prefix: &[u8]) -> bool {
    data.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// A copy of `data` in which every `Content-Transfer-Encoding` reads `...-encodinx`.
fn neuter(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0;
    while let Some(rest) = out.get(at..) {
        match rest.iter().position(|b| b.eq_ignore_ascii_case(&b'c')) {
            Some(offset) if starts_with_ci(&rest[offset..], CTE) => {
                out[at + offset + CTE.len() - 1] = b'x';
                at += offset + CTE.len();
            }
            Some(offset) => at += offset + 1,
            None => break,
        }
    }
    out
}

/// Decodes base64 the way `mail-parser` does, except that it skips what it does not know
/// instead of giving up: it never yields less than `mail-parser` would.
fn decode_base64(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3);
    let mut chunk = 0u32;
    let mut count = 0;
    for &byte in data {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                match count {
                    1 => out.push((chunk << 2) as u8),
                    2 => out.push((chunk >> 4) as u8),
                    3 => out.extend_from_slice(&[(chunk >> 10) as u8, (chunk >> 2) as u8]),
                    _ => {}
                }
                count = 0;
                chunk = 0;
                continue;
            }
            _ => continue,
        };
        chunk = (chunk << 6) | u32::from(value);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&chunk.to_be_bytes()[1..]);
            count = 0;
            chunk = 0;
        }
    }
    out
}

/// Decodes quoted-printable leniently: `=XX` and soft line breaks; anything else is literal.
fn decode_quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    while let Some(&byte) = data.get(at) {
        at += 1;
        if byte != b'=' {
            out.push(byte);
            continue;
        }
        match (data.get(at), data.get(at + 1)) {
            (Some(b'\n'), _) => at += 1,
            (Some(b'\r'), Some(b'\n')) => at += 2,
            (Some(&high), Some(&low)) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                out.push((hex_value(high) << 4) | hex_value(low));
                at += 2;
            }
            _ => out.push(b'='),
        }
    }
    out
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_match_the_common_cases() {
        assert_eq!(decode_base64(b"aGVs\r\nbG8K"), b"hello\n");
        assert_eq!(decode_base64(b"aGk="), b"hi");
        assert_eq!(decode_base64(b"aA=="), b"h");
        assert_eq!(decode_quoted_printable(b"a=3Db=\r\nc=\nd=zz"), b"a=bcd=zz");
    }

    #[test]
    fn neuter_renames_every_transfer_encoding_header() {
        let out = neuter(b"Content-Transfer-Encoding: base64\r\nCONTENT-TRANSFER-ENCODING: 7bit\r\ncontent");
        assert_eq!(out, b"Content-Transfer-Encodinx: base64\r\nCONTENT-TRANSFER-ENCODINx: 7bit\r\ncontent");
    }
}
