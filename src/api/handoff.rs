//! The workers' hand-off: a received message streamed in, stored in chunks, scanned and published.
use actix_web::{HttpRequest, HttpResponse, http::header, post, web};
use futures_util::StreamExt;
use md5::Md5;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::Token;
use super::error::{ApiError, FieldError};
use super::messages::MessageView;
use super::responses::*;
use crate::store::{
    self,
    messages::{Arrival, Begun, Content, Digest, Finished},
};
use crate::wire::{HANDOFF_CONTENT_TYPE, HandoffEnvelope};

const MAX_ENVELOPE_LINE: usize = 1024 * 1024;
const CHUNK: usize = 256 * 1024;

impl FromFields for HandoffEnvelope {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let client_ip: Option<String> = f.required("client_ip");
        if let Some(ip) = &client_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            f.error("/client_ip", "must be an IP address");
        }
        let helo = f.required("helo");
        let mail_from = f.required("mail_from");
        let rcpt_to = f.string_list("rcpt_to");
        if rcpt_to.as_ref().is_none_or(Vec::is_empty) && !f.has_error_at("rcpt_to") {
            f.error("/rcpt_to", "at least one accepted recipient is required");
        }
        let tls = f.required("tls");
        let worker = f.required("worker");
        Some(HandoffEnvelope {
            client_ip: client_ip?,
            helo: helo?,
            mail_from: mail_from?,
            rcpt_to: rcpt_to?,
            tls: tls?,
            worker: worker?,
        })
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The hand-off's media type and its `Idempotency-Key`.
fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with(HANDOFF_CONTENT_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!("send the message as {HANDOFF_CONTENT_TYPE}")));
    }
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !valid_key(key) {
        return Err(ApiError::validation([FieldError::parameter(
            "Idempotency-Key",
            "required: 1–128 of A-Z a-z 0-9 - _ . :",
        )]));
    }
    Ok(key.to_owned())
}

/// The sender went away (or the worker gave up on the message) before the body ended.
fn broke_off(e: actix_web::error::PayloadError) -> ApiError {
    use actix_web::error::PayloadError;
    match e {
        PayloadError::Incomplete(_) => ApiError::BadRequest("the upload broke off before its end".into()),
        other => ApiError::BadRequest(format!("the upload broke off: {other}")),
    }
}

/// The envelope line, and whatever of the message came with it.
async fn read_envelope(payload: &mut web::Payload) -> Result<(HandoffEnvelope, Vec<u8>), ApiError> {
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
            Some(Err(e)) => return Err(broke_off(e)),
            None => return Err(ApiError::BadRequest("the body ended before the envelope line did".into())),
        }
    };
    let rest = head.split_off(newline + 1);
    let envelope = match serde_json::from_slice::<serde_json::Value>(&head[..newline]) {
        Ok(serde_json::Value::Object(map)) => JsonObject(map).parse()?,
        _ => {
            return Err(ApiError::BadRequest(
                "the first line of the body must be the envelope as a JSON object".into(),
            ));
        }
    };
    Ok((envelope, rest))
}

