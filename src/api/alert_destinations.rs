//! Alert destinations: where a tenant's alerts go (a signed webhook, a syslog server taking CEF,
//! people by e-mail), what each hears of, its delivery log, a test event, a retry, a replay; and
//! the tenant's alert events themselves. Administrators manage them; auditors and officers read.
use actix_web::{HttpResponse, delete, get, http::header, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::pagination::{Page, PageParams};
use super::responses::*;
use super::settings::IfMatch;
use crate::alerts::{self, Filters, guard, signature};
use crate::store::{self, entity::alert_delivery, entity::alert_destination as dest};

/// Recipients one e-mail destination may have.
const MAX_RECIPIENTS: usize = 20;

/// A webhook receiver: Standard Webhooks v1 (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// `https://…` (or `http://…`); redirects are not followed.
    #[schema(max_length = 2048)]
    pub url: String,
}

/// A syslog server taking RFC 5424 over TCP (RFC 6587 octet counting) or TLS (RFC 5425).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyslogTarget {
    #[schema(max_length = 253)]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    pub transport: SyslogTransport,
    /// PEM certificates to trust for `tls` (default: the public web's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 65536)]
    pub ca_pem: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    Tcp,
    Tls,
}

/// People, through the tenant's mail relay.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    /// The relay.
    #[schema(max_length = 253)]
    pub host: String,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    pub security: EmailSecurity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, max_length = 254)]
    pub username: Option<String>,
    /// Written only: never shown again (`password_set` says whether one is kept).
    #[serde(default, skip_serializing)]
    #[schema(nullable = false, write_only, max_length = 1024)]
    pub password: Option<String>,
    #[serde(default)]
    #[schema(read_only)]
    pub password_set: bool,
    #[schema(max_length = 254)]
    pub from: String,
    /// 1–20 addresses.
    pub to: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmailSecurity {
    /// Plain SMTP, then STARTTLS; a relay that does not offer it is refused.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS at all: only for a relay on a network you trust.
    None,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    Webhook,
    Syslog,
    Email,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DestinationState {
    Active,
    /// Paused by someone: its deliveries wait.
    Paused,
    /// Disabled by the platform (`disabled_reason`): its receiver answered 410, or every
    /// delivery failed for five days. Resume it once fixed.
    Disabled,
}

/// An alert destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDestination {
    pub id: Uuid,
    pub name: String,
    pub kind: DestinationKind,
    /// Set when `kind` is `webhook`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub webhook: Option<WebhookTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub syslog: Option<SyslogTarget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub email: Option<EmailTarget>,
    pub filters: Filters,
    pub state: DestinationState,
    pub disabled_reason: Option<String>,
    /// Deliveries have failed since then, with no success.
    pub failing_since: Option<DateTime<Utc>>,
    /// A webhook's signing secret, `whsec_…`: only in the answers to create and rotate-secret,
    /// never again.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub secret: Option<String>,
    /// After a rotation, the old secret also signs until then.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// The node it belongs to: a destination of an SCN hears of that SCN's sensors only.
    pub node_id: Uuid,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AlertDestination {
    fn of(d: dest::Model, show_secret: bool) -> Self {
        let kind = match d.kind.as_str() {
            "webhook" => DestinationKind::Webhook,
            "syslog" => DestinationKind::Syslog,
            _ => DestinationKind::Email,
        };
        let state = match d.state.as_str() {
            store::alerts::PAUSED => DestinationState::Paused,
            store::alerts::DISABLED => DestinationState::Disabled,
            _ => DestinationState::Active,
        };
        let mut email: Option<EmailTarget> =
            (d.kind == "email").then(|| serde_json::from_value(d.config.clone()).ok()).flatten();
        if let Some(email) = &mut email {
            email.password_set = d.secret.is_some();
        }
        let now = Utc::now();
        AlertDestination {
            id: d.id,
            name: d.name,
            kind,
            webhook: (d.kind == "webhook").then(|| serde_json::from_value(d.config.clone()).ok()).flatten(),
            syslog: (d.kind == "syslog").then(|| serde_json::from_value(d.config.clone()).ok()).flatten(),
            email,
            filters: serde_json::from_value(d.filters).unwrap_or_default(),
            state,
            disabled_reason: d.disabled_reason,
            failing_since: d.failing_since,
            secret: if show_secret && d.kind == "webhook" { d.secret } else { None },
            previous_secret_until: d.previous_secret_until.filter(|until| *until > now),
            node_id: d.node_id,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// A destination to create: a name, exactly one of `webhook`, `syslog` and `email`, and filters.
#[derive(ToSchema)]
pub struct CreateAlertDestination {
    #[schema(max_length = 200)]
    pub name: String,
    #[schema(nullable = false)]
    pub webhook: Option<WebhookTarget>,
    #[schema(nullable = false)]
    pub syslog: Option<SyslogTarget>,
    #[schema(nullable = false)]
    pub email: Option<EmailTarget>,
    /// Default: `message.detected` and the other events at verdict `suspicious` or worse.
    #[schema(nullable = false)]
    pub filters: Option<Filters>,
}

/// A change: the fields given replace theirs (the target of the destination's own kind only).
#[derive(ToSchema)]
pub struct UpdateAlertDestination {
    #[schema(nullable = false, max_length = 200)]
    pub name: Option<String>,
    #[schema(nullable = false)]
    pub webhook: Option<WebhookTarget>,
    #[schema(nullable = false)]
    pub syslog: Option<SyslogTarget>,
    /// Without `password`, the kept one stays.
    #[schema(nullable = false)]
    pub email: Option<EmailTarget>,
    #[schema(nullable = false)]
    pub filters: Option<Filters>,
}

impl FromFields for CreateAlertDestination {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        let read = read(f, true);
        let UpdateAlertDestination { name, webhook, syslog, email, filters } = read?;
        Some(CreateAlertDestination { name: name?, webhook, syslog, email, filters })
    }
}

impl FromFields for UpdateAlertDestination {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        read(f, false)
    }
}

/// The fields of a create (`creating`: a name and a target required) or an update, checked but
/// for the address guard, which depends on the replica's flag ([`guarded`]).
fn read(f: &mut Fields, creating: bool) -> Option<UpdateAlertDestination> {
    // What a GET answers may be sent back as it came: the read-only fields are ignored.
    f.ignore(&[
        "id",
        "kind",
        "state",
        "disabled_reason",
        "failing_since",
        "previous_secret_until",
        "node_id",
        "created_by",
        "created_at",
        "updated_at",
    ]);
    f.refuse_nulls(NULL_REFUSED);
    let name = if creating { f.name("name") } else { f.optional_name("name") };
    let webhook: Option<WebhookTarget> = f.optional("webhook");
    let syslog: Option<SyslogTarget> = f.optional("syslog");
    let email: Option<EmailTarget> = f.optional("email");
    let given = [webhook.is_some(), syslog.is_some(), email.is_some()].iter().filter(|g| **g).count();
    let bad_target = ["webhook", "syslog", "email"].iter().any(|t| f.has_error_at(t));
    if given > 1 {
        f.error("", "give only one of webhook, syslog and email");
    } else if creating && given == 0 && !bad_target {
        f.error("", "give one of webhook, syslog and email");
    }
    if let Some(w) = &webhook {
        check_url(f, &w.url);
    }
    if let Some(s) = &syslog {
        check_host(f, "/syslog/host", &s.host);
        if s.port == 0 {
            f.error("/syslog/port", "must be from 1 to 65535");
        }
        match (&s.ca_pem, s.transport) {
            (Some(_), SyslogTransport::Tcp) => f.error("/syslog/ca_pem", "only for transport tls"),
            (Some(pem), SyslogTransport::Tls) => check_pem(f, pem),
            _ => {}
        }
    }
    if let Some(e) = &email {
        check_host(f, "/email/host", &e.host);
        if e.port == 0 {
            f.error("/email/port", "must be from 1 to 65535");
        }
        if e.password.is_some() && e.username.is_none() {
            f.error("/email/username", "a password needs a username");
        }
        if !is_address(&e.from) {
            f.error("/email/from", "must be an e-mail address, local@domain");
        }
        if e.to.is_empty() || e.to.len() > MAX_RECIPIENTS {
            f.error("/email/to", format!("must list 1 to {MAX_RECIPIENTS} addresses"));
        }
        for (i, to) in e.to.iter().enumerate().filter(|(_, to)| !is_address(to)) {
            f.error(format!("/email/to/{i}"), format!("{to:?} is not an e-mail address, local@domain"));
        }
    }
    let filters: Option<Filters> = f.optional("filters");
    for (pointer, problem) in filters.iter().flat_map(Filters::problems) {
        f.error(format!("/filters{pointer}"), problem);
    }
    Some(UpdateAlertDestination { name, webhook, syslog, email, filters })
}

/// The target given: (kind, settings without secrets, a password), or `None`.
type Target = (&'static str, serde_json::Value, Option<String>);

fn target(webhook: Option<WebhookTarget>, syslog: Option<SyslogTarget>, email: Option<EmailTarget>) -> Option<Target> {
    if let Some(w) = webhook {
        return Some(("webhook", serde_json::to_value(w).unwrap_or_default(), None));
    }
    if let Some(s) = syslog {
        return Some(("syslog", serde_json::to_value(s).unwrap_or_default(), None));
    }
    let mut e = email?;
    let password = e.password.take();
    e.password_set = false;
    Some(("email", serde_json::to_value(e).unwrap_or_default(), password))
}

/// An address in the target that the guard refuses, unless this replica allows private ranges
/// (a name is checked on each connection instead).
fn guarded(target: &Option<Target>, allow_private: bool) -> Result<(), ApiError> {
    let Some((kind, config, _)) = target else { return Ok(()) };
    if allow_private {
        return Ok(());
    }
    let (pointer, host) = match *kind {
        "webhook" => {
            let url = config["url"].as_str().and_then(|u| url::Url::parse(u).ok());
            ("/webhook/url", url.and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default())
        }
        other => (
            if other == "syslog" { "/syslog/host" } else { "/email/host" },
            config["host"].as_str().unwrap_or_default().to_owned(),
        ),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>().ok().and_then(|ip| guard::refused(ip).map(|why| (ip, why))) {
        Some((ip, why)) => Err(ApiError::Validation(vec![FieldError::body(pointer, guard::refusal(bare, ip, why))])),
        None => Ok(()),
    }
}

fn is_address(a: &str) -> bool {
    let well_formed = a.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.starts_with('.') && !domain.ends_with('.')
    });
    well_formed && a.len() <= 254 && !a.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
}

fn check_url(f: &mut Fields, url: &str) {
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(e) => return f.error("/webhook/url", format!("not an absolute URL: {e}")),
    };
    if url.len() > 2048 {
        f.error("/webhook/url", "must be at most 2048 characters");
    }
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        f.error("/webhook/url", "must start with https:// (or http://)");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        f.error("/webhook/url", "must not carry credentials: receivers check the signature");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        f.error("/webhook/url", "must name a host");
    }
}

