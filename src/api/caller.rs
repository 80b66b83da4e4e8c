//! The authenticated caller of a request and what it may do (ARCHITECTURE §3).
//!
//! Scope first, role second: an object outside the caller's scope is reported as missing (404)
//! before any role check, so a response never tells whether another tenant's object exists.
use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, http::header, web};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::request_id::RequestId;
use crate::auth::{Principal, Role, TokenError};
use crate::store::{self, Actor, TenantScope};

/// What a caller wants to do; [`Caller::require`] maps it onto the roles matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ManageTenants,
    ManageScns,
    ReadNodes,
    ReadSensors,
    ManageSensors,
    ReadSettings,
    WriteSettings,
    ReadAudit,
    ReadMessages,
    Rescan,
    ReadRulesets,
    WriteRulesets,
    ReadRetrohunts,
    RunRetrohunts,
    ReadAlerts,
    ManageAlerts,
    ReadRetention,
    ManageRetention,
    EraseMessages,
}

impl Permission {
    fn describe(self) -> &'static str {
        match self {
            Permission::ManageTenants => "manage tenants",
            Permission::ManageScns => "create or delete SCNs",
            Permission::ReadNodes => "read central nodes",
            Permission::ReadSensors => "read sensors",
            Permission::ManageSensors => "create, rename, re-attach or delete sensors",
            Permission::ReadSettings => "read SMTP integration settings",
            Permission::WriteSettings => "change SMTP integration settings",
            Permission::ReadAudit => "read audit events",
            Permission::ReadMessages => "read received messages",
            Permission::Rescan => "rescan messages",
            Permission::ReadRulesets => "read detection rulesets",
            Permission::WriteRulesets => "write detection rulesets",
            Permission::ReadRetrohunts => "read retro-hunts",
            Permission::RunRetrohunts => "start or abort retro-hunts",
            Permission::ReadAlerts => "read alert destinations and events",
            Permission::ManageAlerts => "manage alert destinations",
            Permission::ReadRetention => "read the tenant's message retention",
            Permission::ManageRetention => "change the tenant's message retention",
            Permission::EraseMessages => "erase messages",
        }
    }
}

pub struct Caller {
    pub principal: Principal,
    /// Signed in at the tenant's PCN (whole-tenant scope) rather than at an SCN.
    pub at_pcn: bool,
    pub request_id: String,
}

impl Caller {
    /// Scope first, role second: `find` loads the object within the caller's scope of `tenant`
    /// (outside it, it is missing: 404), and only then is `needs` checked (403).
    ///
    /// A kind of object the principal can never reach (the operator inside a tenant, a sensor's
    /// token outside its worker endpoints) is looked for in a scope that sees nothing, so an
    /// existing object answers exactly like a missing one.
    pub async fn reach<T>(
        &self,
        state: &AppState,
        tenant: Uuid,
        needs: Permission,
        find: impl AsyncFnOnce(TenantScope) -> Result<T, store::StoreError>,
    ) -> Result<(TenantScope, T), ApiError> {
        let scope = self.scope(state, tenant).await?;
        let looked_in = if self.can_reach(needs) { scope } else { TenantScope::nothing_of(tenant) };
        let found = find(looked_in).await?;
        self.require(needs)?;
        Ok((scope, found))
    }

    /// Whether objects of the kind `needs` acts on are within this principal's reach at all.
    fn can_reach(&self, needs: Permission) -> bool {
        use Permission::*;
        match self.role() {
            // Tenancy only: the tenant and its nodes, never what is inside them.
            // (Its retention too: the operator sets the platform's default and cap.)
            Role::PlatformOperator => {
                matches!(needs, ManageTenants | ManageScns | ReadNodes | ReadRetention | ManageRetention)
            }
            // Its own sensor's worker endpoints only (`own_sensor`).
            Role::Sensor => false,
            _ => true,
        }
    }

    pub fn role(&self) -> Role {
        self.principal.role()
    }

    pub fn actor(&self) -> Actor {
        Actor {
            sub: self.principal.sub().to_owned(),
            role: self.role().as_str().to_owned(),
            node: self.principal.node(),
            request_id: self.request_id.clone(),
        }
    }

    /// 403 unless the roles matrix lets this caller do `what` (within the scope already checked).
    pub fn require(&self, what: Permission) -> Result<(), ApiError> {
        use Permission::*;
        let role = self.role();
        let allowed = match what {
            ManageTenants => role == Role::PlatformOperator,
            ManageScns => role == Role::PlatformOperator || (role == Role::Administrator && self.at_pcn),
            ReadNodes => role != Role::Sensor,
            ReadSensors => !matches!(role, Role::PlatformOperator | Role::Sensor),
            ManageSensors | WriteSettings => role == Role::Administrator,
            ReadSettings | ReadAudit => matches!(role, Role::Administrator | Role::SecurityAuditor),
            ManageAlerts => role == Role::Administrator,
            ReadMessages | ReadRulesets | ReadRetrohunts | ReadAlerts => matches!(
                role,
                Role::Administrator | Role::SecurityAuditor | Role::SeniorSecurityOfficer | Role::SecurityOfficer
            ),
            Rescan | WriteRulesets | RunRetrohunts => role == Role::SeniorSecurityOfficer,
            ReadRetention => match role {
                Role::Administrator => self.at_pcn,
                Role::Sensor => false,
                _ => true,
            },
            ManageRetention => role == Role::Administrator && self.at_pcn,
            EraseMessages => role == Role::Administrator,
        };
        if allowed { Ok(()) } else { Err(ApiError::forbidden(role, what.describe())) }
    }

