//! E-mail: a summary (never the message) to people, through the tenant's relay with `mail-send`:
//! implicit TLS, STARTTLS (refused if the relay does not offer it), or plain SMTP on a network
//! the tenant trusts; credentials when given. The relay's address passes the guard first and is
//! the one connected to. A claim's alerts for one destination share one SMTP session, and go in
//! mails of up to [`PER_MAIL`] alerts each: one alert alone is one mail, alerts that piled up
//! for a mailbox a digest (each alert's lines and link, its event ids in `X-Mailsensor-Events`).
use std::sync::OnceLock;
use std::time::Instant;

use mail_send::SmtpClient;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{DeliveryOptions, Failure, Sent};
use crate::alerts::email::{PER_MAIL, summary_of};
use crate::store::alerts::{Attempted, Due, Outcome};

/// How long a relay may take over one step (mail-send's own default is an hour).
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Deserialize)]
struct EmailConfig {
    host: String,
    port: u16,
    /// `starttls`, `tls` or `none`.
    security: String,
    #[serde(default)]
    username: Option<String>,
    from: String,
    to: Vec<String>,
}

/// An open session with the relay.
enum Session {
    Plain(SmtpClient<TcpStream>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

/// Sends `group` (one destination's, in the order of its events) over one session, in mails of
/// up to [`PER_MAIL`] alerts; the session is opened again after a mail that failed. Every alert
/// of a mail has that mail's outcome.
pub(super) async fn send_all(group: Vec<Due>, options: &DeliveryOptions) -> Vec<(Due, Attempted)> {
    let mut session = None;
    let mut out = Vec::with_capacity(group.len());
    let mut rest = group.into_iter().peekable();
    while rest.peek().is_some() {
        let mail: Vec<Due> = rest.by_ref().take(PER_MAIL).collect();
        let started = Instant::now();
        let result = send(&mail, options, &mut session).await;
        if result.is_err() {
            session = None;
        }
        out.extend(super::each_attempted(mail, result, started.elapsed()));
    }
    out
}

fn config(due: &Due) -> Result<EmailConfig, Failure> {
    serde_json::from_value(due.destination.config.clone())
        .map_err(|e| Failure::failed(format!("the destination's settings are unreadable: {e}")))
}

/// The relays' TLS client settings, built once per process: building them reads every CA
/// certificate of the system's store, which once per session was 7 % of the API's CPU samples at
/// ~600 alerts a second (each claim opens a session per mailbox). A CA added to the store is
/// trusted after a restart.
fn relay_tls() -> Result<TlsConnector, Failure> {
    static TLS: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    TLS.get_or_init(|| mail_send::smtp::tls::build_tls_connector(false))
        .clone()
        .map_err(|e| Failure::failed(format!("the TLS settings for relays cannot be built: {e}")))
}

async fn open(due: &Due, config: &EmailConfig, options: &DeliveryOptions) -> Result<Session, Failure> {
    let address = super::address::resolve(&config.host, config.port, options.allow_private).await?[0];
    let mut relay =
        mail_send::SmtpClientBuilder::new_with_tls_connector(config.host.clone(), config.port, relay_tls()?)
            .implicit_tls(config.security == "tls")
            .helo_host(options.host.clone())
            .timeout(TIMEOUT);
    relay.addr = address.to_string();
    if let (Some(user), Some(password)) = (&config.username, &due.destination.secret) {
        relay = relay.credentials((user.clone(), password.clone()));
    }
    // mail-send writes a message's body and its closing dot apart: without TCP_NODELAY each
    // message waits ~40 ms for the relay's delayed ACK (Nagle).
    let opened = match config.security.as_str() {
        "none" => relay.connect_plain().await.map(|c| {
            c.stream.set_nodelay(true).ok();
            Session::Plain(c)
        }),
        _ => relay.connect().await.map(|c| {
            c.stream.get_ref().0.set_nodelay(true).ok();
            Session::Tls(Box::new(c))
        }),
    };
    opened.map_err(|e| failure(e, config))
}

async fn send(mail: &[Due], options: &DeliveryOptions, session: &mut Option<Session>) -> Result<Sent, Failure> {
    use mail_send::mail_builder::{MessageBuilder, headers::address::Address, headers::raw::Raw};
    let first = &mail[0];
    let config = config(first)?;
    if session.is_none() {
        *session = Some(open(first, &config, options).await?);
    }
    let events: Vec<&crate::alerts::AlertEvent> = mail.iter().map(|due| &due.event).collect();
    let text = summary_of(&events, &options.public_url);
    let to: Vec<Address<'_>> = config.to.iter().map(|a| Address::new_address(None::<&str>, a.as_str())).collect();
    // One alert's mail is known by its event's id (a retry is the same mail); a digest by its
    // first event's and its size.
    let message_id = match mail {
        [one] => format!("{}@mailsensor", one.event.id),
        many => format!("{}+{}@mailsensor", first.event.id, many.len()),
    };
    let ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    let message = MessageBuilder::new()
        .from(config.from.as_str())
        .to(Address::new_list(to))
        .subject(text.subject)
        .message_id(message_id)
        .header("X-Mailsensor-Events", Raw::new(ids.join(",\r\n ")))
        .text_body(text.text)
        .html_body(text.html);
    let sent = match session.as_mut() {
        Some(Session::Plain(client)) => client.send(message).await,
        Some(Session::Tls(client)) => client.send(message).await,
        None => unreachable!("opened above"),
    };
    match sent {
        Ok(reply) => Ok(Sent {
            outcome: Outcome::Delivered,
            status: Some(reply.code as i32),
            error: None,
            response: Some(reply.message.chars().take(1024).collect()),
        }),
        Err(e) => Err(failure(e, &config)),
    }
}

fn failure(e: mail_send::Error, config: &EmailConfig) -> Failure {
    match e {
        mail_send::Error::UnexpectedReply(reply) => Failure {
            outcome: Outcome::Failed { retry_after: None },
            status: Some(reply.code as i32),
            error: format!("the relay answered {} {}", reply.code, reply.message),
            response: Some(reply.message.chars().take(1024).collect()),
        },
        e => Failure::failed(format!("relay {}:{}: {e}", config.host, config.port)),
    }
}
