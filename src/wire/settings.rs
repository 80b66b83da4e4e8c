//! The settings document: the one JSON form of `policy::SmtpSettings`.
use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::policy::{SettingsDraft, SizeLimit, SizeLimitDraft, SizeUnit, SmtpSettings, Violation};

// The unit's meaning (and its serde form) is policy's; its schema is given here so `policy`
// stays free of the OpenAPI crate.
impl PartialSchema for SizeUnit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(SizeUnit::ALL.map(SizeUnit::as_str)))
            .description(Some("Binary unit: KB = 1,024 bytes, MB = 1,048,576 bytes, GB = 1,073,741,824 bytes"))
            .into()
    }
}

impl ToSchema for SizeUnit {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SizeUnit")
    }
}

/// `{"unlimited": true}` (up to the platform cap), or `{"unlimited": false, "value": N, "unit": "MB"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageSizeLimit {
    pub unlimited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, example = 25)]
    pub value: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<SizeUnit>,
}

impl From<SizeLimit> for MessageSizeLimit {
    fn from(limit: SizeLimit) -> Self {
        match limit {
            SizeLimit::Unlimited => MessageSizeLimit { unlimited: true, value: None, unit: None },
            SizeLimit::Limited { value, unit } => {
                MessageSizeLimit { unlimited: false, value: Some(value), unit: Some(unit) }
            }
        }
    }
}

impl From<MessageSizeLimit> for SizeLimitDraft {
    fn from(limit: MessageSizeLimit) -> Self {
        SizeLimitDraft {
            unlimited: Some(limit.unlimited),
            value: limit.value.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            unit: limit.unit.map(|u| u.as_str().to_owned()),
        }
    }
}

/// The SMTP integration settings of one sensor: what an administrator writes with `PUT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "enabled": true,
    "destination_domains": ["example.com", "!hr.example.com"],
    "clients": ["192.0.2.0/24", "!192.0.2.7"],
    "message_size_limit": {"unlimited": false, "value": 25, "unit": "MB"}
}))]
pub struct SettingsDocument {
    /// `false`: workers refuse all mail for this sensor (421 4.3.2).
    pub enabled: bool,
    /// Recipient domains; `!domain` excludes. A domain covers its subdomains; the most specific entry wins. Empty = any recipient.
    pub destination_domains: Vec<String>,
    /// Client IPs/CIDRs; `!entry` excludes. Longest prefix wins. With no positive entry: any client if domains are set, else the worker's own subnet.
    pub clients: Vec<String>,
    pub message_size_limit: MessageSizeLimit,
}

impl From<&SmtpSettings> for SettingsDocument {
    fn from(s: &SmtpSettings) -> Self {
        SettingsDocument {
            enabled: s.enabled,
            destination_domains: s.destination_domains.entries().to_vec(),
            clients: s.clients.entries().to_vec(),
            message_size_limit: s.message_size_limit.into(),
        }
    }
}

impl SettingsDocument {
    /// Decodes the document into settings with the same `policy` rules the API validated it with.
    pub fn parse(&self, platform_cap: u64) -> Result<SmtpSettings, Vec<Violation>> {
        SmtpSettings::parse(&self.to_draft(), platform_cap)
    }

    pub fn to_draft(&self) -> SettingsDraft {
        SettingsDraft {
            enabled: self.enabled,
            destination_domains: self.destination_domains.clone(),
            clients: self.clients.clone(),
            message_size_limit: self.message_size_limit.into(),
        }
    }
}

/// `message_size_limit` in a merge patch: a `value` or `unit` given alone means "limited", the
/// rest comes from the current limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"value": 10, "unit": "MB"}))]
pub struct SizeLimitPatch {
    #[schema(nullable = false)]
    pub unlimited: Option<bool>,
    #[schema(nullable = false, value_type = Option<u64>, minimum = 1, example = 10)]
    pub value: Option<i64>,
    /// Kept as written so a near miss (`"mb"`) gets a precise message rather than a type error.
    #[schema(nullable = false, value_type = Option<SizeUnit>)]
    pub unit: Option<String>,
}