    /// The part of `tenant` this caller sees; 404 when it sees none of it.
    pub async fn scope(&self, state: &AppState, tenant: Uuid) -> Result<TenantScope, ApiError> {
        match &self.principal {
            Principal::Operator { .. } => {
                store::tenants::get(&state.db, tenant).await?;
                Ok(TenantScope::whole_tenant(tenant))
            }
            Principal::Member { tenant: own, node, .. } if *own == tenant => {
                Ok(TenantScope::of_member(tenant, *node, self.at_pcn))
            }
            Principal::Sensor { tenant: own, sensor, .. } if *own == tenant => {
                Ok(TenantScope { tenant, node: None, sensor: Some(*sensor) })
            }
            _ => Err(ApiError::NotFound("tenant")),
        }
    }
}

impl Caller {
    /// For the worker endpoints: the tenant of `sensor` when the caller is that sensor's own
    /// token. Anyone else gets 403 if the sensor is in their scope, 404 if not.
    ///
    /// A deleted sensor's token was already refused (401) by [`Token::check`].
    pub async fn own_sensor(&self, state: &AppState, sensor: Uuid) -> Result<Uuid, ApiError> {
        match &self.principal {
            Principal::Sensor { tenant, sensor: own, .. } if *own == sensor => Ok(*tenant),
            Principal::Member { tenant, .. } => {
                let scope = self.scope(state, *tenant).await?;
                store::sensors::get(&state.db, scope, sensor).await?;
                Err(ApiError::forbidden(self.role(), "use a sensor's worker endpoints"))
            }
            _ => Err(ApiError::NotFound("sensor")),
        }
    }
}

/// A sensor's token whose sensor no longer exists.
pub fn sensor_gone() -> ApiError {
    ApiError::Unauthorized(TokenError::Invalid("the sensor named in the token no longer exists".into()))
}

fn bearer(req: &HttpRequest) -> Result<String, TokenError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(token.trim().to_owned())
}

/// A request's verified token, before anything it names is looked up. Most handlers take a
/// [`Caller`], for which the member's node and the sensor are looked up first; the hot paths take
/// this and fold that look-up into their own statement ([`Token::own_sensor`], the settings read).
pub struct Token {
    pub principal: Principal,
    pub request_id: String,
}

impl Token {
    /// The caller, once the token's node (member: exists, and is it the PCN) or sensor (sensor
    /// token: still exists) is looked up; 401 when it no longer exists.
    pub async fn check(self, state: &AppState) -> Result<Caller, ApiError> {
        let at_pcn = match &self.principal {
            Principal::Member { tenant, node, .. } => {
                let node = store::nodes::of_member(&state.db, *tenant, *node).await?.ok_or_else(node_gone)?;
                node.kind == store::nodes::PCN
            }
            Principal::Sensor { tenant, sensor, .. } => {
                match store::sensors::get(&state.db, TenantScope::whole_tenant(*tenant), *sensor).await {
                    Err(store::StoreError::NotFound(_)) => return Err(sensor_gone()),
                    other => other.map(|_| false)?,
                }
            }
            Principal::Operator { .. } => false,
        };
        Ok(self.known(at_pcn))
    }

    /// The caller, with the node's kind found by the handler's own statement.
    pub fn known(self, at_pcn: bool) -> Caller {
        Caller { principal: self.principal, at_pcn, request_id: self.request_id }
    }

    /// [`Caller::own_sensor`] for the endpoints that check the sensor's existence themselves:
    /// the config stream, which answers a deleted sensor's token so a worker that was away
    /// learns of the deletion, and the hand-off, whose storing statement finds no sensor.
    pub async fn own_sensor(self, state: &AppState, sensor: Uuid) -> Result<Uuid, ApiError> {
        match &self.principal {
            Principal::Sensor { tenant, sensor: own, .. } if *own == sensor => Ok(*tenant),
            _ => self.check(state).await?.own_sensor(state, sensor).await,
        }
    }
}

/// A member's token whose node no longer exists.
pub fn node_gone() -> ApiError {
    ApiError::Unauthorized(TokenError::Invalid("the node named in the token does not exist".into()))
}

impl FromRequest for Token {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        std::future::ready(match req.app_data::<web::Data<AppState>>() {
            None => Err(ApiError::Internal(anyhow::anyhow!("application state missing"))),
            Some(state) => bearer(req)
                .and_then(|token| state.keys.verify(&token))
                .map(|principal| Token { principal, request_id })
                .map_err(ApiError::Unauthorized),
        })
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = Token::from_request(req, payload).into_inner();
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
            token?.check(&state).await
        })
    }
}
