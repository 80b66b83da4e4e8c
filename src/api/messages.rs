//! Received messages: the workers' hand-off, and reading messages and verdicts back.
use std::convert::Infallible;

use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, JsonObject};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::pagination::{Page, PageParams, time_param, uuid_param};
use super::responses::*;
use crate::scan;
use crate::store::{
    self,
    entity::message,
    messages::{Begun, Digest, Envelope, MessageFilter},
};

/// Media type of a hand-off body: one line of JSON (`HandoffEnvelope`), `\n`, then the raw message.
pub const HANDOFF_CONTENT_TYPE: &str = "application/vnd.mailsensor.handoff";
const MAX_ENVELOPE_LINE: usize = 1024 * 1024;
const CHUNK: usize = 256 * 1024;
/// Messages up to this size are scanned from memory; larger ones are read back chunk by chunk.
const SCAN_FROM_MEMORY: usize = 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EnvelopeView {
    #[schema(example = "192.0.2.10")]
    pub client_ip: String,
    #[schema(example = "mx1.example.com")]
    pub helo: String,
    /// `MAIL FROM` (empty for the null sender).
    #[schema(example = "alice@example.com")]
    pub mail_from: String,
    /// The accepted `RCPT TO` addresses.
    pub rcpt_to: Vec<String>,
    /// Whether the session used STARTTLS.
    pub tls: bool,
    /// The worker instance that received it.
    pub worker: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeadersView {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PartView {
    pub index: usize,
    pub name: Option<String>,
    #[schema(example = "application/pdf")]
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub md5: String,
    pub is_attachment: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DetectionView {
    /// `eicar_test_file`, `executable_content`, `risky_extension` or `mime_structure_too_complex`.
    #[schema(example = "eicar_test_file")]
    pub kind: String,
    pub description: String,
    /// Index of the part it was found in.
    pub part: Option<usize>,
    pub verdict: VerdictName,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerdictName {
    Clean,
    Suspicious,
    Malicious,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub sensor_id: Uuid,
    pub received_at: DateTime<Utc>,
    pub envelope: EnvelopeView,
    pub size: u64,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub headers: HeadersView,
    pub verdict: Option<VerdictName>,
    pub detections: Vec<DetectionView>,
    pub parts: Vec<PartView>,
}

impl From<message::Model> for MessageView {
    fn from(m: message::Model) -> Self {
        MessageView {
            id: m.id,
            sensor_id: m.sensor_id,
            received_at: m.received_at,
            envelope: EnvelopeView {
                client_ip: m.client_ip,
                helo: m.helo,
                mail_from: m.mail_from,
                rcpt_to: serde_json::from_value(m.rcpt_to).unwrap_or_default(),
                tls: m.tls,
                worker: m.worker,
            },
            size: u64::try_from(m.size).unwrap_or_default(),
            sha256: m.sha256,
            md5: m.md5,
            headers: HeadersView {
                from: m.header_from,
                to: m.header_to,
                subject: m.subject,
                message_id: m.message_id,
                date: m.date,
            },
            verdict: m.verdict.and_then(|v| serde_json::from_value(serde_json::Value::String(v)).ok()),
            detections: serde_json::from_value(m.detections).unwrap_or_default(),
            parts: serde_json::from_value(m.parts).unwrap_or_default(),
        }
    }
}

// Schema only: the envelope line is parsed field by field (`api::body`).
/// The first line of a hand-off body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct HandoffEnvelope {
    pub client_ip: String,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub tls: bool,
    pub worker: String,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

fn parse_envelope(line: &[u8]) -> Result<Envelope, ApiError> {
    let map = match serde_json::from_slice::<serde_json::Value>(line) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => {
            return Err(ApiError::BadRequest(
                "the first line of the body must be the envelope as a JSON object".into(),
            ));
        }
    };
    let mut f = Fields::new(JsonObject(map));
    let client_ip: Option<String> = f.required("client_ip");
    if let Some(ip) = &client_ip
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        f.error("/client_ip", "must be an IP address");
    }
    let helo: Option<String> = f.required("helo");
    let mail_from: Option<String> = f.required("mail_from");
    let rcpt_to = f.string_list("rcpt_to");
    if rcpt_to.as_ref().is_none_or(Vec::is_empty) && !f.has_error_at("rcpt_to") {
        f.error("/rcpt_to", "at least one accepted recipient is required");
    }
    let tls: Option<bool> = f.required("tls");
    let worker: Option<String> = f.required("worker");
    let envelope = (|| {
        Some(Envelope {
            client_ip: client_ip?,
            helo: helo?,
            mail_from: mail_from?,
            rcpt_to: rcpt_to?,
            tls: tls?,
            worker: worker?,
        })
    })();
    f.finish(envelope)
}

/// Hand a received message to the control plane (sensor token for that sensor only).
///
/// The body is one line of JSON with the envelope (`HandoffEnvelope`), a `\n`, then the raw message
/// exactly as received after the SMTP `DATA` (dot-unstuffed), streamed. The message is stored in chunks
/// as it arrives and scanned; it becomes visible only when complete. `201` means stored and scanned:
/// only then may the worker answer `250`. A repeated `Idempotency-Key` answers `200` with the message
/// already stored and stores nothing new.
#[utoipa::path(
    tag = "messages",
    params(
        ("sensor_id" = Uuid, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per message attempt: 1–128 of A-Z a-z 0-9 - _ . :"),
    ),
    request_body(content = HandoffEnvelope, content_type = "application/vnd.mailsensor.handoff",
        description = "First line: the envelope as JSON; then the raw message bytes"),
    responses(
        (status = 201, description = "Stored and scanned", body = MessageView, headers(("Location" = String, description = "URL of the message"))),
        (status = 200, description = "Already stored under this Idempotency-Key", body = MessageView),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
        (status = 413, description = "Larger than the platform cap", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/sensors/{sensor_id}/messages")]
pub async fn hand_off(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<Uuid>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let sensor = path.into_inner();
    let tenant = caller.own_sensor(&state, sensor, true).await?;
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with(HANDOFF_CONTENT_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!("send the message as {HANDOFF_CONTENT_TYPE}")));
    }
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if !valid_key(&key) {
        return Err(ApiError::validation([FieldError::parameter(
            "Idempotency-Key",
            "required: 1–128 of A-Z a-z 0-9 - _ . :",
        )]));
    }

    // The envelope line, then whatever of the message came with it.
    let mut head = Vec::new();
    let newline = loop {
        if let Some(pos) = head.iter().position(|b| *b == b'\n') {
            break pos;
        }
        if head.len() > MAX_ENVELOPE_LINE {
            return Err(ApiError::BadRequest("the envelope line is longer than 1 MiB".into()));
        }
        match payload.next().await {
            Some(Ok(bytes)) => head.extend_from_slice(&bytes),
            Some(Err(e)) => return Err(ApiError::BadRequest(format!("the upload broke off: {e}"))),
            None => return Err(ApiError::BadRequest("the body ended before the envelope line did".into())),
        }
    };
    let envelope = parse_envelope(&head[..newline])?;
    let id = match store::messages::begin(&state.db, tenant, sensor, &key, &envelope).await? {
        Begun::AlreadyStored(existing) => return Ok(HttpResponse::Ok().json(MessageView::from(*existing))),
        Begun::New(id) => id,
    };
    match receive(&state, id, head.split_off(newline + 1), payload).await {
        Ok(stored) => Ok(HttpResponse::Created()
            .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/messages/{}", stored.id)))
            .json(MessageView::from(stored))),
        Err(e) => {
            // Nothing partial is ever kept.
            if let Err(cleanup) = store::messages::abandon(&state.db, id).await {
                tracing::warn!(error = %cleanup, message = %id, "could not remove a broken upload");
            }
            Err(e)
        }
    }
}

/// Streams the rest of the body into chunks, then scans and publishes the message.
async fn receive(
    state: &AppState,
    id: Uuid,
    first: Vec<u8>,
    mut payload: web::Payload,
) -> Result<message::Model, ApiError> {
    let cap = state.max_message_bytes;
    let mut sha256 = Sha256::new();
    let mut md5 = Md5::new();
    let mut size: u64 = 0;
    let mut pending = first;
    let mut in_memory = Some(Vec::new());
    let mut seq = 0;
    let flush = async |data: Vec<u8>, seq: &mut i32| -> Result<(), ApiError> {
        store::messages::append_chunk(&state.db, id, *seq, data).await?;
        *seq += 1;
        Ok(())
    };
    loop {
        let next = if pending.len() >= CHUNK { None } else { payload.next().await };
        let done = match next {
            Some(Ok(bytes)) => {
                pending.extend_from_slice(&bytes);
                false
            }
            Some(Err(e)) => return Err(ApiError::BadRequest(format!("the upload broke off: {e}"))),
            None => pending.len() < CHUNK,
        };
        while pending.len() >= CHUNK || (done && !pending.is_empty()) {
            let take = pending.len().min(CHUNK);
            let rest = pending.split_off(take);
            let data = std::mem::replace(&mut pending, rest);
            size += data.len() as u64;
            if size > cap {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the message is larger than the platform cap of {cap} bytes"
                )));
            }
            sha256.update(&data);
            md5.update(&data);
            in_memory = in_memory.filter(|m: &Vec<u8>| m.len() + data.len() <= SCAN_FROM_MEMORY).map(|mut m| {
                m.extend_from_slice(&data);
                m
            });
            flush(data, &mut seq).await?;
        }
        if done {
            break;
        }
    }
    // Only a few messages are held whole and parsed at once, so memory stays bounded whatever the
    // number of concurrent uploads; parsing is CPU work, off the async threads.
    let permit = state.scans.clone().acquire_owned().await.map_err(|e| ApiError::Internal(e.into()))?;
    let raw = match in_memory {
        Some(raw) => raw,
        None => store::messages::read_raw(&state.db, id).await?,
    };
    let report = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        scan::scan(&raw)
    })
    .await
    .map_err(|e| ApiError::Internal(e.into()))?;
    metrics::counter!("mailsensor_messages_stored_total", "verdict" => report.verdict.as_str()).increment(1);
    let digest = Digest { size, sha256: hex::encode(sha256.finalize()), md5: hex::encode(md5.finalize()) };
    Ok(store::messages::finish(&state.db, id, digest, &report).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Only messages received by this sensor.
    pub sensor_id: Option<String>,
    /// `clean`, `suspicious` or `malicious`.
    pub verdict: Option<String>,
    /// Received at or after (RFC 3339).
    pub since: Option<String>,
    /// Received before (RFC 3339).
    pub until: Option<String>,
}

