//! Request bodies parsed field by field, so a 422 can name every bad field at once (serde stops at
//! the first) and unknown fields are refused instead of silently dropped.
//!
//! Each body type is the one its operation documents: it implements [`FromFields`], and a handler
//! parses it with [`JsonObject::parse`] once the caller may act (so a 404 or 403 still comes first). The parser names the type's fields once more, and the test
//! `documented_request_properties_are_exactly_the_parsed_ones` holds the two lists together.
use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};

/// Largest JSON body accepted: two 10,000-entry lists of long domain names fit well below it.
pub const MAX_JSON_BODY: usize = 8 * 1024 * 1024;
/// Deepest nesting of a JSON body; no request the API documents goes past 3.
pub const MAX_JSON_DEPTH: usize = 32;

/// A JSON object from the request body (`application/json` or `application/merge-patch+json`).
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            match content_type.as_deref() {
                Some("application/json") | Some("application/merge-patch+json") => {}
                Some(other) => {
                    return Err(ApiError::UnsupportedMediaType(format!(
                        "send the body as application/json, not {other}"
                    )));
                }
                None => return Err(ApiError::UnsupportedMediaType("send the body as application/json".into())),
            }
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!("a JSON body may be at most {MAX_JSON_BODY} bytes"))
                } else {
                    ApiError::BadRequest(format!("cannot read the body: {e}"))
                }
            })?;
            let too_deep = || {
                let message = format!("the body is nested deeper than {MAX_JSON_DEPTH} levels");
                ApiError::validation([FieldError::body("", message)])
            };
            let value = match serde_json::from_slice::<Value>(&bytes) {
                Ok(value) => value,
                // serde_json stops at 128 levels on its own, before anything deeper is built.
                Err(e) if e.to_string().starts_with("recursion limit exceeded") => return Err(too_deep()),
                Err(e) => return Err(ApiError::BadRequest(format!("the body is not valid JSON: {e}"))),
            };
            if depth(&value) > MAX_JSON_DEPTH {
                return Err(too_deep());
            }
            if !value.is_object() {
                return Err(ApiError::validation([FieldError::body("", "the body must be a JSON object")]));
            }
            // PostgreSQL text cannot hold NUL: refuse it here, by name, rather than fail later.
            let mut nul = Vec::new();
            find_nul(&value, "", &mut nul);
            match value {
                Value::Object(map) if nul.is_empty() => Ok(JsonObject(map)),
                _ => Err(ApiError::Validation(nul)),
            }
        })
    }
}

/// Why a `null` member is refused: absent and `null` would otherwise mean the same, and a
/// generated client should send neither for "not set" but leave the member out.
pub const NULL_REFUSED: &str = "must not be null; leave the field out instead";

/// A request body type, parsed from its fields with every problem collected.
pub trait FromFields: Sized {
    /// Takes this type's fields out of `f`; `None` when one was missing or bad (the reason is in `f`).
    fn from_fields(f: &mut Fields) -> Option<Self>;
}

impl JsonObject {
    /// The body as a `T`; any bad or unknown field answers one 422 naming them all.
    pub fn parse<T: FromFields>(self) -> Result<T, ApiError> {
        let mut f = Fields::new(self);
        let value = T::from_fields(&mut f);
        f.finish(value)
    }
}

/// Takes fields out of a JSON object one by one, collecting every problem.
pub struct Fields {
    prefix: String,
    map: Map<String, Value>,
    errors: Vec<FieldError>,
    /// Fields a client may echo back from a GET (read-only), accepted and ignored on write.
    ignored: &'static [&'static str],
}

impl Fields {
    pub fn new(JsonObject(map): JsonObject) -> Self {
        Fields { prefix: String::new(), map, errors: Vec::new(), ignored: &[] }
    }

    /// Fields of a nested object at `pointer` (e.g. "/message_size_limit").
    pub fn nested(pointer: &str, map: Map<String, Value>) -> Self {
        Fields { prefix: pointer.to_owned(), map, errors: Vec::new(), ignored: &[] }
    }

