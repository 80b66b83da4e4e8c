//! Received messages: reading them, their verdicts and their raw content back.
use std::convert::Infallible;

use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, http::header, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::pagination::{Page, PageParams, present, time_param, uuid_param};
use super::responses::*;
use crate::scan;
use crate::store::{self, entity::message, messages::MessageFilter};
use crate::wire::HandoffEnvelope;

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
    /// The engine that found it.
    #[serde(default = "builtin_engine")]
    pub engine: EngineName,
    /// `eicar_test_file`, `executable_content`, `risky_extension`, `mime_structure_too_complex`,
    /// what the archive bounds stopped (`archive_bomb`, `encrypted_archive`, `too_complex`),
    /// `yara_rule`, `signature` (ClamAV), `spam` or `phishing` (rspamd), or `too_large_for_engine`
    /// (the message is larger than a daemon accepts: that engine did not look at it).
    #[schema(example = "eicar_test_file")]
    pub kind: String,
    /// The YARA rule or ClamAV signature that matched, the rspamd action (`spam`) or symbol
    /// (`phishing`).
    #[serde(default)]
    pub rule: Option<String>,
    /// The YARA rule's namespace: the platform ruleset's file name (`yara_rule` only).
    #[serde(default)]
    pub namespace: Option<String>,
    /// The YARA rule's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    pub description: String,
    /// Index of the part it was found in.
    pub part: Option<usize>,
    /// Inside that part, the archive members leading to the object, outermost first (empty: the
    /// part itself).
    #[serde(default)]
    #[schema(example = json!(["invoice.zip", "eicar.com"]))]
    pub archive_path: Vec<String>,
    pub verdict: VerdictName,
    /// The retro-hunt that found it in the stored message (none: the message's own scan).
    #[serde(default)]
    pub retrohunt_id: Option<Uuid>,
}

fn builtin_engine() -> EngineName {
    EngineName::Builtin
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VerdictName {
    /// Stored, not scanned yet (the scan queue is durable: it will be).
    Pending,
    /// An engine could not look at it within the retry budget (about 70 minutes), and the others
    /// found nothing: not known to be clean. `engines` says which failed.
    Incomplete,
    Clean,
    /// rspamd would reject it or mark it as spam, or a rule with severity `spam` matched; nothing
    /// worse.
    Spam,
    Suspicious,
    Malicious,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub sensor_id: Uuid,
    pub received_at: DateTime<Utc>,
    /// The envelope as the worker handed it off.
    pub envelope: HandoffEnvelope,
    pub size: u64,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub headers: HeadersView,
    pub verdict: Option<VerdictName>,
    /// When the verdict was reached (`null` while pending).
    pub scanned_at: Option<DateTime<Utc>>,
    pub detections: Vec<DetectionView>,
    pub parts: Vec<PartView>,
    /// How each engine's look at it went in the current result.
    pub engines: Vec<EngineRunView>,
    /// The results of earlier scans, oldest first, kept when the message was rescanned (the last 20).
    pub earlier_scans: Vec<EarlierScanView>,
}

/// One engine's look at a message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EngineRunView {
    pub engine: EngineName,
    pub status: EngineStatusName,
    #[schema(example = "yara-x 1.22.1")]
    pub version: String,
    /// The rules or signatures it ran (none for the built-in checks).
    #[schema(example = "12 rules, sha256 3f2a9c81d0e4")]
    pub database: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Time taken, in milliseconds.
    pub millis: u64,
    /// rspamd's score, action and symbols (`rspamd` only).
    #[serde(default)]
    pub spam: Option<SpamCheckView>,
}

/// What rspamd made of a message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpamCheckView {
    #[schema(example = 11.85)]
    pub score: f64,
    /// The score from which rspamd's action is `reject`.
    #[schema(example = 15.0)]
    pub required_score: f64,
    /// `no action`, `greylist`, `add header`, `rewrite subject`, `soft reject` or `reject`.
    #[schema(example = "add header")]
    pub action: String,
    /// The symbols that fired, highest score first (at most 50).
    pub symbols: Vec<SpamSymbolView>,
}

/// One rspamd symbol that fired.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SpamSymbolView {
    #[schema(example = "PHISHING")]
    pub name: String,
    pub score: f64,
}

/// A detection engine.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EngineName {
    Builtin,
    Yara,
    /// ClamAV, through clamd.
    Clamav,
    Rspamd,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatusName {
    Ok,
    Error,
    Timeout,
}

/// The result of an earlier scan of a message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EarlierScanView {
    pub scanned_at: Option<DateTime<Utc>>,
    pub verdict: VerdictName,
    pub detections: Vec<DetectionView>,
    #[serde(default)]
    pub engines: Vec<EngineRunView>,
}

