//! A sensor's SMTP integration settings: read, replace, patch, and the policy explainer.
use std::net::IpAddr;

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, get, http::header, patch, post, put, web};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, JsonObject};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::responses::*;
use crate::policy::{self, SettingsDraft, SizeLimit, SizeLimitDraft, SizeUnit, SmtpSettings};
use crate::store::{self, TenantScope, settings::SettingsRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SizeUnitName {
    /// 1,024 bytes
    KB,
    /// 1,048,576 bytes
    MB,
    /// 1,073,741,824 bytes
    GB,
}

/// `{"unlimited": true}` (up to the platform cap), or `{"unlimited": false, "value": N, "unit": "MB"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSizeLimit {
    pub unlimited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, example = 25)]
    pub value: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<SizeUnitName>,
}

impl From<SizeLimit> for MessageSizeLimit {
    fn from(limit: SizeLimit) -> Self {
        match limit {
            SizeLimit::Unlimited => MessageSizeLimit { unlimited: true, value: None, unit: None },
            SizeLimit::Limited { value, unit } => MessageSizeLimit {
                unlimited: false,
                value: Some(value),
                unit: Some(match unit {
                    SizeUnit::KB => SizeUnitName::KB,
                    SizeUnit::MB => SizeUnitName::MB,
                    SizeUnit::GB => SizeUnitName::GB,
                }),
            },
        }
    }
}

/// SMTP integration settings of one sensor (ARCHITECTURE §4 gives the exact semantics).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "enabled": true,
    "destination_domains": ["example.com", "!hr.example.com"],
    "clients": ["192.0.2.0/24", "!192.0.2.7", "2001:db8::/32"],
    "message_size_limit": {"unlimited": false, "value": 25, "unit": "MB"},
    "max_message_bytes": 26214400,
    "revision": 7,
    "updated_at": "2026-11-28T10:00:00Z",
    "updated_by": "alice"
}))]
pub struct SmtpIntegration {
    /// `false`: workers refuse all mail for this sensor (421 4.3.2).
    pub enabled: bool,
    /// Recipient domains; `!domain` excludes. A domain covers its subdomains; the most specific entry wins. Empty = any recipient.
    pub destination_domains: Vec<String>,
    /// Client IPs/CIDRs; `!entry` excludes. Longest prefix wins. With no positive entry: any client if domains are set, else the worker's own subnet.
    pub clients: Vec<String>,
    pub message_size_limit: MessageSizeLimit,
    /// The size limit in bytes (read-only; "unlimited" means the platform cap).
    #[schema(read_only)]
    pub max_message_bytes: u64,
    /// Increases by one with every change; the `ETag` is this number in quotes.
    #[schema(read_only)]
    pub revision: i64,
    #[schema(read_only)]
    pub updated_at: DateTime<Utc>,
    #[schema(read_only)]
    pub updated_by: String,
    /// Present when the write asked to wait (`?wait=applied`): how far the change has reached the sensor's workers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub rollout: Option<Rollout>,
}

/// How many live workers of the sensor have applied a revision.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rollout {
    /// The settings revision waited for.
    pub settings_revision: i64,
    /// Live workers (heard from within the last 30 s).
    pub workers: usize,
    /// Of those, how many report this revision (or a later one) applied.
    pub applied: usize,
    /// Instance ids of live workers that had not applied it when the wait ended.
    pub pending: Vec<String>,
    /// Every live worker applied it before the timeout.
    pub complete: bool,
}

impl SmtpIntegration {
    fn new(record: &SettingsRecord, cap: u64) -> Self {
        let s = &record.settings;
        SmtpIntegration {
            enabled: s.enabled,
            destination_domains: s.destination_domains.entries().to_vec(),
            clients: s.clients.entries().to_vec(),
            message_size_limit: s.message_size_limit.into(),
            max_message_bytes: s.max_message_bytes(cap),
            revision: record.revision,
            updated_at: record.updated_at,
            updated_by: record.updated_by.clone(),
            rollout: None,
        }
    }
}