    pub fn ignoring(mut self, read_only: &'static [&'static str]) -> Self {
        self.ignore(read_only);
        self
    }

    /// Fields a client may echo back from a GET, accepted and ignored from here on.
    pub fn ignore(&mut self, read_only: &'static [&'static str]) {
        self.ignored = read_only;
    }

    pub fn pointer(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    pub fn error(&mut self, pointer: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::body(pointer, message));
    }

    /// A problem found outside the body (a path or query parameter), reported with the body's.
    pub fn push(&mut self, error: FieldError) {
        self.errors.push(error);
    }

    /// Reports every member of this object that is `null` and takes it out: for a document whose
    /// every field is required, a merge patch's "remove this member" cannot mean anything.
    pub fn refuse_nulls(&mut self, why: &str) {
        let nulls: Vec<String> = self
            .map
            .iter()
            .filter(|(k, v)| v.is_null() && !self.ignored.contains(&k.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for key in nulls {
            self.map.remove(&key);
            let pointer = self.pointer(&escape(&key));
            self.error(pointer, why);
        }
    }

    /// Whether a problem was already recorded for field `name` or inside it.
    pub fn has_error_at(&self, name: &str) -> bool {
        self.has_error_under(&self.pointer(name))
    }

    /// Whether a recorded problem sits at `pointer`, inside it, or at one of its parents.
    pub fn has_error_under(&self, pointer: &str) -> bool {
        let related =
            |q: &str| q == pointer || q.starts_with(&format!("{pointer}/")) || pointer.starts_with(&format!("{q}/"));
        self.errors.iter().any(|e| e.pointer.as_deref().is_some_and(related))
    }

    /// A field that may be absent; `null` counts as absent.
    pub fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(value) => match serde_json::from_value(value) {
                Ok(v) => Some(v),
                Err(e) => {
                    let pointer = self.pointer(name);
                    self.error(pointer, describe(&e));
                    None
                }
            },
        }
    }

    /// A field of a merge patch where `null` means something (back to the default): absent is
    /// `None`, `null` is `Some(None)`.
    pub fn nullable<T: DeserializeOwned>(&mut self, name: &str) -> Option<Option<T>> {
        match self.map.get(name) {
            None => None,
            Some(Value::Null) => {
                self.map.remove(name);
                Some(None)
            }
            Some(_) => self.optional(name).map(Some),
        }
    }

    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        if !self.map.contains_key(name) || self.map.get(name) == Some(&Value::Null) {
            self.map.remove(name);
            if !self.has_error_at(name) {
                let pointer = self.pointer(name);
                self.error(pointer, "this field is required");
            }
            return None;
        }
        self.optional(name)
    }

    /// A required, trimmed, non-empty name of at most 200 characters.
    pub fn name(&mut self, field: &str) -> Option<String> {
        let value: String = self.required(field)?;
        self.check_name(field, value)
    }

    /// Like [`Fields::name`], but may be absent.
    pub fn optional_name(&mut self, field: &str) -> Option<String> {
        let value: String = self.optional(field)?;
        self.check_name(field, value)
    }

    fn check_name(&mut self, field: &str, value: String) -> Option<String> {
        let trimmed = value.trim();
        let problem = if trimmed.is_empty() {
            "must not be empty"
        } else if trimmed.chars().count() > 200 {
            "must be at most 200 characters"
        } else if trimmed.chars().any(char::is_control) {
            "must not contain control characters"
        } else {
            return Some(trimmed.to_owned());
        };
        let pointer = self.pointer(field);
        self.error(pointer, problem);
        None
    }

    /// A list of strings; each non-string element is reported at its own index and stands in the
    /// list as an empty string, so later checks still see every other element at its own index.
    pub fn string_list(&mut self, name: &str) -> Option<Vec<String>> {
        let pointer = self.pointer(name);
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        other => {
                            self.error(format!("{pointer}/{i}"), format!("must be a string, not {}", kind(&other)));
                            out.push(String::new());
                        }
                    }
                }
                Some(out)
            }
            Some(other) => {
                self.error(pointer, format!("must be an array of strings, not {}", kind(&other)));
                None
            }
        }
    }

    /// A nested object, handed to `parse` with its own `Fields`.
    pub fn object<T>(&mut self, name: &str, parse: impl FnOnce(&mut Fields) -> T) -> Option<T> {
        let pointer = self.pointer(name);
        match self.map.remove(name) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => {
                let mut inner = Fields::nested(&pointer, map);
                let value = parse(&mut inner);
                self.errors.append(&mut inner.finish_errors());
                Some(value)
            }
            Some(other) => {
                self.error(pointer, format!("must be an object, not {}", kind(&other)));
                None
            }
        }
    }

    fn finish_errors(mut self) -> Vec<FieldError> {
        let mut unknown: Vec<String> =
            self.map.keys().filter(|k| !self.ignored.contains(&k.as_str())).cloned().collect();
        unknown.sort();
        for key in unknown {
            let pointer = self.pointer(&escape(&key));
            self.error(pointer, "unknown field");
        }
        self.errors
    }

    /// Ends parsing: any field not taken is unknown. Returns every error found, or the value.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        let errors = self.finish_errors();
        match value {
            Some(v) if errors.is_empty() => Ok(v),
            _ => Err(ApiError::Validation(errors)),
        }
    }

    /// Like [`Fields::finish`], prepending `errors` found by a later stage (such as `policy`).
    pub fn finish_with(self, mut more: Vec<FieldError>) -> Result<(), ApiError> {
        let mut errors = self.finish_errors();
        errors.append(&mut more);
        if errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(errors)) }
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Every string (or key) in `value` that holds a NUL character, by pointer.
fn find_nul(value: &Value, pointer: &str, found: &mut Vec<FieldError>) {
    const MESSAGE: &str = "must not contain a NUL character (U+0000)";
    match value {
        Value::String(s) if s.contains('\0') => found.push(FieldError::body(pointer, MESSAGE)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_nul(item, &format!("{pointer}/{i}"), found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let at = format!("{pointer}/{}", escape(key));
                if key.contains('\0') {
                    found.push(FieldError::body(at.clone(), MESSAGE));
                }
                find_nul(item, &at, found);
            }
        }
        _ => {}
    }
}

/// RFC 6901 escaping of one reference token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(e: &serde_json::Error) -> String {
    // serde's messages name Rust types ("invalid type: string \"x\", expected u64"); keep the
    // part a person can act on.
    let text = e.to_string();
    text.split(" at line ").next().unwrap_or(&text).to_owned()
}
