//! Walking a parsed message: header summary and leaf parts, without recursion.
//!
//! `mail-parser` nests attached messages as `PartType::Message` values inside parts, and both
//! dropping and walking such a tree recursively overflows the stack once the nesting runs into
//! the thousands (a few hundred kilobytes of input). Everything here therefore works with an
//! explicit stack, and [`dismantle`] frees a message level by level.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Encoding, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::findings::HeaderSummary;

/// Parses `raw`, turning a panic inside the parser (its debug assertions) into `None`.
pub(crate) fn parse(raw: &[u8]) -> Option<Message<'_>> {
    catch_unwind(AssertUnwindSafe(|| MessageParser::default().parse(raw))).ok().flatten()
}

/// Parses the top-level headers of `raw` only; never looks at the body.
pub(crate) fn parse_headers(raw: &[u8]) -> Option<Message<'_>> {
    catch_unwind(AssertUnwindSafe(|| MessageParser::default().parse_headers(raw))).ok().flatten()
}

/// Frees `message` one nesting level at a time instead of recursively.
pub(crate) fn dismantle(message: Message<'_>) {
    let mut pending = vec![message];
    while let Some(mut message) = pending.pop() {
        for part in &mut message.parts {
            if part.is_message()
                && let PartType::Message(nested) = std::mem::take(&mut part.body)
            {
                pending.push(nested);
            }
        }
    }
}

/// Replaces NUL, which PostgreSQL accepts neither in text nor in JSON, with U+FFFD.
pub(crate) fn clean(text: &str) -> String {
    if text.contains('\0') { text.replace('\0', "\u{fffd}") } else { text.to_owned() }
}

/// From, To, Subject, Message-ID and Date of the top-level message.
pub(crate) fn header_summary(message: &Message<'_>) -> HeaderSummary {
    let join = |addrs: Vec<String>| if addrs.is_empty() { None } else { Some(clean(&addrs.join(", "))) };
    let from = join(message.from().map(|a| a.iter().filter_map(display_addr).collect()).unwrap_or_default());
    let to = join(message.all_to().flat_map(|a| a.iter()).filter_map(display_addr).collect());
    let date = match message.date() {
        Some(date) if date.is_valid() => Some(date.to_rfc3339()),
        _ => raw_header(message, &HeaderName::Date),
    };
    HeaderSummary {
        from,
        to,
        subject: message.subject().map(clean),
        message_id: message.message_id().filter(|id| !id.is_empty()).map(clean),
        date,
    }
}

/// The trimmed raw text of the first `name` header (`Message::header_raw` may panic on offsets
/// past 4 GiB, which `mail-parser` stores as `u32`).
fn raw_header(message: &Message<'_>, name: &HeaderName<'_>) -> Option<String> {
    let header = message.parts.first()?.headers.iter().find(|h| &h.name == name)?;
    let raw = message.raw_message.get(header.offset_start as usize..header.offset_end as usize)?;
    let text = String::from_utf8_lossy(raw);
    let text = text.trim();
    (!text.is_empty()).then(|| clean(text))
}

/// `Name <address>`, `address` or `Name`; the name quoted when it holds specials.
fn display_addr(addr: &Addr<'_>) -> Option<String> {
    let name = addr.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let address = addr.address.as_deref().map(str::trim).filter(|a| !a.is_empty());
    match (name, address) {
        (Some(name), Some(address)) => Some(format!("{} <{address}>", quote_name(name))),
        (None, Some(address)) => Some(address.to_owned()),
        (Some(name), None) => Some(name.to_owned()),
        (None, None) => None,
    }
}

fn quote_name(name: &str) -> String {
    if name.contains(|c: char| "()<>[]:;@\\,.\"".contains(c)) {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        name.to_owned()
    }
}

/// One leaf MIME part as the walk hands it out.
pub(crate) struct Leaf<'a> {
    /// Decoded content: text parts as decoded to UTF-8, anything else as decoded bytes.
    pub content: &'a [u8],
    /// For a text part whose UTF-8 text differs from its bytes as transferred (another
    /// charset, or invalid UTF-8): those bytes, transfer encoding removed.
    pub original: Option<Vec<u8>>,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    pub name: Option<String>,
    pub is_attachment: bool,
}