/// The full settings for `PUT`. Read-only fields from a `GET` may be sent back; they are ignored.
// Schema only: bodies are parsed field by field (`api::body`) so every bad field is reported.
#[derive(Debug, ToSchema)]
#[schema(example = json!({
    "enabled": true,
    "destination_domains": ["example.com", "!hr.example.com"],
    "clients": ["192.0.2.0/24", "!192.0.2.7"],
    "message_size_limit": {"unlimited": false, "value": 25, "unit": "MB"}
}))]
#[allow(dead_code)]
pub struct SmtpIntegrationInput {
    pub enabled: bool,
    pub destination_domains: Vec<String>,
    pub clients: Vec<String>,
    pub message_size_limit: MessageSizeLimit,
}

/// A JSON merge patch (RFC 7396) of the settings: fields left out keep their value; a list given replaces the whole list.
// Schema only: bodies are parsed field by field (`api::body`) so every bad field is reported.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"destination_domains": ["example.com"], "message_size_limit": {"value": 10, "unit": "MB"}}))]
#[allow(dead_code)]
pub struct SmtpIntegrationPatch {
    pub enabled: Option<bool>,
    pub destination_domains: Option<Vec<String>>,
    pub clients: Option<Vec<String>>,
    pub message_size_limit: Option<MessageSizeLimit>,
}

const READ_ONLY: &[&str] = &["max_message_bytes", "revision", "updated_at", "updated_by", "rollout"];

/// `?wait=applied&timeout=5`: answer only once every live worker has applied the write, or the timeout passed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// `applied`: wait until every live worker of the sensor has applied the new revision.
    #[param(example = "applied")]
    pub wait: Option<String>,
    /// Seconds to wait at most, 1–60 (default 10); `5s` is accepted too.
    #[param(example = "5")]
    pub timeout: Option<String>,
}

impl WaitParams {
    fn parse(&self) -> Result<Option<Duration>, ApiError> {
        let mut errors = Vec::new();
        let wait = match self.wait.as_deref() {
            None => false,
            Some("applied") => true,
            Some(_) => {
                errors.push(FieldError::parameter("wait", "the only value is `applied`"));
                false
            }
        };
        let timeout = match self.timeout.as_deref().map(|t| t.trim_end_matches('s').parse::<u64>()) {
            None => Duration::from_secs(10),
            Some(Ok(n)) if (1..=60).contains(&n) => Duration::from_secs(n),
            Some(_) => {
                errors.push(FieldError::parameter("timeout", "must be 1 to 60 seconds"));
                Duration::ZERO
            }
        };
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(wait.then_some(timeout))
    }
}

