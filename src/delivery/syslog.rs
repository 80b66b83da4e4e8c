//! Syslog: one CEF record per alert in an RFC 5424 message, octet-counted (RFC 6587), over TCP or
//! TLS (RFC 5425) with the destination's CA. The connection stays open between alerts; one found
//! closed is opened again, once per attempt (the delivery schedule is the backoff beyond that).
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{DeliveryOptions, Failure, Sent};
use crate::alerts::cef;
use crate::store::alerts::{Due, Outcome};

#[derive(Deserialize, PartialEq, Clone)]
struct SyslogConfig {
    host: String,
    port: u16,
    /// `tcp` or `tls`.
    transport: String,
    /// PEM certificates to trust for `tls` (default: the public web's roots).
    #[serde(default)]
    ca_pem: Option<String>,
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the server closed it: a write to such a connection could vanish without an error.
    /// A syslog server never speaks, so anything to read on plain TCP means it is going away; on
    /// TLS, what arrives (session tickets) is read through, and only the end counts.
    ///
    /// The socket itself is asked, without waiting: tokio's readiness may not have seen the close
    /// yet, and a zero timeout would wait for the timer's next tick (about a millisecond) while the
    /// destination's connection is held, capping a destination near a few hundred records a second.
    fn is_closed(&mut self) -> bool {
        use futures_util::FutureExt;
        let tcp = match self {
            Stream::Tcp(s) => &*s,
            Stream::Tls(s) => s.get_ref().0,
        };
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match socket2::SockRef::from(tcp).peek(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Ok(0) | Err(_) => true,
            Ok(_) => match self {
                Stream::Tcp(_) => true,
                Stream::Tls(s) => {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 512];
                    matches!(s.read(&mut buf).now_or_never(), Some(Ok(0) | Err(_)))
                }
            },
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Stream::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
        }
    }
}

/// A destination's connection, with the settings it was opened with.
type Slot = Option<(SyslogConfig, Stream)>;

/// The open connections, one per destination (and its settings when opened).
#[derive(Default)]
pub(super) struct Connections {
    open: Mutex<HashMap<Uuid, Arc<Mutex<Slot>>>>,
}

impl Connections {
    /// One destination's share of a claim (`group`, not empty), every record framed and written
    /// at once: one turn of the destination's connection, not one per record. A write that fails
    /// fails them all (the receiver may have some: at least once).
    pub(super) async fn send_all(&self, group: &[Due], options: &DeliveryOptions) -> Result<Sent, Failure> {
        let destination = &group[0].destination;
        let config: SyslogConfig = serde_json::from_value(destination.config.clone())
            .map_err(|e| Failure::failed(format!("the destination's settings are unreadable: {e}")))?;
        let mut frames = Vec::new();
        for due in group {
            let record = cef::record(&due.event, env!("CARGO_PKG_VERSION"), &options.host);
            frames.extend_from_slice(&cef::frame(&due.event, &record, &options.host));
        }
        let slot = self.open.lock().await.entry(destination.id).or_default().clone();
        let mut slot = slot.lock().await;
        for fresh in [false, true] {
            let reusable = match slot.as_mut() {
                Some((opened_with, stream)) => *opened_with == config && !stream.is_closed(),
                None => false,
            };
            if !reusable {
                *slot = None;
                let stream = connect(&config, options).await?;
                *slot = Some((config.clone(), stream));
            }
            let Some((_, stream)) = slot.as_mut() else { continue };
            match tokio::time::timeout(options.timeout, stream.write_all(&frames)).await {
                Ok(Ok(())) => {
                    return Ok(Sent { outcome: Outcome::Delivered, status: None, error: None, response: None });
                }
                Ok(Err(e)) if !fresh => tracing::debug!(error = %e, "syslog connection broken; opening it again"),
                Ok(Err(e)) => {
                    *slot = None;
                    return Err(Failure::failed(format!("writing to {}:{}: {e}", config.host, config.port)));
                }
                Err(_) => {
                    *slot = None;
                    return Err(Failure::failed(format!(
                        "{}:{} took more than {} s",
                        config.host,
                        config.port,
                        options.timeout.as_secs()
                    )));
                }
            }
            *slot = None;
        }
        Err(Failure::failed("the syslog connection broke twice"))
    }
}

async fn connect(config: &SyslogConfig, options: &DeliveryOptions) -> Result<Stream, Failure> {
    let addresses = super::address::resolve(&config.host, config.port, options.allow_private).await?;
    let where_ = format!("{}:{}", config.host, config.port);
    let tcp = tokio::time::timeout(options.timeout, TcpStream::connect(&addresses[..]))
        .await
        .map_err(|_| Failure::failed(format!("connecting to {where_} took more than {} s", options.timeout.as_secs())))?
        .map_err(|e| Failure::failed(format!("cannot connect to {where_}: {e}")))?;
    tcp.set_nodelay(true).ok();
    if config.transport != "tls" {
        return Ok(Stream::Tcp(tcp));
    }
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_pem {
        Some(pem) => {
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| Failure::failed(format!("ca_pem: {e}")))?;
                roots.add(cert).map_err(|e| Failure::failed(format!("ca_pem: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::failed(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(config.host.clone())
        .map_err(|e| Failure::failed(format!("{}: {e}", config.host)))?;
    let stream =
        tokio::time::timeout(options.timeout, tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp))
            .await
            .map_err(|_| {
                Failure::failed(format!(
                    "the TLS handshake with {where_} took more than {} s",
                    options.timeout.as_secs()
                ))
            })?
            .map_err(|e| Failure::failed(format!("TLS with {where_}: {e}")))?;
    Ok(Stream::Tls(Box::new(stream)))
}