fn check_host(f: &mut Fields, pointer: &str, host: &str) {
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        f.error(pointer, "must be a host name or an IP address");
    }
}

fn check_pem(f: &mut Fields, pem: &str) {
    use rustls_pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    match certs {
        Ok(certs) if !certs.is_empty() && pem.len() <= 65536 => {}
        Ok(_) => f.error("/syslog/ca_pem", "must hold 1 or more PEM certificates, at most 64 KiB"),
        Err(e) => f.error("/syslog/ca_pem", format!("not PEM certificates: {e}")),
    }
}

/// Create an alert destination. A webhook's signing secret is in this answer only.
#[utoipa::path(
    operation_id = "create_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path)),
    request_body = CreateAlertDestination,
    responses(
        (status = 201, description = "Created", body = AlertDestination, headers(("Location" = String, description = "URL of the destination"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations")]
pub async fn create_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let (scope, _) = caller.reach(&state, tenant, Permission::ManageAlerts, async |_| Ok(())).await?;
    let CreateAlertDestination { name, webhook, syslog, email, filters } = body.parse()?;
    let target = target(webhook, syslog, email);
    guarded(&target, state.alerts_allow_private)?;
    let Some((kind, config, password)) = target else {
        return Err(ApiError::Validation(vec![FieldError::body("", "give one of webhook, syslog and email")]));
    };
    let secret = match kind {
        "webhook" => Some(signature::new_secret()),
        _ => password,
    };
    let new = store::alerts::NewDestination {
        name,
        kind: kind.to_owned(),
        config,
        secret,
        filters: filters.unwrap_or_default(),
    };
    let node = caller.principal.node().unwrap_or_default();
    let created = store::alerts::create(&state.db, scope, node, new, &caller.actor()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/alert-destinations/{}", created.id)))
        .json(AlertDestination::of(created, true)))
}

/// List the alert destinations in scope, oldest first.
#[utoipa::path(
    operation_id = "list_alert_destinations",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = Page<AlertDestination>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/alert-destinations")]
pub async fn list_alert_destinations(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<AlertDestination>>, ApiError> {
    let (scope, _) = caller.reach(&state, path.into_inner(), Permission::ReadAlerts, async |_| Ok(())).await?;
    let page = query.page()?;
    let found = store::alerts::list(&state.db, scope, page).await?;
    Ok(web::Json(Page::from_store(found, |d| AlertDestination::of(d, false))))
}

/// Read an alert destination (never its secrets).
#[utoipa::path(
    operation_id = "get_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    responses(
        (status = 200, body = AlertDestination, headers(("ETag" = String, description = "Its version, for If-Match"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}")]
pub async fn get_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (_, d) = caller
        .reach(&state, tenant, Permission::ReadAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    Ok(with_etag(d))
}

fn with_etag(d: dest::Model) -> HttpResponse {
    let etag = store::alerts::etag(store::alerts::version(&d));
    HttpResponse::Ok().insert_header((header::ETAG, etag)).json(AlertDestination::of(d, false))
}

/// Change an alert destination: its name, its target (of its own kind), its filters.
#[utoipa::path(
    operation_id = "update_alert_destination",
    tag = "alerts",
    params(
        ("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag of the destination as read; 412 if it changed since"),
    ),
    request_body(content = UpdateAlertDestination, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = AlertDestination, headers(("ETag" = String, description = "Its new version"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}")]
pub async fn update_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    req: actix_web::HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, current) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    let current_etag = || store::alerts::etag(store::alerts::version(&current));
    let based_on = IfMatch::of(&req).against(store::alerts::version(&current), current_etag)?;
    let UpdateAlertDestination { name, webhook, syslog, email, filters } = body.parse()?;
    let target = target(webhook, syslog, email);
    guarded(&target, state.alerts_allow_private)?;
    let mut change = store::alerts::DestinationChange { based_on, name, filters, ..Default::default() };
    if let Some((kind, config, password)) = target {
        if kind != current.kind {
            let error = FieldError::body(
                format!("/{kind}"),
                format!("this destination is a {}; create another for a {kind}", current.kind),
            );
            return Err(ApiError::Validation(vec![error]));
        }
        change.config = Some(config);
        change.secret = password;
    }
    let updated = store::alerts::update(&state.db, scope, id, change, &caller.actor()).await?;
    Ok(with_etag(updated))
}

/// Delete an alert destination, its deliveries and their log.
#[utoipa::path(
    operation_id = "delete_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[delete("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}")]
pub async fn delete_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    store::alerts::delete(&state.db, scope, id, &caller.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Pause an alert destination: its deliveries wait until it is resumed.
#[utoipa::path(
    operation_id = "pause_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    responses((status = 200, body = AlertDestination), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/pause")]
pub async fn pause_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<AlertDestination>, ApiError> {
    set_active(state, caller, path, false).await
}

/// Resume a paused or disabled alert destination; what waited is sent.
#[utoipa::path(
    operation_id = "resume_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    responses((status = 200, body = AlertDestination), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/resume")]
pub async fn resume_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<AlertDestination>, ApiError> {
    set_active(state, caller, path, true).await
}

async fn set_active(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    active: bool,
) -> Result<web::Json<AlertDestination>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    let d = store::alerts::set_active(&state.db, scope, id, active, &caller.actor()).await?;
    Ok(web::Json(AlertDestination::of(d, false)))
}

/// Give a webhook a new signing secret (in this answer only); the old one keeps signing too for
/// 24 hours, so receivers can switch without losing a delivery.
#[utoipa::path(
    operation_id = "rotate_alert_destination_secret",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    responses(
        (status = 200, body = AlertDestination), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/rotate-secret")]
pub async fn rotate_alert_destination_secret(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<web::Json<AlertDestination>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, d) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    if d.kind != "webhook" {
        return Err(
            store::StoreError::Conflict(format!("only a webhook has a signing secret; this is a {}", d.kind)).into()
        );
    }
    let rotated = store::alerts::rotate_secret(&state.db, scope, id, signature::new_secret(), &caller.actor()).await?;
    Ok(web::Json(AlertDestination::of(rotated, true)))
}

/// One delivery of one event to one destination, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDelivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub sequence: i64,
    /// `pending` (due, or waiting for its next attempt), `delivered` or `failed` (the schedule ran out).
    pub state: String,
    pub attempts: i32,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub log: Vec<AlertAttempt>,
}

