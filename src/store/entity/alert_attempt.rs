use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub delivery_id: Uuid,
    pub destination_id: Uuid,
    pub attempt: i32,
    pub attempted_at: DateTimeUtc,
    /// `delivered`, `failed`, `refused` (the address guard) or `gone` (410).
    pub outcome: String,
    /// The HTTP status (webhooks) or SMTP reply code (e-mail).
    pub status: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i64,
    /// The start of the receiver's answer, at most 1 KiB.
    pub response: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
