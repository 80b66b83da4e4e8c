//! Detection rulesets: a tenant's own YARA rules, attached to a node (the PCN: every sensor of the
//! tenant; an SCN: that SCN's sensors), with history, restore and an explainer. The senior
//! security officer writes them; every write is compiled with yara-x first.
use actix_web::{HttpRequest, HttpResponse, delete, get, http::header, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::{ApiError, FieldError};
use super::pagination::{Page, PageParams, RevisionPageParams, uuid_param};
use super::responses::*;
use super::settings::IfMatch;
use crate::scan::{self, yara};
use crate::store::{self, TenantScope, entity::detection_ruleset as ruleset};
use crate::wire::NameSchema;

/// The largest source a ruleset may have.
pub const MAX_SOURCE_BYTES: usize = 512 * 1024;
/// The most rules one ruleset may define.
pub const MAX_RULES: usize = 1_000;
/// The longest description.
const MAX_DESCRIPTION: usize = 2_000;
/// The largest sample the explainer scans.
pub const MAX_SAMPLE_BYTES: usize = 4 * 1024 * 1024;

/// A detection ruleset.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectionRuleset {
    pub id: Uuid,
    /// The node it is attached to: the PCN (every sensor of the tenant) or an SCN (its sensors).
    pub node_id: Uuid,
    #[schema(example = "finance-attachments")]
    pub name: String,
    pub description: String,
    /// YARA source (YARA-X dialect). Every rule's namespace is the ruleset's name.
    #[schema(
        example = "rule script_to_finance {\n  meta: severity = \"malicious\"\n  condition: filename matches /\\.js$/\n}\n"
    )]
    pub source: String,
    /// Off: none of its rules runs.
    pub enabled: bool,
    /// Rules switched off: still evaluated (another rule may name them), never reported.
    pub disabled_rules: Vec<String>,
    /// Every rule the source defines.
    pub rules: Vec<String>,
    /// Goes up by one with every write; the `ETag`.
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ruleset::Model> for DetectionRuleset {
    fn from(r: ruleset::Model) -> Self {
        DetectionRuleset {
            id: r.id,
            node_id: r.node_id,
            disabled_rules: store::rulesets::strings(&r.disabled_rules),
            rules: store::rulesets::strings(&r.rules),
            name: r.name,
            description: r.description,
            source: r.source,
            enabled: r.enabled,
            revision: r.revision,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A new ruleset.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDetectionRuleset {
    #[schema(value_type = NameSchema, example = "finance-attachments")]
    pub name: String,
    /// At most 2,000 characters.
    #[schema(nullable = false, max_length = 2000)]
    pub description: Option<String>,
    /// The node to attach it to (creating: by default the node you are signed in at; replacing: by
    /// default unchanged). Signed in at an SCN, only that SCN.
    #[schema(nullable = false)]
    pub node_id: Option<Uuid>,
    /// YARA source, at most 512 KiB and 1,000 rules; `include` is refused.
    #[schema(max_length = 524288)]
    pub source: String,
    /// Default `true`.
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    /// Names of rules of `source` to switch off (default none).
    #[schema(nullable = false)]
    pub disabled_rules: Option<Vec<String>>,
}

/// A ruleset's new content; what is left out takes its default (`node_id`: unchanged).
pub type ReplaceDetectionRuleset = CreateDetectionRuleset;

impl FromFields for CreateDetectionRuleset {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let name = f.name("name");
        let description = f.optional("description");
        let node_id = f.optional("node_id");
        let source = f.required("source");
        let enabled = f.optional("enabled");
        let disabled_rules = f.string_list("disabled_rules");
        Some(CreateDetectionRuleset { name: name?, description, node_id, source: source?, enabled, disabled_rules })
    }
}

/// Some fields of a ruleset: switch it or single rules on and off, rename, move, or change the source.
#[derive(ToSchema)]
#[schema(min_properties = 1)]
#[serde(deny_unknown_fields)]
pub struct UpdateDetectionRuleset {
    #[schema(nullable = false, value_type = Option<NameSchema>)]
    pub name: Option<String>,
    #[schema(nullable = false, max_length = 2000)]
    pub description: Option<String>,
    #[schema(nullable = false)]
    pub node_id: Option<Uuid>,
    #[schema(nullable = false, max_length = 524288)]
    pub source: Option<String>,
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    /// The whole list of rules switched off (replaces the current list).
    #[schema(nullable = false)]
    pub disabled_rules: Option<Vec<String>>,
}

impl FromFields for UpdateDetectionRuleset {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let update = UpdateDetectionRuleset {
            name: f.optional_name("name"),
            description: f.optional("description"),
            node_id: f.optional("node_id"),
            source: f.optional("source"),
            enabled: f.optional("enabled"),
            disabled_rules: f.string_list("disabled_rules"),
        };
        let fields = ["name", "description", "node_id", "source", "enabled", "disabled_rules"];
        let empty = update.name.is_none()
            && update.description.is_none()
            && update.node_id.is_none()
            && update.source.is_none()
            && update.enabled.is_none()
            && update.disabled_rules.is_none();
        if empty && !fields.iter().any(|n| f.has_error_at(n)) {
            f.error("", "give at least one of name, description, node_id, source, enabled, disabled_rules");
        }
        Some(update)
    }
}

/// Checks and compiles a draft: every problem of every field in one 422 (a compile error or a
/// slow pattern with its line and column). Compiling is CPU work: it runs off the async threads.
async fn checked(mut draft: store::rulesets::Draft) -> Result<store::rulesets::Draft, ApiError> {
    let mut errors = Vec::new();
    if draft.description.chars().count() > MAX_DESCRIPTION {
        errors.push(FieldError::body("/description", format!("must be at most {MAX_DESCRIPTION} characters")));
    }
    if draft.disabled_rules.len() > MAX_RULES {
        errors.push(FieldError::body("/disabled_rules", format!("must name at most {MAX_RULES} rules")));
        return Err(ApiError::Validation(errors));
    }
    match source_problems(&draft.name, &draft.source, "/source").await? {
        Err(problems) => errors.extend(problems),
        Ok(names) => {
            for (i, rule) in draft.disabled_rules.iter().enumerate() {
                if !names.contains(rule) {
                    errors.push(FieldError::body(
                        format!("/disabled_rules/{i}"),
                        format!("no rule {rule:?} in the source"),
                    ));
                }
            }
            draft.rules = names;
        }
    }
    draft.disabled_rules.sort();
    draft.disabled_rules.dedup();
    if errors.is_empty() { Ok(draft) } else { Err(ApiError::Validation(errors)) }
}

/// Compiles a source as a ruleset's (namespace `name`): its rule names, or every compile error,
/// slow pattern and cap it breaks, at `pointer`.
pub(super) async fn source_problems(
    name: &str,
    text: &str,
    pointer: &str,
) -> Result<Result<Vec<String>, Vec<FieldError>>, ApiError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Ok(Err(vec![FieldError::body(pointer, format!("must be at most {MAX_SOURCE_BYTES} bytes"))]));
    }
    let at = |p: yara::Problem| {
        let mut error = source_error(p);
        error.pointer = Some(pointer.to_owned());
        error
    };
    let compiled = compile_off_thread(yara::RuleSource::new(name, name, text)).await?;
    Ok(match compiled {
        Err(problems) => Err(problems.into_iter().map(at).collect()),
        Ok(rules) => {
            let mut errors: Vec<FieldError> =
                rules.warnings.iter().filter(|w| w.code == "slow_pattern").cloned().map(at).collect();
            let names = rules.rule_names(name);
            if names.len() > MAX_RULES {
                let message = format!("defines {} rules; a ruleset may define at most {MAX_RULES}", names.len());
                errors.push(FieldError::body(pointer, message));
            }
            if errors.is_empty() { Ok(names) } else { Err(errors) }
        }
    })
}