impl From<message::Model> for MessageView {
    fn from(m: message::Model) -> Self {
        MessageView {
            id: m.id,
            sensor_id: m.sensor_id,
            received_at: m.received_at,
            envelope: HandoffEnvelope {
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
            scanned_at: m.scanned_at,
            detections: serde_json::from_value(m.detections).unwrap_or_default(),
            parts: serde_json::from_value(m.parts).unwrap_or_default(),
            engines: serde_json::from_value(m.engines).unwrap_or_default(),
            earlier_scans: serde_json::from_value(m.earlier_scans).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// Only messages received by this sensor.
    #[param(value_type = Option<Uuid>)]
    pub sensor_id: Option<String>,
    /// Only messages with this verdict.
    #[param(value_type = Option<VerdictName>)]
    pub verdict: Option<String>,
    /// Only messages with a detection by this engine.
    #[param(value_type = Option<EngineName>)]
    pub engine: Option<String>,
    /// Only messages with a detection of this rule: a YARA rule's name (`html_smuggling`), or a
    /// built-in check's kind (`eicar_test_file`, `archive_bomb`, …). With `engine`, both on the same
    /// detection.
    #[param(example = "html_smuggling", max_length = 128)]
    pub rule: Option<String>,
    /// Received at or after (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub since: Option<String>,
    /// Received before (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub until: Option<String>,
}

impl MessageQuery {
    fn filter(&self, errors: &mut Vec<FieldError>) -> MessageFilter {
        let since = time_param("since", &self.since, errors);
        let until = time_param("until", &self.until, errors);
        let sensor_id = uuid_param("sensor_id", &self.sensor_id, errors);
        let verdict = self.verdict.as_deref().and_then(|v| match scan::Verdict::parse(v) {
            Some(v) => Some(v.as_str().to_owned()),
            None if v.eq_ignore_ascii_case(store::messages::PENDING) => Some(store::messages::PENDING.to_owned()),
            None if v.eq_ignore_ascii_case(store::messages::INCOMPLETE_VERDICT) => {
                Some(store::messages::INCOMPLETE_VERDICT.to_owned())
            }
            None => {
                errors.push(FieldError::parameter(
                    "verdict",
                    "must be pending, incomplete, clean, spam, suspicious or malicious",
                ));
                None
            }
        });
        let engine = self.engine.as_deref().and_then(|e| match scan::ENGINES.contains(&e) {
            true => Some(e.to_owned()),
            false => {
                errors.push(FieldError::parameter("engine", "must be builtin, yara, clamav or rspamd"));
                None
            }
        });
        // Free text: empty is no filter.
        let rule = present(&self.rule).and_then(|r| match r.chars().count() {
            ..=128 => Some(r.to_owned()),
            _ => {
                errors.push(FieldError::parameter("rule", "must be a rule's name of at most 128 characters"));
                None
            }
        });
        MessageFilter { sensor_id, verdict, engine, rule, since, until }
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
    let (_, message) = caller
        .reach(&state, tenant, Permission::ReadMessages, async |s| store::messages::get(&state.db, s, id).await)
        .await?;
    Ok(web::Json(message.into()))
}

/// Download the raw message exactly as received (`message/rfc822`), streamed.
#[utoipa::path(
    operation_id = "get_raw_message",
    tag = "messages",
    params(("tenant_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 200, description = "The raw message, byte for byte", content_type = "message/rfc822", body = Vec<u8>),
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
    let (_, message) = caller
        .reach(&state, tenant, Permission::ReadMessages, async |s| store::messages::get(&state.db, s, id).await)
        .await?;
    let db = state.db.clone();
    let chunks = futures_util::stream::unfold(0, move |seq| {
        let db = db.clone();
        async move {
            match store::messages::chunk(&db, tenant, id, seq).await {
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

/// Scan a stored message again with the engines and rules of the moment (senior security officer,
/// in scope). It reads `pending` until rescanned; its current result moves to `earlier_scans`. A
/// message still pending is answered as it is. Audited as `message.rescan`.
#[utoipa::path(
    operation_id = "rescan_message",
    tag = "messages",
    params(("tenant_id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses(
        (status = 202, description = "Back in the scan queue", body = MessageView),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/messages/{message_id}/rescan")]
pub async fn rescan_message(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::Rescan, async |s| store::messages::get(&state.db, s, id).await)
        .await?;
    let message = store::messages::rescan(&state.db, scope, id, &caller.actor()).await?;
    state.intake.stored();
    Ok(HttpResponse::Accepted().json(MessageView::from(message)))
}
