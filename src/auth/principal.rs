use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The roles of ARCHITECTURE §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Role {
    PlatformOperator,
    Administrator,
    SecurityAuditor,
    SeniorSecurityOfficer,
    SecurityOfficer,
    Sensor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformOperator => "platform_operator",
            Role::Administrator => "administrator",
            Role::SecurityAuditor => "security_auditor",
            Role::SeniorSecurityOfficer => "senior_security_officer",
            Role::SecurityOfficer => "security_officer",
            Role::Sensor => "sensor",
        }
    }

    pub fn is_officer(self) -> bool {
        matches!(self, Role::SeniorSecurityOfficer | Role::SecurityOfficer)
    }
}

/// The claims a token carries. `exp`, `iss`, `aud` and `sub` are checked by the verifier;
/// `tenant`, `node` and `sensor` are required as the role needs them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<Uuid>,
    pub iss: String,
    /// One audience, or (RFC 7519 §4.1.3) an array of them, of which the verifier required ours:
    /// kept as its first.
    #[serde(deserialize_with = "one_or_first")]
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
}

/// A verified caller. Constructed only by [`super::KeySet::verify`], so holding one means the token
/// was valid and carried every claim its role needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator {
        sub: String,
    },
    /// A person signed in at a central node (PCN or SCN) of a tenant.
    Member {
        sub: String,
        role: Role,
        tenant: Uuid,
        node: Uuid,
    },
    Sensor {
        sub: String,
        tenant: Uuid,
        sensor: Uuid,
    },
}

impl Principal {
    pub fn sub(&self) -> &str {
        match self {
            Principal::Operator { sub } | Principal::Member { sub, .. } | Principal::Sensor { sub, .. } => sub,
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Principal::Operator { .. } => Role::PlatformOperator,
            Principal::Member { role, .. } => *role,
            Principal::Sensor { .. } => Role::Sensor,
        }
    }

    pub fn node(&self) -> Option<Uuid> {
        match self {
            Principal::Member { node, .. } => Some(*node),
            _ => None,
        }
    }

    pub(super) fn from_claims(claims: Claims) -> Result<Self, String> {
        let need = |value: Option<Uuid>, name: &str| {
            value.ok_or_else(|| format!("role {} requires the `{name}` claim", claims.role.as_str()))
        };
        Ok(match claims.role {
            Role::PlatformOperator => Principal::Operator { sub: claims.sub.clone() },
            Role::Sensor => Principal::Sensor {
                tenant: need(claims.tenant, "tenant")?,
                sensor: need(claims.sensor, "sensor")?,
                sub: claims.sub.clone(),
            },
            role => Principal::Member {
                tenant: need(claims.tenant, "tenant")?,
                node: need(claims.node, "node")?,
                role,
                sub: claims.sub.clone(),
            },
        })
    }
}

/// A string, or the first of an array of strings.
fn one_or_first<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => Ok(one),
        OneOrMany::Many(many) => {
            many.into_iter().next().ok_or_else(|| serde::de::Error::custom("aud is an empty array"))
        }
    }
}