async fn compile_off_thread(source: yara::RuleSource) -> Result<Result<yara::Rules, Vec<yara::Problem>>, ApiError> {
    tokio::task::spawn_blocking(move || yara::compile(&[source]))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("compiling the rules failed: {e}")))
}

/// A compile problem, where it is in `/source`.
fn source_error(p: yara::Problem) -> FieldError {
    let mut error = FieldError::body("/source", p.message);
    error.line = p.line;
    error.column = p.column;
    error.code = Some(p.code);
    error
}

fn with_etag(r: ruleset::Model) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::ETAG, store::rulesets::etag(r.revision))).json(DetectionRuleset::from(r))
}

/// The revision an `If-Match` asks a write to be based on (`None`: any); 412 when it is not the current one.
fn expected(req: &HttpRequest, current: &ruleset::Model) -> Result<Option<i64>, ApiError> {
    IfMatch::of(req).against(current.revision, || store::rulesets::etag(current.revision))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RulesetFilter {
    /// Only rulesets attached to this node.
    #[param(value_type = Option<Uuid>)]
    pub node_id: Option<String>,
}

/// Create a ruleset; it applies to messages scanned after the write commits.
#[utoipa::path(
    operation_id = "create_detection_ruleset",
    tag = "detection",
    params(("tenant_id" = Uuid, Path)),
    request_body = CreateDetectionRuleset,
    responses(
        (status = 201, description = "Created", body = DetectionRuleset, headers(("Location" = String, description = "URL of the new ruleset"), ("ETag" = String, description = "Its revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/detection-rulesets")]
pub async fn create_ruleset(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let scope = writer_scope(&state, &caller, tenant).await?;
    let CreateDetectionRuleset { name, description, node_id, source, enabled, disabled_rules } = body.parse()?;
    let node_id = node_id.or(caller.principal.node()).unwrap_or_default();
    let draft = store::rulesets::Draft {
        name,
        description: description.unwrap_or_default(),
        node_id,
        source,
        enabled: enabled.unwrap_or(true),
        disabled_rules: disabled_rules.unwrap_or_default(),
        rules: Vec::new(),
    };
    let created = store::rulesets::create(&state.db, scope, checked(draft).await?, &caller.actor()).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{tenant}/detection-rulesets/{}", created.id)))
        .insert_header((header::ETAG, store::rulesets::etag(created.revision)))
        .json(DetectionRuleset::from(created)))
}

/// The scope of a caller who may write rulesets in `tenant` (403 otherwise; 404 outside it).
async fn writer_scope(state: &AppState, caller: &Caller, tenant: Uuid) -> Result<TenantScope, ApiError> {
    let (scope, _) = caller.reach(state, tenant, Permission::WriteRulesets, async |_| Ok(())).await?;
    Ok(scope)
}

/// List the rulesets in scope.
#[utoipa::path(
    operation_id = "list_detection_rulesets",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), RulesetFilter, PageParams),
    responses(
        (status = 200, body = Page<DetectionRuleset>), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/detection-rulesets")]
pub async fn list_rulesets(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    filter: web::Query<RulesetFilter>,
    query: web::Query<PageParams>,
) -> Result<web::Json<Page<DetectionRuleset>>, ApiError> {
    let (scope, _) = caller.reach(&state, path.into_inner(), Permission::ReadRulesets, async |_| Ok(())).await?;
    let mut errors = Vec::new();
    let page = query.parse(&mut errors);
    let node = uuid_param("node_id", &filter.node_id, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let rulesets = store::rulesets::list(&state.db, scope, node, page).await?;
    Ok(web::Json(Page::from_store(rulesets, DetectionRuleset::from)))
}

/// Read a ruleset.
#[utoipa::path(
    operation_id = "get_detection_ruleset",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), ("ruleset_id" = Uuid, Path)),
    responses(
        (status = 200, body = DetectionRuleset, headers(("ETag" = String, description = "Its revision"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/detection-rulesets/{ruleset_id:[0-9a-fA-F-]+}")]
pub async fn get_ruleset(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (_, found) = caller
        .reach(&state, tenant, Permission::ReadRulesets, async |s| store::rulesets::get(&state.db, s, id).await)
        .await?;
    Ok(with_etag(found))
}

/// Replace a ruleset's content (what is left out takes its default; `node_id`: unchanged).
#[utoipa::path(
    operation_id = "replace_detection_ruleset",
    tag = "detection",
    params(
        ("tenant_id" = Uuid, Path), ("ruleset_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag of the ruleset as read; 412 if it changed since"),
    ),
    request_body = ReplaceDetectionRuleset,
    responses(
        (status = 200, body = DetectionRuleset, headers(("ETag" = String, description = "Its new revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[put("/v1/tenants/{tenant_id}/detection-rulesets/{ruleset_id:[0-9a-fA-F-]+}")]
pub async fn replace_ruleset(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, current) = caller
        .reach(&state, tenant, Permission::WriteRulesets, async |s| store::rulesets::get(&state.db, s, id).await)
        .await?;
    let CreateDetectionRuleset { name, description, node_id, source, enabled, disabled_rules } = body.parse()?;
    let expected = expected(&req, &current)?;
    let draft = store::rulesets::Draft {
        name,
        description: description.unwrap_or_default(),
        node_id: node_id.unwrap_or(current.node_id),
        source,
        enabled: enabled.unwrap_or(true),
        disabled_rules: disabled_rules.unwrap_or_default(),
        rules: Vec::new(),
    };
    write(&state, &caller, scope, id, draft, expected, None).await
}

async fn write(
    state: &AppState,
    caller: &Caller,
    scope: TenantScope,
    id: Uuid,
    draft: store::rulesets::Draft,
    expected: Option<i64>,
    restored_from: Option<i64>,
) -> Result<HttpResponse, ApiError> {
    let draft = checked(draft).await?;
    let actor = caller.actor();
    let write = store::rulesets::Write { actor: &actor, expected, restored_from };
    Ok(with_etag(store::rulesets::replace(&state.db, scope, id, draft, write).await?))
}

/// Change some fields of a ruleset: switch it, or single rules, on and off; rename; move; new source.
#[utoipa::path(
    operation_id = "update_detection_ruleset",
    tag = "detection",
    params(
        ("tenant_id" = Uuid, Path), ("ruleset_id" = Uuid, Path),
        ("If-Match" = Option<String>, Header, description = "ETag of the ruleset as read; 412 if it changed since"),
    ),
    request_body(content = UpdateDetectionRuleset, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, body = DetectionRuleset, headers(("ETag" = String, description = "Its new revision"))),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 409, response = Conflict), (status = 412, response = PreconditionFailed),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[patch("/v1/tenants/{tenant_id}/detection-rulesets/{ruleset_id:[0-9a-fA-F-]+}")]
pub async fn update_ruleset(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid)>,
    body: JsonObject,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, current) = caller
        .reach(&state, tenant, Permission::WriteRulesets, async |s| store::rulesets::get(&state.db, s, id).await)
        .await?;
    let update: UpdateDetectionRuleset = body.parse()?;
    let expected = expected(&req, &current)?;
    let mut draft = store::rulesets::Draft::of(&current);
    draft.name = update.name.unwrap_or(draft.name);
    draft.description = update.description.unwrap_or(draft.description);
    draft.node_id = update.node_id.unwrap_or(draft.node_id);
    draft.source = update.source.unwrap_or(draft.source);
    draft.enabled = update.enabled.unwrap_or(draft.enabled);
    draft.disabled_rules = update.disabled_rules.unwrap_or(draft.disabled_rules);
    // Against the revision read: a write in between answers 412 rather than being undone.
    write(&state, &caller, scope, id, draft, expected.or(Some(current.revision)), None).await
}

/// Delete a ruleset and its history.
#[utoipa::path(
    operation_id = "delete_detection_ruleset",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), ("ruleset_id" = Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound)),
    security(("bearer" = []))
)]
#[delete("/v1/tenants/{tenant_id}/detection-rulesets/{ruleset_id:[0-9a-fA-F-]+}")]
pub async fn delete_ruleset(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::WriteRulesets, async |s| store::rulesets::get(&state.db, s, id).await)
        .await?;
    store::rulesets::delete(&state.db, scope, id, &caller.actor()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One revision of a ruleset's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectionRulesetRevision {
    pub revision: i64,
    pub node_id: Uuid,
    pub name: String,
    pub description: String,
    pub source: String,
    pub enabled: bool,
    pub disabled_rules: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The revision this one restored, if it was written by a restore.
    pub restored_from: Option<i64>,
}

