use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "sensor_workers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub sensor_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub instance_id: String,
    /// Stream position (`epoch:rev`) the worker last applied.
    pub applied_token: Option<String>,
    pub applied_settings_revision: Option<i64>,
    /// JSON array of `{item, reason}` the worker could not apply.
    pub rejected: Json,
    pub version: String,
    pub listen_address: Option<String>,
    pub first_seen: DateTimeUtc,
    pub last_seen: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