/// One attempt: how it went and how long it took.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertAttempt {
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// `delivered`, `failed`, `gone` (410: the destination was disabled) or `refused` (the
    /// address is private and not allowed).
    pub outcome: String,
    /// The HTTP status (webhook) or SMTP reply code (e-mail).
    pub status: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// The start of the receiver's answer, at most 1 KiB.
    pub response: Option<String>,
}

impl AlertDelivery {
    fn of(logged: store::alerts::Logged) -> Self {
        let d: alert_delivery::Model = logged.delivery;
        AlertDelivery {
            id: d.id,
            event_id: d.event_id,
            event_type: logged.kind,
            sequence: logged.sequence,
            next_attempt_at: (d.state == store::alerts::PENDING).then_some(d.next_attempt_at),
            state: d.state,
            attempts: d.attempts,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
            log: logged
                .attempts
                .into_iter()
                .map(|a| AlertAttempt {
                    attempt: a.attempt,
                    attempted_at: a.attempted_at,
                    outcome: a.outcome,
                    status: a.status,
                    error: a.error,
                    latency_ms: a.latency_ms,
                    response: a.response,
                })
                .collect(),
        }
    }
}

/// Send a `destination.test` event to this destination (queued like any alert: `202`).
#[utoipa::path(
    operation_id = "test_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    responses((status = 202, body = AlertDelivery), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/test")]
