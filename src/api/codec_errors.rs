//! Errors actix-http's HTTP/1 codec answers by itself, before any handler or middleware runs: a
//! request head over its fixed 128 KiB buffer (431), a head that does not parse (400), a head that
//! does not arrive in time (408). It sends them with empty bodies and offers no hook, so this
//! wrapper around each connection recognises such a response as it is written and writes the same
//! status as `application/problem+json` instead — every error a client sees is a problem document.
//!
//! Only a response head that starts a write, has one of those statuses and `content-length: 0` is
//! touched; everything the application answers carries a body, so passes through untouched.
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::ApiError;

/// A connection whose codec-level error responses are rewritten as problem documents.
pub struct ProblemIo<T> {
    inner: T,
    /// A rewritten response still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ProblemIo<T> {
    pub fn new(inner: T) -> Self {
        ProblemIo { inner, pending: None }
    }
}

/// The problem-document response that replaces `head`, if `head` is an empty-bodied error the
/// codec made.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let empty = lines.any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    let error = match status {
        "400" if empty => ApiError::BadRequest("the request is not valid HTTP/1.1".into()),
        "408" if empty => ApiError::RequestTimeout("the request head did not arrive in time".into()),
        "431" if empty => {
            ApiError::HeadersTooLarge("the request line and headers are larger than 128 KiB together".into())
        }
        _ => return None,
    };
    use actix_web::ResponseError as _;
    let status = error.status_code();
    let body = serde_json::to_vec(&error.problem()).ok()?;
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes out what is left of a rewritten response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.1 4")
            && let Some(replacement) = rewrite(buf)
        {
            // The codec's response ends the connection, so the whole of `buf` is that response.
            self.pending = Some((replacement, 0));
            // Start writing now; whatever is left goes out on the next write, flush or shutdown.
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    fn body(response: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(response).unwrap();
        serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
    }

    #[test]
    fn codec_errors_become_problem_documents() {
        for (status, slug) in [("431", "headers-too-large"), ("400", "bad-request"), ("408", "request-timeout")] {
            let head = format!("HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\ndate: now\r\n\r\n");
            let out = rewrite(head.as_bytes()).unwrap_or_else(|| panic!("{status} not rewritten"));
            assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
            assert!(std::str::from_utf8(&out).unwrap().contains("content-type: application/problem+json\r\n"));
            let problem = body(&out);
            assert_eq!(problem["type"], format!("urn:mailsensor:problem:{slug}"));
            assert_eq!(problem["status"].to_string(), status);
        }
    }

    #[test]
    fn responses_with_bodies_pass_untouched() {
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 120\r\ncontent-type: application/problem+json\r\n\r\n{";
        assert!(rewrite(app).is_none());
        assert!(rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 431 Too Large\r\ncontent-length: 0\r\n").is_none(), "an incomplete head");
    }
}
