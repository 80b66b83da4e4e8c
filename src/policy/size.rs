use std::fmt;

use serde::{Deserialize, Serialize};

use super::Violation;
use super::violation::quote;

const FIELD: &str = "/message_size_limit";
const VALUE_FIELD: &str = "/message_size_limit/value";
const UNIT_FIELD: &str = "/message_size_limit/unit";

/// Binary size units as the API spells them: exactly `"KB"`, `"MB"`, `"GB"`, 1 KB = 1024 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SizeUnit {
    KB,
    MB,
    GB,
}

impl SizeUnit {
    pub const ALL: [SizeUnit; 3] = [SizeUnit::KB, SizeUnit::MB, SizeUnit::GB];

    pub const fn bytes(self) -> u64 {
        match self {
            SizeUnit::KB => 1 << 10,
            SizeUnit::MB => 1 << 20,
            SizeUnit::GB => 1 << 30,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            SizeUnit::KB => "KB",
            SizeUnit::MB => "MB",
            SizeUnit::GB => "GB",
        }
    }

    /// Exact, case-sensitive match: "mb" is refused rather than guessed, because
    /// "mb" and "Mb" mean other things elsewhere.
    pub fn from_name(name: &str) -> Option<SizeUnit> {
        Self::ALL.into_iter().find(|unit| unit.as_str() == name)
    }
}

impl fmt::Display for SizeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SizeLimit {
    /// Up to the platform cap, which is also what EHLO advertises.
    #[default]
    Unlimited,
    Limited {
        value: u64,
        unit: SizeUnit,
    },
}

impl SizeLimit {
    /// The largest message accepted, in bytes. Never above `platform_cap`: parse refuses
    /// such a limit, and a stored one that a later, lower cap overtook is clamped to it.
    pub fn max_bytes(&self, platform_cap: u64) -> u64 {
        match *self {
            SizeLimit::Unlimited => platform_cap,
            SizeLimit::Limited { value, unit } => value.saturating_mul(unit.bytes()).min(platform_cap),
        }
    }

    /// A limit set under a higher platform cap than today's: [`SizeLimit::max_bytes`] clamps it.
    pub fn is_above(&self, platform_cap: u64) -> bool {
        match *self {
            SizeLimit::Unlimited => false,
            SizeLimit::Limited { value, unit } => value.saturating_mul(unit.bytes()) > platform_cap,
        }
    }

    pub fn allows(&self, size: u64, platform_cap: u64) -> bool {
        size <= self.max_bytes(platform_cap)
    }

    /// The API form of this limit, e.g. to echo the stored settings.
    pub fn to_draft(&self) -> SizeLimitDraft {
        match *self {
            SizeLimit::Unlimited => SizeLimitDraft { unlimited: Some(true), value: None, unit: None },
            SizeLimit::Limited { value, unit } => SizeLimitDraft {
                unlimited: Some(false),
                value: Some(i64::try_from(value).unwrap_or(i64::MAX)),
                unit: Some(unit.as_str().to_owned()),
            },
        }
    }
}

/// `message_size_limit` as it came from the API: JSON types already checked, meaning not yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SizeLimitDraft {
    pub unlimited: Option<bool>,
    pub value: Option<i64>,
    pub unit: Option<String>,
}

impl SizeLimitDraft {
    /// Checks the combination of fields and the platform cap, reporting every problem.
    pub fn parse(&self, platform_cap: u64) -> Result<SizeLimit, Vec<Violation>> {
        if self.unlimited == Some(true) {
            if self.value.is_some() || self.unit.is_some() {
                return Err(vec![Violation::new(FIELD, "value and unit must be omitted when unlimited is true")]);
            }
            return Ok(SizeLimit::Unlimited);
        }
        if self.unlimited.is_none() && self.value.is_none() && self.unit.is_none() {
            return Err(vec![Violation::new(
                FIELD,
                "give {\"unlimited\": true}, or a value and a unit, e.g. {\"unlimited\": false, \"value\": 25, \"unit\": \"MB\"}",
            )]);
        }

        let mut violations = Vec::new();
        let value = match self.value {
            None => {
                violations.push(Violation::new(
                    VALUE_FIELD,
                    "a value is required unless unlimited is true; give a positive whole number",
                ));
                None
            }
            Some(value) => match u64::try_from(value) {
                Ok(positive) if positive > 0 => Some(positive),
                _ => {
                    violations.push(Violation::new(VALUE_FIELD, "must be a positive whole number"));
                    None
                }
            },
        };
        let unit = match self.unit.as_deref() {
            None => {
                violations.push(Violation::new(
                    UNIT_FIELD,
                    "a unit is required unless unlimited is true; use \"KB\", \"MB\" or \"GB\"",
                ));
                None
            }
            Some(name) => {
                let unit = SizeUnit::from_name(name);
                if unit.is_none() {
                    violations.push(Violation::new(UNIT_FIELD, unit_message(name)));
                }
                unit
            }
        };

        if let (Some(value), Some(unit)) = (value, unit) {
            match value.checked_mul(unit.bytes()) {
                Some(bytes) if bytes <= platform_cap => {
                    return Ok(SizeLimit::Limited { value, unit });
                }
                _ => violations.push(Violation::new(VALUE_FIELD, above_cap_message(value, unit, platform_cap))),
            }
        }
        Err(violations)
    }
}

fn unit_message(name: &str) -> String {
    match SizeUnit::ALL.into_iter().find(|unit| unit.as_str().eq_ignore_ascii_case(name)) {
        Some(unit) => format!(
            "must be exactly \"KB\", \"MB\" or \"GB\" (upper case); write \"{unit}\" instead of {}",
            quote(name)
        ),
        None => {
            format!("must be exactly \"KB\", \"MB\" or \"GB\" (binary units: 1 KB = 1024 bytes); got {}", quote(name))
        }
    }
}

fn above_cap_message(value: u64, unit: SizeUnit, platform_cap: u64) -> String {
    let largest = platform_cap / unit.bytes();
    let hint =
        if largest > 0 { format!("the largest value in {unit} is {largest}") } else { "use a smaller unit".to_owned() };
    format!(
        "{value} {unit} is above the platform limit of {platform_cap} bytes ({}); {hint}, or set unlimited to true to allow up to the platform limit",
        human_bytes(platform_cap)
    )
}

/// A byte count in the largest binary unit it reaches, e.g. "100 MB" or "about 1.5 GB".
pub(crate) fn human_bytes(bytes: u64) -> String {
    for unit in [SizeUnit::GB, SizeUnit::MB, SizeUnit::KB] {
        let size = unit.bytes();
        if bytes < size {
            continue;
        }
        if bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
        let tenths = (u128::from(bytes) * 10 + u128::from(size) / 2) / u128::from(size);
        return format!("about {}.{} {unit}", tenths / 10, tenths % 10);
    }
    format!("{bytes} bytes")
}
