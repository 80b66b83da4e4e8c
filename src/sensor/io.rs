//! The connection, plain or TLS, with bounded line reading.
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Either side of STARTTLS.
pub struct BoxedStream(pub Box<dyn Stream>);

impl AsyncRead for BoxedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Replies queued beyond this are flushed before anything more is read.
pub const MAX_PENDING_REPLIES: usize = 64 * 1024;

pub enum Line {
    /// A complete line, CRLF (or LF) included.
    Ok(Vec<u8>),
    /// Longer than the limit; the rest of it up to the next LF was discarded.
    TooLong,
    Eof,
}

pub struct Conn {
    pub reader: BufReader<BoxedStream>,
    pub idle: Duration,
    /// When the whole session must be over, whatever the client is doing.
    pub ends: tokio::time::Instant,
    out: Vec<u8>,
}

impl Conn {
    pub fn new(stream: Box<dyn Stream>, idle: Duration, ends: tokio::time::Instant) -> Self {
        let reader = BufReader::with_capacity(16 * 1024, BoxedStream(stream));
        Conn { reader, idle, ends, out: Vec::with_capacity(1024) }
    }

    /// When a wait that starts now must end: after the idle timeout, or at the session's end.
    pub fn deadline(&self) -> tokio::time::Instant {
        (tokio::time::Instant::now() + self.idle).min(self.ends)
    }

    /// Queues a reply; it is sent on `flush`, so pipelined commands get their replies in one write.
    pub fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            tokio::time::timeout(self.idle, async {
                let writer = self.reader.get_mut();
                writer.write_all(&out).await?;
                writer.flush().await
            })
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
            self.out = out;
            self.out.clear();
        }
        Ok(())
    }

    /// Flushes only when the client has nothing more pipelined for us.
    pub async fn flush_if_idle(&mut self) -> std::io::Result<()> {
        if self.reader.buffer().is_empty() { self.flush().await } else { Ok(()) }
    }

    /// Reads one line of at most `limit` bytes; the whole line must arrive within the idle
    /// timeout (and the session's time), however slowly the client trickles it.
    ///
    /// Replies still queued are sent before waiting on the socket, and whenever more than
    /// [`MAX_PENDING_REPLIES`] are queued: a client that pipelines without reading gets its
    /// replies pushed at it (and the session ends when it will not take them), instead of the
    /// worker queueing them without bound.
    pub async fn read_line(&mut self, limit: usize) -> std::io::Result<Line> {
        let mut line = Vec::new();
        let mut too_long = false;
        let deadline = self.deadline();
        loop {
            if self.reader.buffer().is_empty() || self.out.len() >= MAX_PENDING_REPLIES {
                self.flush().await?;
            }
            let available = tokio::time::timeout_at(deadline, self.reader.fill_buf())
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle timeout"))??;
            if available.is_empty() {
                return Ok(Line::Eof);
            }
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(pos) => (pos + 1, true),
                None => (available.len(), false),
            };
            if !too_long {
                if line.len() + take > limit {
                    too_long = true;
                    line.clear();
                } else {
                    line.extend_from_slice(&available[..take]);
                }
            }
            self.reader.consume(take);
            if done {
                return Ok(if too_long { Line::TooLong } else { Line::Ok(line) });
            }
        }
    }

    /// Takes the stream back (for STARTTLS), discarding anything the client pipelined after the
    /// command: those bytes were sent in the clear and must not be read as if protected.
    pub fn into_stream(self) -> Box<dyn Stream> {
        self.reader.into_inner().0
    }
}