/// Polls the fleet until every live worker reports `revision` applied, or `timeout` passes.
async fn wait_applied(
    state: &AppState,
    scope: TenantScope,
    sensor: Uuid,
    revision: i64,
    timeout: Duration,
) -> Result<Rollout, ApiError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let workers = store::workers::list(&state.db, scope, sensor).await?;
        let live: Vec<_> = workers.iter().filter(|w| super::config_stream::is_live(w)).collect();
        let pending: Vec<String> = live
            .iter()
            .filter(|w| w.applied_settings_revision.unwrap_or(0) < revision)
            .map(|w| w.instance_id.clone())
            .collect();
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Rollout {
                settings_revision: revision,
                workers: live.len(),
                applied: live.len() - pending.len(),
                complete: pending.is_empty(),
                pending,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answers a settings write, after waiting for the workers when asked to.
async fn written(
    state: &AppState,
    scope: TenantScope,
    record: SettingsRecord,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    let mut body = SmtpIntegration::new(&record, state.max_message_bytes);
    if let Some(timeout) = wait {
        body.rollout = Some(wait_applied(state, scope, record.sensor_id, record.revision, timeout).await?);
    }
    Ok(HttpResponse::Ok().insert_header((header::ETAG, record.etag())).json(body))
}

fn size_draft(limit: SizeLimit) -> SizeLimitDraft {
    let MessageSizeLimit { unlimited, value, unit } = limit.into();
    SizeLimitDraft {
        unlimited: Some(unlimited),
        value: value.and_then(|v| i64::try_from(v).ok()),
        unit: unit.map(|u| format!("{u:?}")),
    }
}

/// Builds the settings from a body (PUT: `base` None, every field required; PATCH: fields left
/// out come from `base`), reporting type errors and policy violations together.
fn parse_settings(body: JsonObject, base: Option<&SmtpSettings>, cap: u64) -> Result<SmtpSettings, ApiError> {
    let mut f = Fields::new(body).ignoring(READ_ONLY);
    let enabled = match base {
        None => f.required::<bool>("enabled"),
        Some(b) => f.optional("enabled").or(Some(b.enabled)),
    };
    let list = |f: &mut Fields, name: &str, from_base: Option<Vec<String>>| match f.string_list(name) {
        Some(v) => Some(v),
        None if from_base.is_some() || f.has_error_at(name) => from_base,
        None => {
            let pointer = f.pointer(name);
            f.error(pointer, "this field is required");
            None
        }
    };
    let domains = list(&mut f, "destination_domains", base.map(|b| b.destination_domains.entries().to_vec()));
    let clients = list(&mut f, "clients", base.map(|b| b.clients.entries().to_vec()));
    let base_size = base.map(|b| size_draft(b.message_size_limit));
    let size = f
        .object("message_size_limit", |g| {
            let given = SizeLimitDraft {
                unlimited: g.optional("unlimited"),
                value: g.optional("value"),
                unit: g.optional("unit"),
            };
            match &base_size {
                // Merge patch: a value or unit given alone means "limited", the rest comes from before.
                Some(before) => {
                    let unlimited = given
                        .unlimited
                        .or((given.value.is_some() || given.unit.is_some()).then_some(false))
                        .or(before.unlimited);
                    let keep = unlimited == Some(false) && before.unlimited == Some(false);
                    SizeLimitDraft {
                        unlimited,
                        value: given.value.or(if keep { before.value } else { None }),
                        unit: given.unit.or(if keep { before.unit.clone() } else { None }),
                    }
                }
                None => given,
            }
        })
        .or_else(|| base_size.clone());
    if size.is_none() && base.is_none() && !f.has_error_at("message_size_limit") {
        let pointer = f.pointer("message_size_limit");
        f.error(pointer, "this field is required");
    }
    let draft = SettingsDraft {
        enabled: enabled.unwrap_or_default(),
        destination_domains: domains.unwrap_or_default(),
        clients: clients.unwrap_or_default(),
        message_size_limit: size.unwrap_or_default(),
    };
    let checked = SmtpSettings::parse(&draft, cap);
    let violations: Vec<FieldError> = match &checked {
        Ok(_) => Vec::new(),
        // A field that was already the wrong JSON type would only repeat itself here.
        Err(v) => v.iter().filter(|v| !f.has_error_under(&v.pointer)).cloned().map(FieldError::from).collect(),
    };
    f.finish_with(violations)?;
    checked.map_err(ApiError::validation)
}

/// `If-Match`: `None` = write whatever is current; `Some(rev)` = only over that revision.
fn if_match(req: &HttpRequest, current: i64) -> Option<i64> {
    let value = req.headers().get(header::IF_MATCH)?.to_str().unwrap_or("");
    if value.trim() == "*" {
        return None;
    }
    let matches = value
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|tag| tag.parse::<i64>() == Ok(current));
    Some(if matches { current } else { -1 })
}

fn respond(record: &SettingsRecord, cap: u64) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::ETAG, record.etag())).json(SmtpIntegration::new(record, cap))
}

async fn load(
    state: &AppState,
    caller: &Caller,
    tenant: Uuid,
    sensor: Uuid,
    needs: Permission,
) -> Result<(TenantScope, SettingsRecord), ApiError> {
    let scope = caller.scope(state, tenant).await?;
    let record = store::settings::get(&state.db, scope, sensor).await?;
    caller.require(needs)?;
    Ok((scope, record))
}

/// Read a sensor's SMTP integration settings (with `ETag`).
#[utoipa::path(
    tag = "smtp-integration",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "Current revision, for If-Match"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration")]