pub async fn test_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    let queued = store::alerts::test(&state.db, scope, id, &caller.actor()).await?;
    Ok(HttpResponse::Accepted().json(AlertDelivery::of(queued)))
}

/// A destination's delivery log: each delivery, oldest first, with every attempt.
#[utoipa::path(
    operation_id = "list_alert_deliveries",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = Page<AlertDelivery>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/deliveries")]
pub async fn list_alert_deliveries(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<AlertDelivery>>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ReadAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    let page = query.page()?;
    let found = store::alerts::deliveries(&state.db, scope, id, page).await?;
    Ok(web::Json(Page::from_store(found, AlertDelivery::of)))
}

/// Try one delivery again now, with a fresh schedule (also one that failed for good).
#[utoipa::path(
    operation_id = "retry_alert_delivery",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses((status = 202, body = AlertDelivery), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/deliveries/{delivery_id}/retry")]
pub async fn retry_alert_delivery(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id, delivery_id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    let retried = store::alerts::retry(&state.db, scope, id, delivery_id, &caller.actor()).await?;
    Ok(HttpResponse::Accepted().json(AlertDelivery::of(retried)))
}

/// A time range of events to send again.
#[derive(ToSchema)]
pub struct ReplayAlerts {
    /// Events that happened at or after this time.
    pub since: DateTime<Utc>,
    /// Events that happened before this time.
    pub until: DateTime<Utc>,
}

impl FromFields for ReplayAlerts {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let since: Option<DateTime<Utc>> = f.required("since");
        let until: Option<DateTime<Utc>> = f.required("until");
        let (since, until) = (since?, until?);
        if since >= until {
            f.error("/until", "must be after since");
        }
        Some(ReplayAlerts { since, until })
    }
}

