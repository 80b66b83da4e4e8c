//! One SMTP session (RFC 5321), parsed by smtp-proto, decided by `policy`.
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use smtp_proto::{Error as ParseError, Request};

use super::context::Context;
use super::data::{self, Problem};
use super::follower::InForce;
use super::io::{Conn, Line, Stream};
use crate::policy::{self, Decision};
use crate::wire::HandoffEnvelope;

/// RFC 5321 §4.5.3.1.4: 512 octets including CRLF.
const MAX_COMMAND_LINE: usize = 512;
/// Protocol errors tolerated before the session is closed.
const MAX_ERRORS: u32 = 20;

#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

struct Session {
    ctx: Arc<Context>,
    /// The settings this session started with; a revision applied mid-session governs the next one.
    in_force: Arc<InForce>,
    peer: IpAddr,
    helo: Option<String>,
    tls: bool,
    txn: Transaction,
    errors: u32,
}

enum Next {
    Close,
    StartTls,
}

/// Serves one connection to the end.
pub async fn serve(stream: Box<dyn Stream>, ctx: Arc<Context>, peer: SocketAddr, local: SocketAddr) {
    let peer_ip = canonical(peer.ip());
    let ends = tokio::time::Instant::now() + ctx.limits.session_timeout;
    let mut conn = Conn::new(stream, ctx.limits.idle_timeout, ends);
    let Some(in_force) = ctx.follower.in_force() else {
        conn.reply("421 4.3.2 sensor not configured yet, try again later");
        let _ = conn.flush().await;
        return;
    };
    if ctx.health.unreachable().is_some() {
        // Nothing accepted now could be stored: say so before the client sends a message.
        conn.reply("421 4.3.0 cannot store mail right now, try again later");
        let _ = conn.flush().await;
        super::metrics::session("api_unreachable");
        return;
    }
    let network = ctx.sensor_network.unwrap_or_else(|| super::network::interface_network(local.ip()));
    let connect = policy::evaluate_connect(&in_force.settings, peer_ip, Some(network));
    if connect.reply.code == 421 {
        conn.reply(&connect.reply.line());
        let _ = conn.flush().await;
        super::metrics::session("disabled");
        return;
    }
    if connect.decision == Decision::Reject {
        super::metrics::session("client_rejected");
        // Long enough to read why and say QUIT; not long enough to hold a session slot.
        let _ = tokio::time::timeout(ctx.limits.refused_grace, refuse_client(conn, &connect.reply.line())).await;
        return;
    }
    super::metrics::session("accepted");
    conn.reply(&format!("220 {} ESMTP mailsensor", ctx.hostname));
    let mut session =
        Session { ctx, in_force, peer: peer_ip, helo: None, tls: false, txn: Transaction::default(), errors: 0 };
    loop {
        match session.run(&mut conn).await {
            Ok(Next::StartTls) => {
                let Some(acceptor) = session.ctx.tls.clone() else { return };
                let ends = conn.ends;
                let stream = conn.into_stream();
                let handshake = tokio::time::timeout_at(
                    ends.min(tokio::time::Instant::now() + session.ctx.limits.idle_timeout),
                    acceptor.accept(stream),
                );
                match handshake.await {
                    Ok(Ok(tls)) => {
                        conn = Conn::new(Box::new(tls), session.ctx.limits.idle_timeout, ends);
                        // RFC 3207 §4.2: forget everything learnt before the handshake.
                        session.tls = true;
                        session.helo = None;
                        session.txn = Transaction::default();
                    }
                    _ => return,
                }
            }
            Ok(Next::Close) | Err(_) => return,
        }
    }
}

