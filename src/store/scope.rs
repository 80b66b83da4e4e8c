use uuid::Uuid;

/// What part of one tenant a caller may see. Every tenant query filters by it, so an object
/// outside it is simply not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantScope {
    pub tenant: Uuid,
    /// Signed in at an SCN: only that node and the sensors attached to it.
    pub node: Option<Uuid>,
    /// A sensor's own token: only that sensor.
    pub sensor: Option<Uuid>,
}

impl TenantScope {
    pub fn whole_tenant(tenant: Uuid) -> Self {
        TenantScope { tenant, node: None, sensor: None }
    }
}