pub async fn get_settings(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let (_, record) = load(&state, &caller, tenant, sensor, Permission::ReadSettings).await?;
    Ok(respond(&record, state.max_message_bytes))
}

/// Replace a sensor's SMTP integration settings. Every bad entry is reported in one 422.
#[utoipa::path(
    tag = "smtp-integration",
    params(
        ("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag from a previous read; the write fails with 412 if the settings changed since"),
        WaitParams,
    ),
    request_body = SmtpIntegrationInput,
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "New revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[put("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration")]
pub async fn put_settings(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    wait: web::Query<WaitParams>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let wait = wait.parse()?;
    let (scope, current) = load(&state, &caller, tenant, sensor, Permission::WriteSettings).await?;
    let expected = if_match(&req, current.revision);
    let new = parse_settings(body, None, state.max_message_bytes)?;
    let record = store::settings::replace(&state.db, scope, sensor, &new, expected, None, &caller.actor()).await?;
    written(&state, scope, record, wait).await
}

/// Change some of a sensor's SMTP integration settings (JSON merge patch).
#[utoipa::path(
    tag = "smtp-integration",
    params(
        ("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag from a previous read; the write fails with 412 if the settings changed since"),
        WaitParams,
    ),
    request_body(content = SmtpIntegrationPatch, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "New revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration")]
pub async fn patch_settings(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    wait: web::Query<WaitParams>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let wait = wait.parse()?;
    let mut attempts = 0;
    loop {
        let (scope, current) = load(&state, &caller, tenant, sensor, Permission::WriteSettings).await?;
        let expected = if_match(&req, current.revision);
        let new = parse_settings(JsonObject(body.0.clone()), Some(&current.settings), state.max_message_bytes)?;
        // Without If-Match the patch applies to whatever is current: on a concurrent write, re-read and re-apply.
        match store::settings::replace(
            &state.db,
            scope,
            sensor,
            &new,
            expected.or(Some(current.revision)),
            None,
            &caller.actor(),
        )
        .await
        {
            Err(store::StoreError::Stale { .. }) if expected.is_none() && attempts < 3 => attempts += 1,
            result => return written(&state, scope, result?, wait).await,
        }
    }
}

/// What to try against the settings.
// Schema only: bodies are parsed field by field (`api::body`) so every bad field is reported.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"client_ip": "192.0.2.10", "recipients": ["alice@example.com", "bob@hr.example.com"], "size": 1048576, "sensor_network": "192.0.2.0/24"}))]
#[allow(dead_code)]
pub struct EvaluateRequest {
    /// The connecting mail server's address.
    pub client_ip: String,
    /// Recipients as given in `RCPT TO`.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Message size in bytes, as in `MAIL FROM ... SIZE=`.
    pub size: Option<u64>,
    /// Network of the worker's interface that receives the connection (e.g. `192.0.2.25/24`); needed only when the blank-field rule "same subnet as the sensor" applies.
    pub sensor_network: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Accept,
    Reject,
}

impl From<policy::Decision> for Decision {
    fn from(d: policy::Decision) -> Self {
        match d {
            policy::Decision::Accept => Decision::Accept,
            policy::Decision::Reject => Decision::Reject,
        }
    }
}

/// The exact SMTP reply a worker gives at that stage.
#[derive(Debug, Serialize, ToSchema)]
pub struct SmtpReply {
    #[schema(example = 550)]
    pub code: u16,
    #[schema(example = "5.7.1")]
    pub enhanced_code: String,
    #[schema(example = "550 5.7.1 <bob@hr.example.com>: recipient domain not accepted by this sensor")]
    pub line: String,
}