/// An IPv4-mapped IPv6 peer is an IPv4 client.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// A client the settings do not allow: say why instead of a greeting, then refuse everything but QUIT.
async fn refuse_client(mut conn: Conn, line: &str) {
    conn.reply(line);
    for _ in 0..MAX_ERRORS {
        if conn.flush().await.is_err() {
            return;
        }
        match conn.read_line(MAX_COMMAND_LINE).await {
            Ok(Line::Ok(l)) if l.len() >= 4 && l[..4].eq_ignore_ascii_case(b"QUIT") => {
                conn.reply("221 2.0.0 bye");
                let _ = conn.flush().await;
                return;
            }
            Ok(Line::Ok(_)) | Ok(Line::TooLong) => conn.reply("503 5.7.1 client not allowed; only QUIT is accepted"),
            _ => return,
        }
    }
}

impl Session {
    fn max_bytes(&self) -> u64 {
        self.in_force.max_message_bytes()
    }

    fn error(&mut self, conn: &mut Conn, line: &str) {
        self.errors += 1;
        conn.reply(line);
    }

    async fn run(&mut self, conn: &mut Conn) -> std::io::Result<Next> {
        loop {
            conn.flush_if_idle().await?;
            if self.errors >= MAX_ERRORS {
                conn.reply("421 4.7.0 too many errors, closing connection");
                conn.flush().await?;
                return Ok(Next::Close);
            }
            let line = match conn.read_line(MAX_COMMAND_LINE).await {
                Ok(Line::Ok(line)) => line,
                Ok(Line::TooLong) => {
                    self.error(conn, "500 5.5.2 line too long");
                    continue;
                }
                Ok(Line::Eof) => return Ok(Next::Close),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    conn.reply(timeout_reply(conn));
                    let _ = conn.flush().await;
                    return Ok(Next::Close);
                }
                Err(e) => return Err(e),
            };
            if line.contains(&0) {
                // No mail system can take a NUL in an address or a greeting name, now or on a
                // retry: refuse it for good rather than fail the hand-off every time (451 forever).
                self.error(conn, "501 5.5.2 NUL character in command; refused");
                continue;
            }
            let request = Request::parse(&mut line.iter());
            match request {
                Ok(Request::Ehlo { host }) => self.ehlo(conn, host, true),
                Ok(Request::Helo { host }) => self.ehlo(conn, host, false),
                Ok(Request::Lhlo { .. }) => self.error(conn, "500 5.5.1 this is SMTP, not LMTP"),
                Ok(Request::Mail { from }) => {
                    let address = as_written(&line).unwrap_or(from.address);
                    self.mail(conn, address, from.size)
                }
                Ok(Request::Rcpt { to }) => {
                    let address = as_written(&line).unwrap_or(to.address);
                    self.rcpt(conn, &address)
                }
                Ok(Request::Data) => {
                    if let Some(next) = self.data(conn).await? {
                        return Ok(next);
                    }
                }
                Ok(Request::Rset) => {
                    self.txn = Transaction::default();
                    conn.reply("250 2.0.0 OK");
                }
                Ok(Request::Noop { .. }) => conn.reply("250 2.0.0 OK"),
                Ok(Request::Vrfy { .. }) => conn.reply("252 2.5.0 cannot verify the user, but will accept the message"),
                Ok(Request::Help { .. }) => {
                    conn.reply("214 2.0.0 commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP STARTTLS QUIT")
                }
                Ok(Request::Quit) => {
                    conn.reply("221 2.0.0 bye");
                    conn.flush().await?;
                    return Ok(Next::Close);
                }
                Ok(Request::StartTls) => {
                    if self.ctx.tls.is_none() {
                        self.error(conn, "502 5.5.1 STARTTLS is not offered here");
                    } else if self.tls {
                        self.error(conn, "503 5.5.1 TLS is already active");
                    } else {
                        conn.reply("220 2.0.0 ready to start TLS");
                        conn.flush().await?;
                        return Ok(Next::StartTls);
                    }
                }
                Ok(other) => {
                    let line = format!("502 5.5.1 {} is not implemented", other.name());
                    self.error(conn, &line);
                }
                Err(e) => {
                    let line = parse_error_reply(&e);
                    self.error(conn, line);
                }
            }
        }
    }

    fn ehlo(&mut self, conn: &mut Conn, host: Cow<'_, str>, extended: bool) {
        if host.is_empty() {
            self.error(conn, "501 5.5.4 EHLO needs a domain or address literal");
            return;
        }
        self.helo = Some(host.into_owned());
        self.txn = Transaction::default();
        if !extended {
            conn.reply(&format!("250 {}", self.ctx.hostname));
            return;
        }
        let mut lines = vec![
            format!("{} greets {}", self.ctx.hostname, self.helo.as_deref().unwrap_or_default()),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.max_bytes()),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if self.ctx.tls.is_some() && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        lines.push("HELP".to_owned());
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            conn.reply(&format!("250{}{line}", if i == last { ' ' } else { '-' }));
        }
    }

    fn mail(&mut self, conn: &mut Conn, from: Cow<'_, str>, size: usize) {
        if self.helo.is_none() {
            self.error(conn, "503 5.5.1 send EHLO or HELO first");
            return;
        }
        if self.txn.mail_from.is_some() {
            self.error(conn, "503 5.5.1 a transaction is already open; RSET first");
            return;
        }
        // SIZE= is the client's estimate: refuse early when it is already too big.
        if size > 0 {
            let outcome = policy::evaluate_size(&self.in_force.settings, size as u64, self.max_bytes());
            if outcome.decision == Decision::Reject {
                conn.reply(&outcome.reply.line());
                return;
            }
        }
        self.txn.mail_from = Some(from.into_owned());
        conn.reply("250 2.1.0 sender OK");
    }

    fn rcpt(&mut self, conn: &mut Conn, to: &str) {
        if self.txn.mail_from.is_none() {
            self.error(conn, "503 5.5.1 send MAIL FROM first");
            return;
        }
        if self.txn.rcpt_to.len() >= self.ctx.limits.max_recipients {
            conn.reply("452 4.5.3 too many recipients");
            return;
        }
        let outcome = policy::evaluate_recipient(&self.in_force.settings, to);
        // A recipient named twice is accepted once: one copy of the message is one copy.
        if outcome.decision == Decision::Accept && !self.txn.rcpt_to.iter().any(|r| r == to) {
            self.txn.rcpt_to.push(to.to_owned());
        }
        conn.reply(&outcome.reply.line());
    }

    /// `Some` when the session must end.
    async fn data(&mut self, conn: &mut Conn) -> std::io::Result<Option<Next>> {
        if self.txn.mail_from.is_none() {
            self.error(conn, "503 5.5.1 send MAIL FROM first");
            return Ok(None);
        }
        if self.txn.rcpt_to.is_empty() {
            conn.reply("554 5.5.1 no valid recipients");
            return Ok(None);
        }
        conn.reply("354 end data with <CR><LF>.<CR><LF>");
        conn.flush().await?;
        let envelope = HandoffEnvelope {
            client_ip: self.peer.to_string(),
            helo: self.helo.clone().unwrap_or_default(),
            mail_from: self.txn.mail_from.clone().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.txn.rcpt_to),
            tls: self.tls,
            worker: self.ctx.instance_id.clone(),
        };
        let mut handoff = self.ctx.api.start_handoff(&envelope, self.ctx.limits.handoff_timeout);
        let limits = &self.ctx.limits;
        let rate = data::MinRate { bytes_per_sec: limits.min_data_rate, grace: limits.data_rate_grace };
        let received = data::receive(conn, self.max_bytes(), rate, Some(&mut handoff)).await;
        self.txn = Transaction::default();
        let received = match received {
            Ok(Some(r)) => r,
            Ok(None) => {
                handoff.abort();
                return Ok(Some(Next::Close));
            }
            Err(e) => {
                handoff.abort();
                if e.kind() == std::io::ErrorKind::TimedOut {
                    conn.reply(timeout_reply(conn));
                    let _ = conn.flush().await;
                }
                return Ok(Some(Next::Close));
            }
        };
        let reply = match received.problem {
            Some(Problem::TooLarge) => {
                handoff.abort();
                policy::evaluate_size(&self.in_force.settings, received.size, self.max_bytes()).reply.line()
            }
            Some(Problem::BareLineEnding) => {
                handoff.abort();
                "554 5.5.2 bare CR or LF in message (RFC 5321 §2.3.8); message refused".to_owned()
            }
            Some(Problem::LineTooLong) => {
                handoff.abort();
                "554 5.5.2 text line longer than 998 characters (RFC 5321 §4.5.3.1.6); message refused".to_owned()
            }
            // The API may have answered while the body still streamed (a 413 when it is over the
            // platform cap): what it said decides, as after a whole body.
            None => match handoff.finish().await {
                Ok(id) if !received.handoff_failed => {
                    super::metrics::message("stored");
                    format!("250 2.0.0 <{id}> stored")
                }
                Ok(_) => {
                    tracing::warn!("hand-off failed mid-message");
                    super::metrics::message("handoff_failed");
                    "451 4.3.0 could not store the message, try again later".to_owned()
                }
                Err(e) if e.is_permanent() => {
                    tracing::warn!(error = %e, "the API refused the message");
                    super::metrics::message("refused");
                    refused_reply(&e)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "hand-off failed");
                    super::metrics::message("handoff_failed");
                    "451 4.3.0 could not store the message, try again later".to_owned()
                }
            },
        };
        conn.reply(&reply);
        if received.ended_oddly {
            conn.reply("421 4.5.2 malformed end of data, closing connection");
            conn.flush().await?;
            return Ok(Some(Next::Close));
        }
        Ok(None)
    }
}

