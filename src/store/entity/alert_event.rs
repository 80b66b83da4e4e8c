use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// Increases with every event of the tenant, without gaps.
    pub sequence: i64,
    /// `message.detected`, `retrohunt.matched`, …
    pub kind: String,
    pub occurred_at: DateTimeUtc,
    /// Where it happened, for the destinations' filters and scopes.
    pub node_id: Option<Uuid>,
    pub sensor_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    /// The event's `data`.
    pub payload: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
