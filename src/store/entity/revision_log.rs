use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "revision_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub rev: i64,
    pub tenant_id: Uuid,
    pub sensor_id: Uuid,
    /// "upsert" or "delete"
    pub kind: String,
    pub payload: Json,
    pub committed_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