/// The address of a `MAIL FROM:<…>` or `RCPT TO:<…>` line exactly as the client wrote it, when its
/// local part is quoted: smtp-proto drops the quotes (`"john doe"@example.com` would become `john
/// doe@example.com`, and `"x@a"@b` an address with two `@`), which changes what the address says.
fn as_written<'a>(line: &[u8]) -> Option<Cow<'a, str>> {
    let text = std::str::from_utf8(line).ok()?;
    let start = text.find('<')? + 1;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in text[start..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                let path = &text[start..start + i];
                // A source route (`@a,@b:user@c`) is not part of the address.
                let address =
                    path.rsplit_once(':').filter(|(route, _)| route.starts_with('@')).map_or(path, |(_, a)| a);
                return address.starts_with('"').then(|| Cow::Owned(address.to_owned()));
            }
            _ => {}
        }
    }
    None
}

/// Why a wait on the client ran out: the session's own time, or this one step's.
fn timeout_reply(conn: &Conn) -> &'static str {
    if tokio::time::Instant::now() >= conn.ends {
        "421 4.4.2 session time limit reached, closing connection"
    } else {
        "421 4.4.2 idle timeout, closing connection"
    }
}

fn parse_error_reply(e: &ParseError) -> &'static str {
    match e {
        ParseError::UnknownCommand => "500 5.5.1 command not recognized",
        ParseError::InvalidSenderAddress => "501 5.1.7 bad sender address syntax",
        ParseError::InvalidRecipientAddress => "501 5.1.3 bad recipient address syntax",
        ParseError::UnsupportedParameter { .. } => "555 5.5.4 parameter not supported",
        ParseError::InvalidParameter { .. } => "501 5.5.4 invalid parameter",
        _ => "501 5.5.2 syntax error",
    }
}

/// The reply to a message the API refused for good: a sender must not retry it.
fn refused_reply(e: &super::handoff::HandoffError) -> String {
    match e {
        // Over the platform cap, lowered since this worker last heard its limit.
        super::handoff::HandoffError::Refused(413) => {
            "552 5.3.4 message size exceeds the platform's fixed maximum; refused".to_owned()
        }
        _ => "554 5.6.0 the message cannot be stored as sent; refused".to_owned(),
    }
}
