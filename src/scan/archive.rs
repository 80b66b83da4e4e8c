//! Archive members as objects of their own: zip and gzip expanded under hard bounds.
//!
//! Attackers wrap what they send in archives because a scanner that looks only at the part sees
//! compressed noise. Every member is inflated (at most [`Limits`] allow) and handed to the caller
//! like a part, and an archive inside an archive is expanded in turn. What the bounds stop is
//! reported as a [`Bound`], never skipped in silence: a scanner that gives up quietly is one an
//! attacker pads past.
//!
//! Memory stays bounded: members are inflated one at a time, depth first, and everything
//! inflated for one message counts against [`Limits::total_bytes`].
use std::cell::Cell;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

/// Detection kind: a bound was hit by a member that inflates far beyond its compressed size.
pub const KIND_ARCHIVE_BOMB: &str = "archive_bomb";
/// Detection kind: an encrypted archive member, which nothing here can look into.
pub const KIND_ENCRYPTED_ARCHIVE: &str = "encrypted_archive";
/// Detection kind: an archive the bounds kept from being expanded whole (nested too deep, too
/// many members, a member too large at an ordinary ratio, unreadable or unsupported compression).
pub const KIND_ARCHIVE_TOO_COMPLEX: &str = "too_complex";

/// The hard bounds of expanding one message's archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Archives inside archives inside a part: an archive this deep is not opened.
    pub depth: usize,
    /// Members of all archives of one message.
    pub members: usize,
    /// Bytes of one member, inflated; the rest of it is not read.
    pub member_bytes: u64,
    /// Bytes inflated for one message in all.
    pub total_bytes: u64,
    /// Inflated ÷ compressed size past which a member that hits a bound is called a bomb.
    pub ratio: u64,
}

/// The bounds a scan applies.
pub const LIMITS: Limits =
    Limits { depth: 4, members: 1_000, member_bytes: 16 << 20, total_bytes: 64 << 20, ratio: 100 };

/// What a bound stopped, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bound {
    /// [`KIND_ARCHIVE_BOMB`], [`KIND_ENCRYPTED_ARCHIVE`] or [`KIND_ARCHIVE_TOO_COMPLEX`].
    pub kind: &'static str,
    pub description: String,
    /// Member names from the part down to the object concerned (empty: the part itself).
    pub path: Vec<String>,
}

/// One message's expansion: the budget left, shared by all its parts.
pub(crate) struct Expander {
    limits: Limits,
    members_left: usize,
    bytes_left: u64,
    /// The member and byte budgets' exhaustion is reported once per message.
    said_members: bool,
    said_bytes: bool,
}

/// Counts the compressed bytes a reader takes, so a ratio is measured on what was actually
/// inflated, not on sizes an archive declares (and may lie about).
struct Counting<R> {
    inner: R,
    taken: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken.set(self.taken.get() + n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Where expansion reports what it finds: each member, and each bound hit.
struct Sink<'a> {
    member: &'a mut dyn FnMut(&[String], &[u8]),
    bound: &'a mut dyn FnMut(Bound),
}

impl Sink<'_> {
    fn say(&mut self, kind: &'static str, description: String, path: &[String]) {
        (self.bound)(Bound { kind, description, path: path.to_vec() });
    }
}

/// The formats recognised, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Zip,
    Gzip,
}

fn format_of(content: &[u8]) -> Option<Format> {
    match content {
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Some(Format::Zip),
        [0x1f, 0x8b, ..] => Some(Format::Gzip),
        _ => None,
    }
}

impl Expander {
    pub(crate) fn new(limits: Limits) -> Self {
        Expander {
            limits,
            members_left: limits.members,
            bytes_left: limits.total_bytes,
            said_members: false,
            said_bytes: false,
        }
    }

    /// Expands `content` if it is an archive: calls `member` with the path and inflated bytes of
    /// every member, depth first (an archive member's own members right after it), and `bound`
    /// for everything a bound stopped. `content` that is no archive calls neither.
    pub(crate) fn expand(
        &mut self,
        content: &[u8],
        member: &mut dyn FnMut(&[String], &[u8]),
        bound: &mut dyn FnMut(Bound),
    ) {
        let mut path = Vec::new();
        self.expand_at(content, &mut path, &mut Sink { member, bound });
    }

    fn expand_at(&mut self, content: &[u8], path: &mut Vec<String>, sink: &mut Sink<'_>) {
        let Some(format) = format_of(content) else { return };
        if path.len() >= self.limits.depth {
            sink.say(
                KIND_ARCHIVE_TOO_COMPLEX,
                format!("archives nested more than {} deep; the innermost was not opened", self.limits.depth),
                path,
            );
            return;
        }
        // The archive readers are third-party parsers fed attacker-chosen bytes: a panic in one
        // costs this archive, not the message's scan.
        let outcome = catch_unwind(AssertUnwindSafe(|| match format {
            Format::Zip => self.zip(content, path, sink),
            Format::Gzip => self.gzip(content, path, sink),
        }));
        if outcome.is_err() {
            sink.say(KIND_ARCHIVE_TOO_COMPLEX, "the archive reader failed on this archive".to_owned(), path);
        }
    }

