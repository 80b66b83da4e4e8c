//! Reading `DATA`: dot-unstuffed by smtp-proto, checked as it streams, forwarded in chunks.
//!
//! Only `<CRLF>.<CRLF>` ends the data, and a message with a bare CR or LF anywhere is refused
//! whole: that is what defeats SMTP smuggling (a receiver and a later hop disagreeing on where a
//! message ends).
use bytes::Bytes;
use smtp_proto::request::receiver::DataReceiver;
use tokio::io::AsyncBufReadExt;

use super::handoff::Handoff;
use super::io::Conn;

/// Forward to the API in pieces of about this size.
const FORWARD: usize = 64 * 1024;
/// RFC 5321 §4.5.3.1.6: 998 characters plus CRLF.
const MAX_TEXT_LINE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    TooLarge,
    BareLineEnding,
    LineTooLong,
}

#[derive(Debug)]
pub struct Received {
    pub size: u64,
    pub problem: Option<Problem>,
    /// The API stopped taking the message part-way (it is unreachable or refused it).
    pub handoff_failed: bool,
    /// The data ended in `<CR>.<CR><CR><LF>`-like bytes no RFC 5321 client sends: what follows
    /// cannot be trusted to be commands, so the session must end.
    pub ended_oddly: bool,
}

#[derive(Default)]
struct Check {
    size: u64,
    prev: u8,
    line: usize,
    problem: Option<Problem>,
}

impl Check {
    fn inspect(&mut self, chunk: &[u8], max: u64) {
        self.size += chunk.len() as u64;
        if self.size > max {
            self.problem = Some(Problem::TooLarge);
        }
        for &b in chunk {
            let bare = (b == b'\n' && self.prev != b'\r') || (self.prev == b'\r' && b != b'\n');
            if bare && self.problem.is_none() {
                self.problem = Some(Problem::BareLineEnding);
            }
            if b == b'\n' {
                self.line = 0;
            } else {
                self.line += 1;
                // `line` counts the CR too: 998 characters plus CR is the longest legal line.
                if self.line > MAX_TEXT_LINE - 1 && self.problem.is_none() {
                    self.problem = Some(Problem::LineTooLong);
                }
            }
            self.prev = b;
        }
    }
}

/// Reads the message up to `<CRLF>.<CRLF>`, passing it to `handoff` while nothing is wrong.
/// `None` when the connection ends before the data does.
/// The slowest a message may arrive: `bytes_per_sec` on average, once `grace` has passed.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub grace: std::time::Duration,
}

pub async fn receive(
    conn: &mut Conn,
    max: u64,
    rate: MinRate,
    mut handoff: Option<&mut Handoff>,
) -> std::io::Result<Option<Received>> {
    let started = tokio::time::Instant::now();
    let mut arrived: u64 = 0;
    let mut receiver = DataReceiver::new();
    // The data starts right after the CRLF of the DATA command: without this, a lone "." (an
    // empty message) would not end it and a dot-stuffed first line would not be unstuffed.
    receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
    let mut buf = Vec::with_capacity(FORWARD + 1024);
    let mut check = Check::default();
    let mut handoff_failed = false;
    loop {
        let available = tokio::time::timeout_at(conn.deadline(), conn.reader.fill_buf())
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout in DATA"))??;
        if available.is_empty() {
            return Ok(None);
        }
        // A client that keeps a session open by trickling the message in is cut off.
        arrived += available.len() as u64;
        let elapsed = started.elapsed();
        if elapsed > rate.grace && arrived < rate.bytes_per_sec.saturating_mul(elapsed.as_secs()) {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "message data too slow"));
        }
        let mut iter = available.iter();
        let done = receiver.ingest(&mut iter, &mut buf);
        let consumed = available.len() - iter.as_slice().len();
        conn.reader.consume(consumed);
        // Hold the last byte back: the receiver may still take a trailing CR back out of `buf`.
        let keep = usize::from(!done);
        if buf.len() > keep && (done || buf.len() >= FORWARD) {
            let chunk: Vec<u8> = buf.drain(..buf.len() - keep).collect();
            check.inspect(&chunk, max);
            if check.problem.is_none()
                && let Some(h) = handoff.as_deref_mut()
                && !handoff_failed
                && !h.send(Bytes::from(chunk)).await
            {
                handoff_failed = true;
            }
        }
        if done {
            let ended_oddly = check.prev == b'\r';
            if ended_oddly && check.problem.is_none() {
                check.problem = Some(Problem::BareLineEnding);
            }
            return Ok(Some(Received { size: check.size, problem: check.problem, handoff_failed, ended_oddly }));
        }
    }
}
