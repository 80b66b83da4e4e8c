use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "smtp_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sensor_id: Uuid,
    pub tenant_id: Uuid,
    pub enabled: bool,
    /// JSON array of normalised entries, in the order the administrator gave them.
    pub destination_domains: Json,
    pub clients: Json,
    pub size_unlimited: bool,
    pub size_value: Option<i64>,
    pub size_unit: Option<String>,
    pub revision: i64,
    pub updated_at: DateTimeUtc,
    pub updated_by: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