/// Hand a received message to the control plane (sensor token for that sensor only).
///
/// The body is one line of JSON with the envelope (`HandoffEnvelope`), a `\n`, then the raw message
/// exactly as received after the SMTP `DATA` (dot-unstuffed), streamed. A message up to 256 KiB is
/// stored in one transaction; a larger one in chunks as it arrives, visible only when complete.
/// `201` means durably stored: only then may the worker answer `250`. Scanning follows from a
/// durable queue: the verdict reads `pending` until then. A repeated `Idempotency-Key` answers `200` with the message
/// already stored and stores nothing new; so does a retry of a message stored within the dedup
/// window (default 24 h): the same sensor, sender, set of recipients and bytes, whatever the key, the
/// worker or the client address — so a sender that never heard the first `250` gets the same id.
#[utoipa::path(
    operation_id = "hand_off_message",
    tag = "workers",
    params(
        ("sensor_id" = Uuid, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per message attempt: 1–128 of A-Z a-z 0-9 - _ . :"),
    ),
    request_body(content = Vec<u8>, content_type = "application/vnd.mailsensor.handoff",
        description = "First line: the envelope (schema `HandoffEnvelope`) as one line of JSON; then the raw message bytes"),
    responses(
        (status = 201, description = "Stored (verdict `pending` until scanned)", body = MessageView, headers(("Location" = String, description = "URL of the message"))),
        (status = 200, description = "Already stored (this Idempotency-Key, or the same message within the dedup window)", body = MessageView),
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
    token: Token,
    req: HttpRequest,
    path: web::Path<Uuid>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let _receiving = state.intake.receiving();
    let sensor = path.into_inner();
    let tenant = token.own_sensor(&state, sensor).await?;
    let key = idempotency_key(&req)?;
    let (envelope, rest) = read_envelope(&mut payload).await?;
    let arrival = Arrival { tenant, sensor, key: &key, envelope: &envelope };
    let finished = match receive(&state, &arrival, rest, payload).await {
        Err(ApiError::NotFound("sensor")) => Err(super::caller::sensor_gone()),
        other => other,
    };
    match finished? {
        Finished::Stored(stored) => {
            metrics::counter!("mailsensor_messages_stored_total").increment(1);
            state.intake.stored();
            Ok(HttpResponse::Created()
                .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/messages/{}", stored.id)))
                .json(MessageView::from(stored)))
        }
        Finished::Duplicate(earlier) => {
            metrics::counter!("mailsensor_messages_deduplicated_total").increment(1);
            Ok(HttpResponse::Ok().json(MessageView::from(earlier)))
        }
    }
}

/// Reads the message: one that ends within the first chunk is stored whole in one transaction;
/// a larger one streams into chunks under an `incomplete` row, removed again if the upload fails.
async fn receive(
    state: &AppState,
    arrival: &Arrival<'_>,
    first: Vec<u8>,
    mut payload: web::Payload,
) -> Result<Finished, ApiError> {
    let cap = state.max_message_bytes;
    let too_large = || ApiError::PayloadTooLarge(format!("the message is larger than the platform cap of {cap} bytes"));
    let mut sha256 = Sha256::new();
    let mut md5 = Md5::new();
    let mut pending = first;
    // Up to one chunk in memory: enough for most mail, which then costs one commit.
    while pending.len() <= CHUNK {
        match payload.next().await {
            Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
            Some(Err(e)) => return Err(broke_off(e)),
            None => {
                if pending.len() as u64 > cap {
                    return Err(too_large());
                }
                sha256.update(&pending);
                md5.update(&pending);
                let content = content_of(state, arrival, pending.len() as u64, sha256, md5);
                return Ok(store::messages::store_whole(&state.db, arrival, pending, content).await?);
            }
        }
    }
    let id = match store::messages::begin(&state.db, arrival).await? {
        Begun::New(id) => id,
        Begun::AlreadyStored(stored) => return Ok(Finished::Duplicate(*stored)),
    };
    let streamed = async {
        let mut size: u64 = 0;
        let mut seq = 0;
        let mut done = false;
        while !done {
            if pending.len() < CHUNK {
                match payload.next().await {
                    Some(Ok(bytes)) => {
                        pending.extend_from_slice(&bytes);
                        continue;
                    }
                    Some(Err(e)) => return Err(broke_off(e)),
                    None => done = true,
                }
            }
            while pending.len() >= CHUNK || (done && !pending.is_empty()) {
                let rest = pending.split_off(pending.len().min(CHUNK));
                let data = std::mem::replace(&mut pending, rest);
                size += data.len() as u64;
                if size > cap {
                    return Err(too_large());
                }
                sha256.update(&data);
                md5.update(&data);
                store::messages::append_chunk(&state.db, arrival.tenant, id, seq, data).await?;
                seq += 1;
            }
        }
        let content = content_of(state, arrival, size, sha256, md5);
        Ok(store::messages::finish(&state.db, arrival, id, content).await?)
    };
    let outcome = streamed.await;
    if outcome.is_err() {
        // Nothing partial is ever kept.
        if let Err(cleanup) = store::messages::abandon(&state.db, arrival.tenant, id).await {
            tracing::warn!(error = %cleanup, message = %id, "could not remove a broken upload");
        }
    }
    outcome
}

/// The digest of what arrived, and the key a retry of it would have within the dedup window.
fn content_of(state: &AppState, arrival: &Arrival<'_>, size: u64, sha256: Sha256, md5: Md5) -> Content {
    let digest = Digest { size, sha256: hex::encode(sha256.finalize()), md5: hex::encode(md5.finalize()) };
    let dedup = state.dedup_window.map(|window| {
        let since = chrono::Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(1));
        (store::messages::content_key(&digest.sha256, arrival.envelope), since)
    });
    Content { digest, dedup }
}
