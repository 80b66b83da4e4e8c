use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "detection_ruleset_revisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub ruleset_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub revision: i64,
    pub node_id: Uuid,
    pub name: String,
    pub description: String,
    pub source: String,
    pub enabled: bool,
    pub disabled_rules: Json,
    pub created_at: DateTimeUtc,
    pub created_by: String,
    /// Set when this revision was written by restoring an older one.
    pub restored_from: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
