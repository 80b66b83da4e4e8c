use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "retrohunt_matches")]
pub struct Model {
    /// For paging; the key is the rest.
    pub id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub retrohunt_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: Uuid,
    /// The match's place among the message's matches.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i32,
    pub received_at: DateTimeUtc,
    pub sensor_id: Uuid,
    pub namespace: String,
    pub rule: String,
    pub object: String,
    pub part: Option<i32>,
    pub archive_path: Json,
    /// `[{pattern, offset, length}]`.
    pub strings: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