/// One message level on the walk's stack.
struct Frame<'x> {
    message: Message<'x>,
    /// Part ids still to visit, the next one last.
    pending: Vec<u32>,
    visited: Vec<bool>,
    attachments: HashSet<u32>,
    /// Inside an attached message: everything in it belongs to an attachment.
    nested: bool,
}

impl<'x> Frame<'x> {
    fn new(message: Message<'x>, nested: bool) -> Self {
        let pending = if message.parts.is_empty() { Vec::new() } else { vec![0] };
        let visited = vec![false; message.parts.len()];
        let attachments = message.attachments.iter().copied().collect();
        Frame { message, pending, visited, attachments, nested }
    }
}

/// Calls `visit` for every leaf part of `message` in document order, descending into
/// multiparts and attached messages, then frees the message (see [`dismantle`]).
pub(crate) fn for_each_leaf(message: Message<'_>, mut visit: impl FnMut(Leaf<'_>)) {
    let mut stack = vec![Frame::new(message, false)];
    while let Some(frame) = stack.last_mut() {
        let Some(id) = frame.pending.pop() else {
            if let Some(done) = stack.pop() {
                dismantle(done.message);
            }
            continue;
        };
        let index = id as usize;
        match frame.visited.get_mut(index) {
            Some(seen) if !*seen => *seen = true,
            _ => continue,
        }
        let Some(part) = frame.message.parts.get_mut(index) else { continue };
        let nested = match &part.body {
            PartType::Multipart(children) => {
                // Children always come after their parent; anything else would be a cycle.
                frame.pending.extend(children.iter().rev().filter(|&&child| child > id));
                None
            }
            PartType::Message(_) => match std::mem::take(&mut part.body) {
                PartType::Message(nested) => Some(nested),
                _ => None,
            },
            _ => {
                let name = part.attachment_name().map(str::trim).filter(|n| !n.is_empty()).map(clean);
                let explicit = part.content_disposition().is_some_and(|d| d.is_attachment());
                let is_attachment = frame.nested || frame.attachments.contains(&id) || name.is_some() || explicit;
                let original = original_bytes(part, &frame.message.raw_message);
                visit(Leaf {
                    content: part.contents(),
                    original,
                    content_type: content_type(part),
                    name,
                    is_attachment,
                });
                None
            }
        };
        if let Some(nested) = nested {
            stack.push(Frame::new(nested, true));
        }
    }
}

/// `type/subtype` lowercase; `text/plain` when the part has no usable Content-Type.
fn content_type(part: &MessagePart<'_>) -> String {
    let Some(ct) = part.content_type() else { return "text/plain".to_owned() };
    let c_type = ct.c_type.trim();
    if c_type.is_empty() {
        return "text/plain".to_owned();
    }
    let mut out = clean(c_type).to_ascii_lowercase();
    if let Some(subtype) = ct.c_subtype.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(&clean(subtype).to_ascii_lowercase());
    }
    out
}

/// The transferred bytes of a text part, when its text is not simply those bytes: a PE
/// labelled `text/plain; charset=utf-16` no longer starts with `MZ` once converted.
///
/// `base` is the buffer the part's offsets point into: the message's `raw_message`.
fn original_bytes(part: &MessagePart<'_>, base: &[u8]) -> Option<Vec<u8>> {
    if !part.is_text() {
        return None;
    }
    let text = part.contents();
    let charset = part.content_type().and_then(|ct| ct.attribute("charset")).map(|c| c.trim().to_ascii_lowercase());
    let converted = charset.is_some_and(|c| !matches!(c.as_str(), "utf-8" | "utf8" | "us-ascii" | "ascii"));
    let lossy = text.windows(3).any(|w| w == "\u{fffd}".as_bytes());
    if !converted && !lossy {
        return None;
    }
    let raw = base.get(part.offset_body as usize..part.offset_end as usize)?;
    let (end, bytes) = match part.encoding {
        Encoding::Base64 => MessageStream::new(raw).decode_base64_mime(b""),
        Encoding::QuotedPrintable => MessageStream::new(raw).decode_quoted_printable_mime(b""),
        Encoding::None => (raw.len(), raw.into()),
    };
    (end != usize::MAX && bytes.as_ref() != text).then(|| bytes.into_owned())
}