impl MessageQuery {
    fn filter(&self, errors: &mut Vec<FieldError>) -> MessageFilter {
        let since = time_param("since", self.since.as_deref(), errors);
        let until = time_param("until", self.until.as_deref(), errors);
        let sensor_id = uuid_param("sensor_id", self.sensor_id.as_deref(), errors);
        let verdict = self.verdict.as_deref().and_then(|v| match scan::Verdict::parse(v) {
            Some(v) => Some(v.as_str().to_owned()),
            None => {
                errors.push(FieldError::parameter("verdict", "must be clean, suspicious or malicious"));
                None
            }
        });
        MessageFilter { sensor_id, verdict, since, until }
    }
}

/// List received messages in scope with their verdicts, oldest first.
#[utoipa::path(
    tag = "messages",
    params(("tenant_id" = Uuid, Path), MessageQuery, PageParams),
    responses(
        (status = 200, body = Page<MessageView>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/messages")]
pub async fn list_messages(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<MessageQuery>,
    page: web::Query<PageParams>,
) -> Result<web::Json<Page<MessageView>>, ApiError> {
    let scope = caller.scope(&state, path.into_inner()).await?;
    caller.require(Permission::ReadMessages)?;
    let mut errors = Vec::new();
    let filter = query.filter(&mut errors);
    let page = page.parse(&mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let messages = store::messages::list(&state.db, scope, &filter, page).await?;
    Ok(web::Json(Page::from_store(messages, MessageView::from)))
}

/// Read one message: envelope, headers, parts and attachments with hashes, verdict and detections.
#[utoipa::path(
    tag = "messages",
    params(("tenant_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 200, body = MessageView), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/messages/{message_id}")]
pub async fn get_message(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<MessageView>, ApiError> {
    let (tenant, id) = path.into_inner();
    let scope = caller.scope(&state, tenant).await?;
    let message = store::messages::get(&state.db, scope, id).await?;
    caller.require(Permission::ReadMessages)?;
    Ok(web::Json(message.into()))
}

/// Download the raw message exactly as received (`message/rfc822`), streamed.
#[utoipa::path(
    tag = "messages",
    params(("tenant_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The raw message", content_type = "message/rfc822", body = String),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/messages/{message_id}/raw")]
pub async fn get_raw(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let scope = caller.scope(&state, tenant).await?;
    let message = store::messages::get(&state.db, scope, id).await?;
    caller.require(Permission::ReadMessages)?;
    let db = state.db.clone();
    let chunks = futures_util::stream::unfold(0, move |seq| {
        let db = db.clone();
        async move {
            match store::messages::chunk(&db, id, seq).await {
                Ok(Some(data)) => Some((Ok::<_, Infallible>(Bytes::from(data)), seq + 1)),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(error = %e, message = %id, "reading a stored message failed");
                    None
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("message/rfc822")
        .insert_header((header::CONTENT_LENGTH, message.size.to_string()))
        .streaming(chunks))
}