impl From<store::entity::detection_ruleset_revision::Model> for DetectionRulesetRevision {
    fn from(r: store::entity::detection_ruleset_revision::Model) -> Self {
        DetectionRulesetRevision {
            revision: r.revision,
            node_id: r.node_id,
            disabled_rules: store::rulesets::strings(&r.disabled_rules),
            name: r.name,
            description: r.description,
            source: r.source,
            enabled: r.enabled,
            created_at: r.created_at,
            created_by: r.created_by,
            restored_from: r.restored_from,
        }
    }
}

/// A ruleset's revisions, newest first.
#[utoipa::path(
    operation_id = "list_detection_ruleset_revisions",
    tag = "detection",
    params(("tenant_id" = Uuid, Path), ("ruleset_id" = Uuid, Path), RevisionPageParams),
    responses(
        (status = 200, body = Page<DetectionRulesetRevision>), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[get("/v1/tenants/{tenant_id}/detection-rulesets/{ruleset_id:[0-9a-fA-F-]+}/revisions")]
pub async fn list_ruleset_revisions(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(Uuid, Uuid)>,
    query: web::Query<RevisionPageParams>,
) -> Result<web::Json<Page<DetectionRulesetRevision>>, ApiError> {
    let (tenant, id) = path.into_inner();
    let (scope, _) = caller
        .reach(&state, tenant, Permission::ReadRulesets, async |s| store::rulesets::get(&state.db, s, id).await)
        .await?;
    let (limit, before) = query.parse()?;
    let (rows, next) = store::rulesets::history(&state.db, scope, id, before, limit).await?;
    Ok(web::Json(Page {
        items: rows.into_iter().map(DetectionRulesetRevision::from).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

/// Restore an earlier revision: writes a new revision with its content (compiled again, audited).
#[utoipa::path(
    operation_id = "restore_detection_ruleset_revision",
    tag = "detection",
    params(
        ("tenant_id" = Uuid, Path), ("ruleset_id" = Uuid, Path), ("revision" = i64, Path),
        ("If-Match" = Option<String>, Header, description = "ETag of the ruleset as read; 412 if it changed since"),
    ),
    responses(
        (status = 200, body = DetectionRuleset, headers(("ETag" = String, description = "Its new revision"))),
        (status = 401, response = Unauthorized), (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 409, response = Conflict), (status = 412, response = PreconditionFailed), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/detection-rulesets/{ruleset_id:[0-9a-fA-F-]+}/revisions/{revision}/restore")]
pub async fn restore_ruleset_revision(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(Uuid, Uuid, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant, id, at) = path.into_inner();
    let (scope, current) = caller
        .reach(&state, tenant, Permission::WriteRulesets, async |s| store::rulesets::get(&state.db, s, id).await)
        .await?;
    let expected = expected(&req, &current)?;
    let old = store::rulesets::revision_at(&state.db, scope, id, at).await?;
    let draft = store::rulesets::Draft {
        name: old.name,
        description: old.description,
        node_id: old.node_id,
        source: old.source,
        enabled: old.enabled,
        disabled_rules: store::rulesets::strings(&old.disabled_rules),
        rules: Vec::new(),
    };
    write(&state, &caller, scope, id, draft, expected, Some(at)).await
}

/// A rule source to try on a sample, saving nothing.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesetTest {
    /// YARA source, as a ruleset's.
    #[schema(max_length = 524288)]
    pub source: String,
    /// The sample: a raw RFC 5322 message as text. Give exactly one of `raw_message`,
    /// `raw_message_base64` and `message_id`.
    #[schema(nullable = false)]
    pub raw_message: Option<String>,
    /// The sample: a raw message, base64 (for bytes that are not UTF-8); at most 4 MiB decoded.
    #[schema(nullable = false)]
    pub raw_message_base64: Option<String>,
    /// The sample: a stored message in your scope.
    #[schema(nullable = false)]
    pub message_id: Option<Uuid>,
}

impl FromFields for RulesetTest {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let source = f.required("source");
        let raw_message: Option<String> = f.optional("raw_message");
        let raw_message_base64: Option<String> = f.optional("raw_message_base64");
        let message_id: Option<Uuid> = f.optional("message_id");
        let given = [raw_message.is_some(), raw_message_base64.is_some(), message_id.is_some()];
        let samples = ["raw_message", "raw_message_base64", "message_id"];
        if given.iter().filter(|g| **g).count() != 1 && !samples.iter().any(|n| f.has_error_at(n)) {
            f.error("", "give exactly one sample: raw_message, raw_message_base64 or message_id");
        }
        Some(RulesetTest { source: source?, raw_message, raw_message_base64, message_id })
    }
}

/// What the rules found in the sample.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesetTestResult {
    /// Every rule the source defines.
    pub rules: Vec<String>,
    /// The verdict these rules alone (with the built-in checks) give the sample.
    pub verdict: super::messages::VerdictName,
    /// Every rule that matched every object, with where its strings matched.
    pub matches: Vec<RuleMatchView>,
    /// Compiler warnings that do not refuse a ruleset.
    pub warnings: Vec<FieldError>,
}

/// One rule that matched one object.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleMatchView {
    #[schema(example = "html_smuggling")]
    pub rule: String,
    #[schema(example = "test")]
    pub namespace: String,
    pub tags: Vec<String>,
    /// From the rule's `severity` metadata.
    pub verdict: super::messages::VerdictName,
    /// The object, e.g. `attachment "invoice.html"`, `member "a/b.txt" of attachment "x.zip"`, `the raw message`.
    #[schema(example = "attachment \"invoice.html\"")]
    pub object: String,
    /// The part it is, or is in (none: the raw message).
    pub part: Option<usize>,
    /// Inside that part, the archive members leading to it, outermost first.
    pub archive_path: Vec<String>,
    /// Where the rule's strings matched in the object (at most 16 per string).
    pub strings: Vec<StringMatchView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StringMatchView {
    #[schema(example = "$blob")]
    pub pattern: String,
    /// Bytes from the start of the decoded object.
    pub offset: u64,
    pub length: u64,
}

fn too_large(pointer: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::body(pointer, format!("the sample may be at most {MAX_SAMPLE_BYTES} bytes"))])
}

fn verdict_name(v: scan::Verdict) -> super::messages::VerdictName {
    use super::messages::VerdictName;
    match v {
        scan::Verdict::Clean => VerdictName::Clean,
        scan::Verdict::Spam => VerdictName::Spam,
        scan::Verdict::Suspicious => VerdictName::Suspicious,
        scan::Verdict::Malicious => VerdictName::Malicious,
    }
}

/// Try a rule source on a sample: which rules match which object (raw message, part, archive
/// member) and where their strings matched. Nothing is saved; the source is checked as a write's.
#[utoipa::path(
    operation_id = "test_detection_ruleset",
    tag = "detection",
    params(("tenant_id" = Uuid, Path)),
    request_body = RulesetTest,
    responses(
        (status = 200, body = RulesetTestResult), (status = 400, response = BadRequest), (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden), (status = 404, response = NotFound),
        (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/detection-rulesets/test")]
pub async fn test_ruleset(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<web::Json<RulesetTestResult>, ApiError> {
    use base64::Engine;
    let tenant = path.into_inner();
    let (scope, _) = caller.reach(&state, tenant, Permission::ReadRulesets, async |_| Ok(())).await?;
    let test: RulesetTest = body.parse()?;
    let raw = match (test.raw_message, test.raw_message_base64, test.message_id) {
        (Some(text), _, _) => text.into_bytes(),
        (_, Some(encoded), _) => base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|e| {
            ApiError::Validation(vec![FieldError::body("/raw_message_base64", format!("is not base64: {e}"))])
        })?,
        (_, _, Some(id)) => {
            caller.require(Permission::ReadMessages)?;
            let message = store::messages::get(&state.db, scope, id).await?;
            if message.size as usize > MAX_SAMPLE_BYTES {
                return Err(too_large("/message_id"));
            }
            let mut raw = Vec::with_capacity(message.size as usize);
            let mut seq = 0;
            while let Some(chunk) = store::messages::chunk(&state.db, tenant, id, seq).await? {
                raw.extend_from_slice(&chunk);
                seq += 1;
            }
            raw
        }
        _ => Vec::new(),
    };
    if raw.len() > MAX_SAMPLE_BYTES {
        return Err(too_large("/raw_message"));
    }
    let draft = store::rulesets::Draft {
        name: "test".to_owned(),
        description: String::new(),
        node_id: Uuid::nil(),
        source: test.source.clone(),
        enabled: true,
        disabled_rules: Vec::new(),
        rules: Vec::new(),
    };
    let draft = checked(draft).await?;
    let source = yara::RuleSource::new("test", "test", test.source);
    let answer = tokio::task::spawn_blocking(move || {
        let rules = yara::compile(&[source]).map_err(|_| "the source no longer compiles".to_owned())?;
        let warnings: Vec<FieldError> = rules.warnings.iter().cloned().map(source_error).collect();
        let mut scanner = rules.scanner();
        let (report, explained) =
            scan::explain(&raw, scan::YaraRun::new(vec![&mut scanner], yara::Envelope::default()));
        Ok::<_, String>((report, explained, warnings))
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("the test failed: {e}")))?;
    let (report, explained, warnings) = answer.map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    Ok(web::Json(RulesetTestResult {
        rules: draft.rules,
        verdict: verdict_name(report.verdict),
        warnings,
        matches: explained
            .into_iter()
            .map(|e| RuleMatchView {
                rule: e.matched.rule,
                namespace: e.matched.namespace,
                tags: e.matched.tags,
                verdict: verdict_name(e.matched.verdict),
                object: e.object,
                part: e.part,
                archive_path: e.archive_path,
                strings: e
                    .matched
                    .strings
                    .into_iter()
                    .map(|s| StringMatchView { pattern: s.pattern, offset: s.offset, length: s.length })
                    .collect(),
            })
            .collect(),
    }))
}
