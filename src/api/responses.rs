//! Reusable OpenAPI error responses; every one is an RFC 9457 problem document.
//! The types exist for the document only; `ApiError` renders the real bodies.
#![allow(dead_code)]
use utoipa::ToResponse;

use super::error::Problem;

#[derive(ToResponse)]
#[response(
    description = "Missing, malformed, expired or otherwise invalid bearer token (see `WWW-Authenticate`)",
    content_type = "application/problem+json"
)]
pub struct Unauthorized(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(
    description = "The caller's role may not perform this action on an object in its scope",
    content_type = "application/problem+json"
)]
pub struct Forbidden(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(
    description = "No such object, or it is outside the caller's scope (indistinguishable on purpose)",
    content_type = "application/problem+json"
)]
pub struct NotFound(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(
    description = "The request conflicts with the current state (duplicate name, dependent objects)",
    content_type = "application/problem+json"
)]
pub struct Conflict(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(
    description = "`If-Match` does not match the current ETag; re-read and retry",
    content_type = "application/problem+json"
)]
pub struct PreconditionFailed(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(description = "The body is not JSON", content_type = "application/problem+json")]
pub struct BadRequest(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(description = "The body is not `application/json`", content_type = "application/problem+json")]
pub struct UnsupportedMediaType(#[to_schema] pub Problem);

#[derive(ToResponse)]
#[response(
    description = "Invalid input; `errors` lists every bad field with a JSON pointer (body) or parameter name (query)",
    content_type = "application/problem+json",
    example = json!({
        "type": "urn:mailsensor:problem:validation",
        "title": "Invalid request",
        "status": 422,
        "detail": "2 fields are invalid",
        "errors": [
            {"pointer": "/destination_domains/1", "message": "wildcards are not needed: \"example.org\" already covers its subdomains"},
            {"pointer": "/clients/0", "message": "host bits set; did you mean 10.0.0.0/24?"}
        ]
    })
)]
pub struct Unprocessable(#[to_schema] pub Problem);

/// The example a Swagger UI user sees for the error response called `name`.
pub(super) fn example(name: &str) -> Option<serde_json::Value> {
    let (kind, title, status, detail) = match name {
        "Unauthorized" => ("unauthorized", "Authentication required", 401, "the token has expired"),
        "Forbidden" => {
            ("forbidden", "Not allowed", 403, "role security_officer may not read SMTP integration settings")
        }
        "NotFound" => ("not-found", "Not found", 404, "sensor not found"),
        "Conflict" => ("conflict", "Conflict", 409, "a sensor with this name already exists in the tenant"),
        "PreconditionFailed" => (
            "precondition-failed",
            "Precondition failed",
            412,
            "the resource changed since you read it (current ETag \"8\")",
        ),
        "BadRequest" => {
            ("bad-request", "Malformed request", 400, "the body is not valid JSON: expected value at line 1 column 1")
        }
        "UnsupportedMediaType" => (
            "unsupported-media-type",
            "Unsupported media type",
            415,
            "send the body as application/json, not text/plain",
        ),
        _ => return None,
    };
    Some(
        serde_json::json!({"type": format!("urn:mailsensor:problem:{kind}"), "title": title, "status": status, "detail": detail}),
    )
}