impl From<&policy::Reply> for SmtpReply {
    fn from(r: &policy::Reply) -> Self {
        SmtpReply { code: r.code, enhanced_code: r.enhanced.to_owned(), line: r.line() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectStage {
    pub decision: Decision,
    /// `disabled`, `entry`, `no_matching_entry`, `any_client_because_domains_set`, `sensor_subnet` or `outside_sensor_subnet`.
    #[schema(example = "entry")]
    pub rule: String,
    /// The clients entry that decided, when one did.
    pub matched_entry: Option<String>,
    pub reply: SmtpReply,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientStage {
    pub recipient: String,
    pub decision: Decision,
    /// `entry`, `no_positive_entries`, `no_matching_entry` or `not_a_domain`.
    #[schema(example = "entry")]
    pub rule: String,
    /// The destination-domains entry that decided, when one did.
    pub matched_entry: Option<String>,
    pub reply: SmtpReply,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SizeStage {
    pub size: u64,
    pub max_message_bytes: u64,
    pub decision: Decision,
    pub reply: SmtpReply,
}

/// Every stage is evaluated, even after one rejects, so the whole picture is visible.
#[derive(Debug, Serialize, ToSchema)]
pub struct Evaluation {
    /// Whether a message with this envelope would be accepted.
    pub accepted: bool,
    /// The settings revision evaluated.
    pub revision: i64,
    pub connect: ConnectStage,
    pub recipients: Vec<RecipientStage>,
    pub size: Option<SizeStage>,
}

fn rule_name(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// An evaluate request, checked.
struct ProbeInput {
    client_ip: IpAddr,
    recipients: Vec<String>,
    size: Option<u64>,
    sensor_network: Option<IpNet>,
}

fn parse_probe(body: JsonObject) -> Result<ProbeInput, ApiError> {
    let mut f = Fields::new(body);
    let ip_text: Option<String> = f.required("client_ip");
    let client_ip = ip_text.and_then(|t| match t.trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            f.error("/client_ip", format!("\"{t}\" is not an IPv4 or IPv6 address"));
            None
        }
    });
    let recipients = f.string_list("recipients").unwrap_or_default();
    let size: Option<u64> = f.optional("size");
    let network_text: Option<String> = f.optional("sensor_network");
    let sensor_network = network_text.and_then(|t| {
        let t = t.trim();
        let parsed = t.parse::<IpNet>().or_else(|_| t.parse::<IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                f.error("/sensor_network", format!("\"{t}\" is not a network such as 192.0.2.0/24"));
                None
            }
        }
    });
    let client_ip = f.finish(client_ip)?;
    Ok(ProbeInput { client_ip, recipients, size, sensor_network })
}

/// Explain what a worker would do with a connection and envelope under the current settings: the decision at each stage, the entry or blank-field rule that decided, and the exact SMTP reply.
#[utoipa::path(
    tag = "smtp-integration",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path)),
    request_body = EvaluateRequest,
    responses(
        (status = 200, body = Evaluation), (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/evaluate")]
pub async fn evaluate(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<web::Json<Evaluation>, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let (_, record) = load(&state, &caller, tenant, sensor, Permission::ReadSettings).await?;
    let ProbeInput { client_ip, recipients, size, sensor_network } = parse_probe(body)?;
    let settings = &record.settings;
    let subnet_rule_applies =
        settings.enabled && !settings.clients.has_positive_entry() && settings.destination_domains.is_empty();
    if subnet_rule_applies && sensor_network.is_none() {
        return Err(ApiError::validation([FieldError::body(
            "/sensor_network",
            "required here: with no client entries and no destination domains, only clients in the worker's own subnet may connect",
        )]));
    }
    let probe = policy::Probe { client_ip, recipients: &recipients, size, sensor_network };
    let result = policy::evaluate(settings, &probe, state.max_message_bytes);
    Ok(web::Json(Evaluation {
        accepted: result.accepted,
        revision: record.revision,
        connect: ConnectStage {
            decision: result.connect.decision.into(),
            rule: rule_name(result.connect.rule),
            matched_entry: result.connect.matched_entry.clone(),
            reply: (&result.connect.reply).into(),
        },
        recipients: result
            .recipients
            .iter()
            .map(|r| RecipientStage {
                recipient: r.recipient.clone(),
                decision: r.decision.into(),
                rule: rule_name(r.rule),
                matched_entry: r.matched_entry.clone(),
                reply: (&r.reply).into(),
            })
            .collect(),
        size: result.size.as_ref().map(|s| SizeStage {
            size: s.size,
            max_message_bytes: s.max_message_bytes,
            decision: s.decision.into(),
            reply: (&s.reply).into(),
        }),
    }))
}

/// One revision of a sensor's settings history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsRevision {
    pub revision: i64,
    pub enabled: bool,
    pub destination_domains: Vec<String>,
    pub clients: Vec<String>,
    pub message_size_limit: MessageSizeLimit,
    pub max_message_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The revision this one restored, if it was written by a restore.
    pub restored_from: Option<i64>,
}

impl SettingsRevision {
    fn new(e: store::settings::HistoryEntry, cap: u64) -> Self {
        SettingsRevision {
            revision: e.revision,
            enabled: e.settings.enabled,
            destination_domains: e.settings.destination_domains.entries().to_vec(),
            clients: e.settings.clients.entries().to_vec(),
            message_size_limit: e.settings.message_size_limit.into(),
            max_message_bytes: e.settings.max_message_bytes(cap),
            created_at: e.created_at,
            created_by: e.created_by,
            restored_from: e.restored_from,
        }
    }
}

/// List a sensor's settings revisions, newest first.
#[utoipa::path(
    tag = "smtp-integration",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path), super::pagination::PageParams),
    responses(
        (status = 200, body = super::pagination::Page<SettingsRevision>), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/revisions")]
pub async fn list_revisions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<super::pagination::PageParams>,
) -> Result<web::Json<super::pagination::Page<SettingsRevision>>, ApiError> {
    let (tenant, sensor) = path.into_inner();
    let (scope, _) = load(&state, &caller, tenant, sensor, Permission::ReadSettings).await?;
    let (limit, before) = query.revision_page()?;
    let (entries, next) = store::settings::history(&state.db, scope, sensor, before, limit).await?;
    Ok(web::Json(super::pagination::Page {
        items: entries.into_iter().map(|e| SettingsRevision::new(e, state.max_message_bytes)).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Read one revision of a sensor's settings.
#[utoipa::path(
    tag = "smtp-integration",
    params(("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path), ("revision" = i64, Path)),
    responses(
        (status = 200, body = SettingsRevision), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/revisions/{revision}")]
pub async fn get_revision(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid, i64)>,
) -> Result<web::Json<SettingsRevision>, ApiError> {
    let (tenant, sensor, revision) = path.into_inner();
    let (scope, _) = load(&state, &caller, tenant, sensor, Permission::ReadSettings).await?;
    let entry = store::settings::history_entry_at(&state.db, scope, sensor, revision).await?;
    Ok(web::Json(SettingsRevision::new(entry, state.max_message_bytes)))
}

/// Restore an earlier revision: writes a new revision with that content (audited, streamed to workers).
#[utoipa::path(
    tag = "smtp-integration",
    params(
        ("tenant_id" = Uuid, Path), ("sensor_id" = Uuid, Path), ("revision" = i64, Path),
        ("If-Match" = Option<String>, Header, description = "ETag of the current settings; 412 if they changed since"),
        WaitParams,
    ),
    responses(
        (status = 200, body = SmtpIntegration, headers(("ETag" = String, description = "New revision"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/sensors/{sensor_id}/smtp-integration/revisions/{revision}/restore")]
pub async fn restore_revision(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid, i64)>,
    wait: web::Query<WaitParams>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, sensor, revision) = path.into_inner();
    let (scope, current) = load(&state, &caller, tenant, sensor, Permission::WriteSettings).await?;
    let wait = wait.parse()?;
    let old = store::settings::history_entry_at(&state.db, scope, sensor, revision).await?;
    // The platform cap may have dropped since: the old content must still be valid today.
    let draft = old.settings.to_draft();
    let settings = SmtpSettings::parse(&draft, state.max_message_bytes).map_err(ApiError::validation)?;
    let expected = if_match(&req, current.revision);
    let record =
        store::settings::replace(&state.db, scope, sensor, &settings, expected, Some(revision), &caller.actor())
            .await?;
    written(&state, scope, record, wait).await
}
