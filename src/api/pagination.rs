//! `?limit=&cursor=` → keyset page; `{items, next_cursor}` back.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, FieldError};
use crate::store::PageRequest;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1–500 (default 50).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<String>,
}

/// `?limit=&cursor=` for a history, newest first: the cursor is the revision the previous page ended at.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevisionPageParams {
    /// Items per page, 1–500 (default 50).
    #[param(value_type = Option<u16>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// `next_cursor` from the previous page.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub cursor: Option<String>,
}

impl RevisionPageParams {
    /// The limit and the revision to go below.
    pub fn parse(&self) -> Result<(u64, Option<i64>), ApiError> {
        let mut errors = Vec::new();
        let limit = PageParams { limit: self.limit.clone(), cursor: None }.parse(&mut errors).limit;
        let before = match self.cursor.as_deref().map(str::parse::<i64>) {
            None => None,
            Some(Ok(n)) if n > 0 => Some(n),
            Some(_) => {
                errors.push(FieldError::parameter("cursor", "is not a cursor this API returned"));
                None
            }
        };
        if errors.is_empty() { Ok((limit, before)) } else { Err(ApiError::Validation(errors)) }
    }
}

impl PageParams {
    /// Collects problems into `errors` so a handler can report them with its other parameters.
    pub fn parse(&self, errors: &mut Vec<FieldError>) -> PageRequest {
        let limit = match self.limit.as_deref().map(str::parse::<u64>) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                errors.push(FieldError::parameter("limit", format!("must be a whole number from 1 to {MAX_LIMIT}")));
                DEFAULT_LIMIT
            }
        };
        let after = match self.cursor.as_deref().map(Uuid::parse_str) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                errors.push(FieldError::parameter("cursor", "is not a cursor this API returned"));
                None
            }
        };
        PageRequest { after, limit }
    }

    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let mut errors = Vec::new();
        let page = self.parse(&mut errors);
        if errors.is_empty() { Ok(page) } else { Err(ApiError::Validation(errors)) }
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> Page<T> {
    pub fn from_store<S>(page: crate::store::Page<S>, f: impl FnMut(S) -> T) -> Self {
        let page = page.map(f);
        Page { items: page.items, next_cursor: page.next_cursor.map(|c| c.to_string()) }
    }
}

/// A free-text query parameter's value; an empty one (`?actor=`) counts as absent. Typed
/// parameters (numbers, ids, times, enums) refuse an empty value like any other malformed one.
pub fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// A query parameter that must be an RFC 3339 time; a bad one is added to `errors`.
pub fn time_param(name: &str, value: &Option<String>, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let value = value.as_deref()?;
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::parameter(name, "must be an RFC 3339 time such as 2026-11-28T10:00:00Z"));
            None
        }
    }
}

/// A query parameter that must be a UUID; a bad one is added to `errors`.
pub fn uuid_param(name: &str, value: &Option<String>, errors: &mut Vec<FieldError>) -> Option<Uuid> {
    let value = value.as_deref()?;
    match Uuid::parse_str(value) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(FieldError::parameter(name, "must be a UUID"));
            None
        }
    }
}