impl SizeLimitPatch {
    /// The limit this patch asks for on top of `before` (RFC 7396 semantics, with one
    /// convenience: `value`/`unit` alone switch `unlimited` off).
    pub fn over(self, before: Option<SizeLimitDraft>) -> SizeLimitDraft {
        let Some(before) = before else {
            return SizeLimitDraft { unlimited: self.unlimited, value: self.value, unit: self.unit };
        };
        let unlimited =
            self.unlimited.or((self.value.is_some() || self.unit.is_some()).then_some(false)).or(before.unlimited);
        let keep = unlimited == Some(false) && before.unlimited == Some(false);
        SizeLimitDraft {
            unlimited,
            value: self.value.or(if keep { before.value } else { None }),
            unit: self.unit.or(if keep { before.unit } else { None }),
        }
    }
}

/// A JSON merge patch (RFC 7396) of the settings: fields left out keep their value; a list given replaces the whole list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"destination_domains": ["example.com"], "message_size_limit": {"value": 10, "unit": "MB"}}))]
pub struct SettingsPatch {
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    #[schema(nullable = false)]
    pub destination_domains: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub clients: Option<Vec<String>>,
    #[schema(nullable = false)]
    pub message_size_limit: Option<SizeLimitPatch>,
}

impl SettingsPatch {
    /// The settings this patch asks for on top of `base` (absent: every field must be given).
    pub fn over(self, base: Option<SettingsDraft>) -> SettingsDraft {
        let (enabled, domains, clients, size) = match base {
            Some(b) => (Some(b.enabled), Some(b.destination_domains), Some(b.clients), Some(b.message_size_limit)),
            None => (None, None, None, None),
        };
        SettingsDraft {
            enabled: self.enabled.or(enabled).unwrap_or_default(),
            destination_domains: self.destination_domains.or(domains).unwrap_or_default(),
            clients: self.clients.or(clients).unwrap_or_default(),
            message_size_limit: match self.message_size_limit {
                Some(patch) => patch.over(size),
                None => size.unwrap_or_default(),
            },
        }
    }
}

/// How many live workers of the sensor have applied a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

/// SMTP integration settings of one sensor as stored, with their revision: what the API serves and
/// what a worker receives on the config stream (ARCHITECTURE §4 gives the exact semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "enabled": true,
    "destination_domains": ["example.com", "!hr.example.com"],
    "clients": ["192.0.2.0/24", "!192.0.2.7", "2001:db8::/32"],
    "message_size_limit": {"unlimited": false, "value": 25, "unit": "MB"},
    "max_message_bytes": 26214400,
    "clamped_to_platform_cap": false,
    "revision": 7,
    "updated_at": "2026-11-28T10:00:00Z",
    "updated_by": "alice"
}))]
pub struct SmtpIntegration {
    #[serde(flatten)]
    pub document: SettingsDocument,
    /// The size limit in bytes (read-only; "unlimited" means the platform cap).
    #[schema(read_only)]
    pub max_message_bytes: u64,
    /// True when the stored limit is above the platform cap (lowered since it was set): the limit
    /// in force, `max_message_bytes`, is the cap. The stored limit stays as chosen and may be kept
    /// by writes that leave it unchanged.
    // Absent from documents written before it existed (the revision log keeps them as sent).
    #[serde(default)]
    #[schema(read_only)]
    pub clamped_to_platform_cap: bool,
    /// Increases by one with every change; the `ETag` is this number in quotes.
    #[schema(read_only)]
    pub revision: i64,
    #[schema(read_only)]
    pub updated_at: DateTime<Utc>,
    #[schema(read_only)]
    pub updated_by: String,
    /// Present when a write asked to wait (`?wait=applied`): how far the change has reached the sensor's workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub rollout: Option<Rollout>,
}

impl SmtpIntegration {
    /// Fields a client may echo back from a `GET` in a `PUT`; they are ignored there.
    pub const READ_ONLY: &[&str] =
        &["max_message_bytes", "clamped_to_platform_cap", "revision", "updated_at", "updated_by", "rollout"];

    pub fn new(settings: &SmtpSettings, revision: i64, updated_at: DateTime<Utc>, updated_by: &str, cap: u64) -> Self {
        SmtpIntegration {
            document: settings.into(),
            max_message_bytes: settings.max_message_bytes(cap),
            clamped_to_platform_cap: settings.message_size_limit.is_above(cap),
            revision,
            updated_at,
            updated_by: updated_by.to_owned(),
            rollout: None,
        }
    }
}