    /// Takes one member from the budget; `false` (said once) when none is left.
    fn take_member(&mut self, path: &[String], bound: &mut dyn FnMut(Bound)) -> bool {
        if self.members_left == 0 {
            if !self.said_members {
                self.said_members = true;
                bound(Bound {
                    kind: KIND_ARCHIVE_TOO_COMPLEX,
                    description: format!("more than {} archive members; the rest were not opened", self.limits.members),
                    path: path.to_vec(),
                });
            }
            return false;
        }
        self.members_left -= 1;
        true
    }

    /// Inflates one member from `reader` within the bounds; reports the bound it hit, if any,
    /// and returns what was read (the first bytes of a member too large).
    fn inflate(
        &mut self,
        reader: impl Read,
        taken: &Cell<u64>,
        path: &[String],
        bound: &mut dyn FnMut(Bound),
    ) -> std::io::Result<Vec<u8>> {
        let limit = self.limits.member_bytes.min(self.bytes_left);
        let mut content = Vec::new();
        reader.take(limit + 1).read_to_end(&mut content)?;
        let cut = content.len() as u64 > limit;
        let compressed = taken.get();
        content.truncate(limit as usize);
        self.bytes_left -= content.len() as u64;
        if cut {
            let by_total = limit < self.limits.member_bytes;
            let ratio = content.len() as u64 / compressed.max(1);
            let bomb = ratio > self.limits.ratio;
            let mib = |n: u64| n >> 20;
            let why = if by_total {
                format!("the message's archives inflate past {} MiB in all", mib(self.limits.total_bytes))
            } else {
                format!("it inflates past {} MiB", mib(self.limits.member_bytes))
            };
            // A member past the total is reported once; a bomb always (it is the finding).
            if bomb || !by_total || !self.said_bytes {
                self.said_bytes |= by_total;
                let kind = if bomb { KIND_ARCHIVE_BOMB } else { KIND_ARCHIVE_TOO_COMPLEX };
                let description = if bomb {
                    format!(
                        "{why} at over {ratio}:1 ({} bytes from {compressed} compressed); only those were scanned",
                        content.len()
                    )
                } else {
                    format!("{why}; only its first {} bytes were scanned", content.len())
                };
                bound(Bound { kind, description, path: path.to_vec() });
            }
        }
        Ok(content)
    }

    fn zip(&mut self, content: &[u8], path: &mut Vec<String>, sink: &mut Sink<'_>) {
        let taken = Rc::new(Cell::new(0));
        let reader = Counting { inner: Cursor::new(content), taken: taken.clone() };
        let mut archive = match zip::ZipArchive::new(reader) {
            Ok(archive) => archive,
            Err(e) => {
                let description = format!("starts like a zip archive but could not be read ({e})");
                return sink.say(KIND_ARCHIVE_TOO_COMPLEX, description, path);
            }
        };
        for index in 0..archive.len() {
            let (name, encrypted, is_dir) = match archive.by_index_raw(index) {
                Ok(file) => (
                    file.name().map(|n| n.into_owned()).unwrap_or_else(|_| format!("member {index}")),
                    file.encrypted(),
                    file.is_dir(),
                ),
                Err(e) => {
                    let description = format!("zip member {index} could not be read ({e})");
                    sink.say(KIND_ARCHIVE_TOO_COMPLEX, description, path);
                    continue;
                }
            };
            if is_dir {
                continue;
            }
            path.push(name);
            if !self.take_member(path, sink.bound) {
                path.pop();
                return;
            }
            if encrypted {
                let description = "encrypted archive member; its content could not be scanned".to_owned();
                sink.say(KIND_ENCRYPTED_ARCHIVE, description, path);
                path.pop();
                continue;
            }
            taken.set(0);
            match archive.by_index(index) {
                Ok(file) => self.visit(file, &taken, path, sink),
                Err(e) => {
                    let description = format!("archive member could not be inflated ({e})");
                    sink.say(KIND_ARCHIVE_TOO_COMPLEX, description, path);
                }
            }
            path.pop();
        }
    }

    fn gzip(&mut self, content: &[u8], path: &mut Vec<String>, sink: &mut Sink<'_>) {
        let taken = Rc::new(Cell::new(0));
        let mut decoder = flate2::read::MultiGzDecoder::new(Counting { inner: content, taken: taken.clone() });
        let name = decoder
            .header()
            .and_then(|h| h.filename())
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "(gzip content)".to_owned());
        path.push(name);
        if self.take_member(path, sink.bound) {
            self.visit(&mut decoder, &taken, path, sink);
        }
        path.pop();
    }

    /// Inflates the member at `path` from `reader`, hands it to `member`, and expands it in turn
    /// if it is an archive itself.
    fn visit(&mut self, reader: impl Read, taken: &Cell<u64>, path: &mut Vec<String>, sink: &mut Sink<'_>) {
        match self.inflate(reader, taken, path, sink.bound) {
            Ok(inflated) => {
                (sink.member)(path, &inflated);
                self.expand_at(&inflated, path, sink);
            }
            Err(e) => {
                let description = format!("archive member could not be inflated ({e})");
                sink.say(KIND_ARCHIVE_TOO_COMPLEX, description, path);
            }
        }
    }
}
