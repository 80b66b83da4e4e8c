//! The policy explainer: what a worker would do with a connection and envelope, stage by stage.
use std::net::IpAddr;

use actix_web::{post, web};
use ipnet::IpNet;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Permission, Token};
use super::error::{ApiError, FieldError};
use super::responses::*;
use super::settings::read_settings;
use crate::policy;

/// What to try against the settings.
#[derive(Debug, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_ip": "192.0.2.10", "recipients": ["alice@example.com", "bob@hr.example.com"], "size": 1048576, "sensor_network": "192.0.2.0/24"}))]
pub struct EvaluateRequest {
    /// The connecting mail server's address.
    #[schema(schema_with = ip_address, example = "192.0.2.10")]
    pub client_ip: IpAddr,
    /// Recipients as given in `RCPT TO`, at most 100 (as in one SMTP transaction).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub recipients: Vec<String>,
    /// Message size in bytes, as in `MAIL FROM ... SIZE=`.
    #[schema(nullable = false, value_type = Option<i64>, minimum = 0)]
    pub size: Option<u64>,
    /// Network of the worker's interface that receives the connection (e.g. `192.0.2.25/24`); needed only when the blank-field rule "same subnet as the sensor" applies.
    #[schema(nullable = false, value_type = Option<String>, example = "192.0.2.0/24")]
    pub sensor_network: Option<IpNet>,
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

/// An IPv4 or IPv6 address, in the formats JSON Schema names.
fn ip_address() -> utoipa::openapi::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
    let format =
        |f| ObjectBuilder::new().schema_type(SchemaType::Type(Type::String)).format(Some(SchemaFormat::KnownFormat(f)));
    AnyOfBuilder::new().item(format(KnownFormat::Ipv4)).item(format(KnownFormat::Ipv6)).build().into()
}

impl FromFields for EvaluateRequest {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let ip_text: Option<String> = f.required("client_ip");
        let client_ip = ip_text.and_then(|t| match t.trim().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                f.error("/client_ip", format!("\"{t}\" is not an IPv4 or IPv6 address"));
                None
            }
        });
        let recipients = f.string_list("recipients").unwrap_or_default();
        if recipients.len() > policy::MAX_RECIPIENTS {
            let message = format!("at most {} recipients, as in one SMTP transaction", policy::MAX_RECIPIENTS);
            f.error("/recipients", message);
        }
        let size = f.optional::<i64>("size").and_then(|size| match u64::try_from(size) {
            Ok(size) => Some(size),
            Err(_) => {
                f.error("/size", "must be a byte count, 0 or more");
                None
            }
        });
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
        Some(EvaluateRequest { client_ip: client_ip?, recipients, size, sensor_network })
    }
}

impl Evaluation {
    fn new(result: &policy::Evaluation, revision: i64) -> Self {
        Evaluation {
            accepted: result.accepted,
            revision,
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
        }
    }
}

/// Explain what a worker would do with a connection and envelope under the current settings: the decision at each stage, the entry or blank-field rule that decided, and the exact SMTP reply.
#[utoipa::path(
    operation_id = "evaluate_smtp_integration",
    tag = "evaluate",
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
    token: Token,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<web::Json<Evaluation>, ApiError> {
    let record = read_settings(&state, token, path.into_inner(), Permission::ReadSettings).await?;
    let EvaluateRequest { client_ip, recipients, size, sensor_network } = body.parse()?;
    let settings = &record.settings;
    if settings.only_sensor_subnet() && sensor_network.is_none() {
        return Err(ApiError::validation([FieldError::body(
            "/sensor_network",
            "required here: with no client entries and no destination domains, only clients in the worker's own subnet may connect",
        )]));
    }
    let probe = policy::Probe { client_ip, recipients: &recipients, size, sensor_network };
    let result = policy::evaluate(settings, &probe, state.max_message_bytes);
    Ok(web::Json(Evaluation::new(&result, record.revision)))
}