/// How many events a replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries queued (at most 10,000; the oldest first).
    pub queued: u64,
}

/// Send this destination the events of a time range again (those its filters admit, with their
/// own ids: receivers de-duplicate).
#[utoipa::path(
    operation_id = "replay_alert_destination",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), ("destination_id" = Uuid, Path)),
    request_body = ReplayAlerts,
    responses(
        (status = 202, body = Replayed), (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/alert-destinations/{destination_id}/replay")]
pub async fn replay_alert_destination(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ManageAlerts, async |s| store::alerts::get(&state.db, s, id).await)
        .await?;
    let ReplayAlerts { since, until } = body.parse()?;
    let queued = store::alerts::replay(&state.db, scope, id, since, until, &caller.actor()).await?;
    Ok(HttpResponse::Accepted().json(Replayed { queued }))
}

/// The tenant's alert events in scope, as destinations receive them, oldest first.
#[utoipa::path(
    operation_id = "list_alert_events",
    tag = "alerts",
    params(("tenant_id" = Uuid, Path), PageParams),
    responses(
        (status = 200, body = Page<alerts::AlertEvent>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/alert-events")]
pub async fn list_alert_events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<alerts::AlertEvent>>, ApiError> {
    let (scope, _) = caller.reach(&state, path.into_inner(), Permission::ReadAlerts, async |_| Ok(())).await?;
    let page = query.page()?;
    Ok(web::Json(Page::from_store(store::alerts::events(&state.db, scope, page).await?, alerts::AlertEvent::from)))
}
