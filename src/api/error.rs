//! The one error type of the HTTP boundary, rendered as RFC 9457 problem+json in one place.
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::TokenError;
use crate::store::StoreError;

/// One bad input. Either `pointer` (RFC 6901, into the request body) or `parameter` (query, path or header) says where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"pointer": "/destination_domains/1", "message": "wildcards are not needed: \"example.com\" already covers its subdomains"}))]
pub struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pointer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub parameter: Option<String>,
    pub message: String,
    /// In a YARA source: the line (from 1) of the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 3)]
    pub line: Option<usize>,
    /// In a YARA source: the column (from 1) of the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = 14)]
    pub column: Option<usize>,
    /// In a YARA source: yara-x's code for the problem, e.g. `E009` or `slow_pattern`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "E009")]
    pub code: Option<String>,
}

impl FieldError {
    pub fn body(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            pointer: Some(pointer.into()),
            parameter: None,
            message: message.into(),
            line: None,
            column: None,
            code: None,
        }
    }

    pub fn parameter(name: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            pointer: None,
            parameter: Some(name.into()),
            message: message.into(),
            line: None,
            column: None,
            code: None,
        }
    }
}

impl From<crate::policy::Violation> for FieldError {
    fn from(v: crate::policy::Violation) -> Self {
        FieldError::body(v.pointer, v.message)
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "urn:mailsensor:problem:not-found", "title": "Not found", "status": 404, "detail": "sensor not found"}))]
pub struct Problem {
    /// `urn:mailsensor:problem:<kind>`; stable, for programs to branch on.
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every bad field, present on 422 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(TokenError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("the resource changed since you read it (current ETag {0})")]
    PreconditionFailed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("this resource answers {}", .0.join(", "))]
    MethodNotAllowed(Vec<String>),
    #[error("{}", validation_summary(.0))]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// Request logging prints errors with `{:?}`: make that the plain message (with its causes), so no
/// log line shows Rust's debug text.
impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Internal(e) => write!(f, "internal error: {e:#}"),
            other => write!(f, "{other}"),
        }
    }
}

fn validation_summary(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.message.clone(),
        many => format!("{} fields are invalid", many.len()),
    }
}

impl ApiError {
    pub fn validation(errors: impl IntoIterator<Item = impl Into<FieldError>>) -> Self {
        ApiError::Validation(errors.into_iter().map(Into::into).collect())
    }

    pub fn forbidden(role: crate::auth::Role, action: &str) -> Self {
        ApiError::Forbidden(format!("role {} may not {action}", role.as_str()))
    }

    /// The RFC 9457 document for this error.
    pub(super) fn problem(&self) -> Problem {
        let (slug, title) = self.slug_and_title();
        Problem {
            r#type: format!("urn:mailsensor:problem:{slug}"),
            title: title.to_owned(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            errors: match self {
                ApiError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        }
    }

    fn slug_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Unauthorized(_) => ("unauthorized", "Authentication required"),
            ApiError::Forbidden(_) => ("forbidden", "Not allowed"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::PreconditionFailed(_) => ("precondition-failed", "Precondition failed"),
            ApiError::BadRequest(_) => ("bad-request", "Malformed request"),
            ApiError::PayloadTooLarge(_) => ("too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "Method not allowed"),
            ApiError::Validation(_) => ("validation", "Invalid request"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::HeadersTooLarge(_) => ("headers-too-large", "Request headers too large"),
            ApiError::RequestTimeout(_) => ("request-timeout", "Request timeout"),
            ApiError::Internal(_) => ("internal", "Internal error"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Stale { current_etag } => ApiError::PreconditionFailed(current_etag),
            StoreError::Invalid(errors) => ApiError::validation(errors),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "the database is unavailable");
                metrics::counter!("mailsensor_database_unavailable_total").increment(1);
                ApiError::Unavailable(
                    "the database is unavailable (a failover may be under way); try again shortly".into(),
                )
            }
            StoreError::Db(e) => ApiError::Internal(e.into()),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(e) = self {
            // The whole cause chain, in words ("a: b: c").
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        let problem = self.problem();
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            ApiError::Unauthorized(TokenError::Missing) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"mailsensor\"")));
            }
            ApiError::Unauthorized(reason) => {
                let value = format!(
                    "Bearer realm=\"mailsensor\", error=\"invalid_token\", error_description=\"{}\"",
                    reason.to_string().replace(['"', '\\'], "'")
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
            }
            ApiError::PreconditionFailed(etag) => {
                if let Ok(value) = HeaderValue::from_str(etag) {
                    response.insert_header((header::ETAG, value));
                }
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            ApiError::MethodNotAllowed(methods) => {
                if let Ok(value) = HeaderValue::from_str(&methods.join(", ")) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            _ => {}
        }
        response.json(problem)
    }
}
