//! E-mail: a summary (never the message) to people, through the tenant's relay with `mail-send`:
//! implicit TLS, STARTTLS (refused if the relay does not offer it), or plain SMTP on a network
//! the tenant trusts; credentials when given. The relay's address passes the guard first and is
//! the one connected to.
use serde::Deserialize;

use super::{DeliveryOptions, Failure, Sent};
use crate::alerts::email::summary;
use crate::store::alerts::{Due, Outcome};

/// How long a relay may take, start to end (mail-send's own default is an hour).
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

pub(super) async fn send(due: &Due, options: &DeliveryOptions) -> Result<Sent, Failure> {
    use mail_send::mail_builder::{MessageBuilder, headers::address::Address};
    let config: EmailConfig = serde_json::from_value(due.destination.config.clone())
        .map_err(|e| Failure::failed(format!("the destination's settings are unreadable: {e}")))?;
    let address = super::address::resolve(&config.host, config.port, options.allow_private).await?[0];
    let mut relay = mail_send::SmtpClientBuilder::new(config.host.clone(), config.port)
        .map_err(|e| Failure::failed(format!("relay {}: {e}", config.host)))?
        .implicit_tls(config.security == "tls")
        .helo_host(options.host.clone())
        .timeout(TIMEOUT);
    relay.addr = address.to_string();
    if let (Some(user), Some(password)) = (&config.username, &due.destination.secret) {
        relay = relay.credentials((user.clone(), password.clone()));
    }
    let text = summary(&due.event, &options.public_url);
    let to: Vec<Address<'_>> = config.to.iter().map(|a| Address::new_address(None::<&str>, a.as_str())).collect();
    let message = MessageBuilder::new()
        .from(config.from.as_str())
        .to(Address::new_list(to))
        .subject(text.subject)
        .message_id(format!("{}@mailsensor", due.event.id))
        .text_body(text.text)
        .html_body(text.html);
    let sent = match config.security.as_str() {
        "none" => match relay.connect_plain().await {
            Ok(mut client) => client.send(message).await,
            Err(e) => Err(e),
        },
        _ => match relay.connect().await {
            Ok(mut client) => client.send(message).await,
            Err(e) => Err(e),
        },
    };
    match sent {
        Ok(reply) => Ok(Sent {
            outcome: Outcome::Delivered,
            status: Some(reply.code as i32),
            error: None,
            response: Some(reply.message.chars().take(1024).collect()),
        }),
        Err(mail_send::Error::UnexpectedReply(reply)) => Err(Failure {
            outcome: Outcome::Failed { retry_after: None },
            status: Some(reply.code as i32),
            error: format!("the relay answered {} {}", reply.code, reply.message),
            response: Some(reply.message.chars().take(1024).collect()),
        }),
        Err(e) => Err(Failure::failed(format!("relay {}:{}: {e}", config.host, config.port))),
    }
}
