//! The control plane's HTTP API: routes, authentication, problem+json errors, OpenAPI document.
//!
//! One file per capability: `tenants`, `nodes`, `sensors`, `settings` (read, replace, patch),
//! `evaluate`, `revisions` (history, restore), `fleet` (worker reports, the fleet view, waiting for
//! a rollout), `config_stream`, `handoff` (messages in) and `messages` (messages read back).
mod alert_destinations;
mod audit;
mod body;
mod caller;
mod codec_errors;
mod config_stream;
mod detection_rulesets;
mod erasures;
mod error;
mod evaluate;
mod fleet;
mod handoff;
mod health;
mod messages;
mod nodes;
mod openapi_doc;
mod pagination;
mod request_id;
mod responses;
mod retrohunts;
mod revisions;
mod sensors;
mod settings;
mod tenant_settings;
mod tenants;
mod views;

pub use codec_errors::ProblemIo;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::KeySet;
use crate::stream::ChangeFeed;
use error::ApiError;

/// What every request handler can reach.
pub struct AppState {
    pub db: DatabaseConnection,
    pub keys: Arc<KeySet>,
    /// Platform hard cap on message size (`MAILSENSOR_MAX_MESSAGE_BYTES`).
    pub max_message_bytes: u64,
    pub metrics: Option<PrometheusHandle>,
    pub feed: Arc<ChangeFeed>,
    pub bookmark_interval: std::time::Duration,
    /// How long a stored message is recognised when a retry hands it off again (`None`: never).
    pub dedup_window: Option<std::time::Duration>,
    /// The scan queue's view of this replica's hand-offs: it yields to them, and wakes for what
    /// they store.
    pub intake: Arc<crate::scan_queue::Intake>,
    /// The engines this replica's scan workers use: their rules, and the daemons whose health
    /// readiness reports.
    pub engines: crate::scan_queue::Engines,
    /// Turns true when the server is stopping: open config streams end, so workers resume from
    /// another replica and the graceful stop does not wait on streams that never finish.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Alerts may go to private addresses (`--alerts-allow-private`): a destination naming one is
    /// refused at once without it.
    pub alerts_allow_private: bool,
    /// The platform's message retention default and cap.
    pub retention: crate::store::retention::RetentionPolicy,
}

fn routes(cfg: &mut ServiceConfig) {
    // Routes are tried in this order, each a pattern match: the hot paths (hand-off, settings
    // read, worker endpoints) come first. No two patterns match the same path, so the order
    // changes nothing else.
    cfg.service(handoff::hand_off)
        .service(settings::get_settings)
        .service(evaluate::evaluate)
        .service(config_stream::config_stream)
        .service(config_stream::config_poll)
        .service(fleet::report_worker)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::metrics)
        .service(tenants::create_tenant)
        .service(tenants::list_tenants)
        .service(tenants::get_tenant)
        .service(tenants::rename_tenant)
        .service(tenants::delete_tenant)
        .service(tenant_settings::get_tenant_settings)
        .service(erasures::erase_messages_of_address)
        .service(tenant_settings::update_tenant_settings)
        .service(nodes::create_scn)
        .service(nodes::list_nodes)
        .service(nodes::get_node)
        .service(nodes::delete_scn)
        .service(sensors::create_sensor)
        .service(sensors::list_sensors)
        .service(sensors::get_sensor)
        .service(sensors::update_sensor)
        .service(sensors::delete_sensor)
        .service(settings::put_settings)
        .service(settings::patch_settings)
        .service(revisions::list_revisions)
        .service(revisions::get_revision)
        .service(revisions::restore_revision)
        .service(fleet::list_workers)
        .service(messages::list_messages)
        .service(messages::get_message)
        .service(messages::get_raw)
        .service(messages::rescan_message)
        .service(audit::list_audit_events)
        .service(detection_rulesets::test_ruleset)
        .service(detection_rulesets::create_ruleset)
        .service(detection_rulesets::list_rulesets)
        .service(detection_rulesets::get_ruleset)
        .service(detection_rulesets::replace_ruleset)
        .service(detection_rulesets::update_ruleset)
        .service(detection_rulesets::delete_ruleset)
        .service(detection_rulesets::list_ruleset_revisions)
        .service(detection_rulesets::restore_ruleset_revision)
        .service(retrohunts::start_retrohunt)
        .service(retrohunts::list_retrohunts)
        .service(retrohunts::get_retrohunt)
        .service(retrohunts::abort_retrohunt)
        .service(retrohunts::list_retrohunt_matches)
        .service(alert_destinations::create_alert_destination)
        .service(alert_destinations::list_alert_destinations)
        .service(alert_destinations::get_alert_destination)
        .service(alert_destinations::update_alert_destination)
        .service(alert_destinations::delete_alert_destination)
        .service(alert_destinations::pause_alert_destination)
        .service(alert_destinations::resume_alert_destination)
        .service(alert_destinations::rotate_alert_destination_secret)
        .service(alert_destinations::test_alert_destination)
        .service(alert_destinations::list_alert_deliveries)
        .service(alert_destinations::retry_alert_delivery)
        .service(alert_destinations::replay_alert_destination)
        .service(alert_destinations::list_alert_events);
}

