//! Erasing one person's mail: a data-subject request (GDPR Art. 17) as one call.
use actix_web::{post, web};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::body::{Fields, FromFields, JsonObject, NULL_REFUSED};
use super::caller::{Caller, Permission};
use super::error::ApiError;
use super::responses::*;
use crate::store;

/// Whose messages to erase.
#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the body; it is parsed field by field
pub struct ErasureRequest {
    /// An e-mail address: every message in the caller's scope with it as envelope sender or
    /// recipient, or in its `From` or `To` header, is erased (compared without regard to case).
    #[schema(example = "alice@example.org", min_length = 3, max_length = 320)]
    address: String,
}

struct Erasure {
    address: String,
}

impl FromFields for Erasure {
    fn from_fields(f: &mut Fields) -> Option<Self> {
        f.refuse_nulls(NULL_REFUSED);
        let address: String = f.required("address")?;
        let trimmed = address.trim();
        let local_and_domain = trimmed.rsplit_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty());
        if !local_and_domain || trimmed.len() > 320 || trimmed.chars().any(char::is_whitespace) {
            let pointer = f.pointer("address");
            f.error(pointer, "must be one e-mail address, local-part@domain, at most 320 characters");
            return None;
        }
        Some(Erasure { address: trimmed.to_owned() })
    }
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureResult {
    /// The address, in lower case.
    #[schema(example = "alice@example.org")]
    pub address: String,
    /// Messages erased, with their content, scan results, retro-hunt results and alert events.
    pub messages_erased: u64,
}

/// Erase every message to or from one address (a data-subject request). An administrator at the
/// PCN erases across the tenant, one at an SCN within that SCN's sensors. Audited as
/// `messages.erase` with the count; the messages are erased a page (1,000) at a time.
#[utoipa::path(
    operation_id = "erase_messages_of_address",
    tag = "messages",
    params(("tenant_id" = Uuid, Path)),
    request_body = ErasureRequest,
    responses(
        (status = 200, body = ErasureResult),
        (status = 400, response = BadRequest), (status = 401, response = Unauthorized), (status = 403, response = Forbidden),
        (status = 404, response = NotFound), (status = 415, response = UnsupportedMediaType), (status = 422, response = Unprocessable),
    ),
    security(("bearer" = []))
)]
#[post("/v1/tenants/{tenant_id}/erasures")]
pub async fn erase_messages_of_address(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<Uuid>,
    body: JsonObject,
) -> Result<web::Json<ErasureResult>, ApiError> {
    let (scope, ()) = caller.reach(&state, path.into_inner(), Permission::EraseMessages, async |_| Ok(())).await?;
    let Erasure { address } = body.parse()?;
    let erased = store::erasure::erase_address(&state.db, scope, &address, &caller.actor()).await?;
    Ok(web::Json(ErasureResult { address: address.to_ascii_lowercase(), messages_erased: erased }))
}
