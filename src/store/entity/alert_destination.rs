use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_destinations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The node of whoever created it: an SCN's destination hears of that SCN's sensors only.
    pub node_id: Uuid,
    pub name: String,
    /// `webhook`, `syslog` or `email`.
    pub kind: String,
    /// What the kind needs, without secrets (`alerts::DestinationConfig`).
    pub config: Json,
    /// The webhook's signing secret (`whsec_…`) or the relay's password; never shown again.
    pub secret: Option<String>,
    /// A rotated-out signing secret that still signs until `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    /// `alerts::Filters`.
    pub filters: Json,
    /// `active`, `paused` or `disabled`.
    pub state: String,
    pub disabled_reason: Option<String>,
    /// When the deliveries to it began failing without a success since.
    pub failing_since: Option<DateTimeUtc>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