/// The OpenAPI document, built from the same route table the server uses (no database needed).
pub fn openapi() -> serde_json::Value {
    let spec =
        App::new().into_utoipa_app().openapi(openapi_doc::ApiDoc::openapi()).configure(routes).split_for_parts().1;
    openapi_doc::polish(spec)
}

/// The OpenAPI document as checked in at `openapi/openapi.json`.
pub fn openapi_json() -> String {
    serde_json::to_string_pretty(&openapi()).expect("the OpenAPI document serialises") + "\n"
}

async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let response = next.call(req).await?;
    let status = response.status().as_u16().to_string();
    metrics::counter!("mailsensor_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("mailsensor_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(response)
}

/// Which methods each documented path answers, so a method it does not answer gets 405 with
/// `Allow` rather than a 404 that would say the path does not exist.
struct KnownPaths(Vec<(Vec<String>, Vec<String>)>);

impl KnownPaths {
    fn from_spec(spec: &serde_json::Value) -> Self {
        let paths = spec["paths"].as_object().into_iter().flatten().map(|(path, item)| {
            let segments = path.split('/').map(str::to_owned).collect();
            let methods = item.as_object().into_iter().flatten().map(|(m, _)| m.to_uppercase()).collect();
            (segments, methods)
        });
        KnownPaths(paths.collect())
    }

    /// The methods of the documented path `path` is an instance of; where two match
    /// (`…/detection-rulesets/test` and `…/detection-rulesets/{ruleset_id}`), the one with more
    /// literal segments.
    fn methods(&self, path: &str) -> Option<&[String]> {
        let given: Vec<&str> = path.split('/').collect();
        let matches = |template: &[String]| {
            template.len() == given.len()
                && template.iter().zip(&given).all(|(t, g)| t == g || (t.starts_with('{') && !g.is_empty()))
        };
        self.0
            .iter()
            .filter(|(template, _)| matches(template))
            .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
            .map(|(_, methods)| methods.as_slice())
    }
}

/// PostgreSQL text cannot hold NUL: a query parameter with one is refused by name before any
/// handler sees it.
async fn refuse_nul_in_query(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.query_string().to_ascii_lowercase().contains("%00") {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string()).map(|q| q.into_inner());
        let names: Vec<String> = pairs
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, v)| k.contains('\0') || v.contains('\0'))
            .map(|(k, _)| k.replace('\0', "\\0"))
            .collect();
        if !names.is_empty() {
            let errors = names.into_iter().map(|n| error::FieldError::parameter(n, "must not contain a NUL character"));
            let response = HttpResponse::from_error(ApiError::validation(errors));
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn not_found_problem(what: &'static str) -> actix_web::Error {
    ApiError::NotFound(what).into()
}

/// Builds the application for `HttpServer::new`.
pub fn app(
    state: web::Data<AppState>,
    spec: serde_json::Value,
) -> App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let known = std::sync::Arc::new(KnownPaths::from_spec(&spec));
    let (app, _) = App::new().into_utoipa_app().app_data(state).configure(routes).split_for_parts();
    app.app_data(web::PathConfig::default().error_handler(|_, _| not_found_problem("resource")))
        .app_data(
            web::QueryConfig::default().error_handler(|e, _| {
                ApiError::validation([error::FieldError::parameter("query", e.to_string())]).into()
            }),
        )
        .app_data(web::PayloadConfig::new(body::MAX_JSON_BODY))
        .service(SwaggerUi::new("/docs/{_:.*}").external_url_unchecked("/openapi.json", spec))
        .service(web::redirect("/docs", "/docs/"))
        .default_service(web::to(move |req: actix_web::HttpRequest| {
            let known = known.clone();
            async move {
                match known.methods(req.path()) {
                    // A method the path has, with an id no route takes (`…/detection-rulesets/x`):
                    // no such object.
                    Some(methods) if methods.iter().any(|m| m == req.method().as_str()) => {
                        HttpResponse::from_error(not_found_problem("resource"))
                    }
                    Some(methods) => HttpResponse::from_error(ApiError::MethodNotAllowed(methods.to_vec())),
                    None => HttpResponse::from_error(not_found_problem("resource")),
                }
            }
        }))
        .wrap(from_fn(refuse_nul_in_query))
        .wrap(from_fn(record_metrics))
        .wrap(from_fn(request_id::assign))
        .wrap(tracing_actix_web::TracingLogger::default())
}
