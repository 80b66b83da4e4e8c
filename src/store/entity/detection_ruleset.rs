use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "detection_rulesets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The PCN (every sensor of the tenant) or an SCN (its sensors).
    pub node_id: Uuid,
    pub name: String,
    pub description: String,
    /// YARA source, as written.
    pub source: String,
    pub enabled: bool,
    /// Names of the rules switched off.
    pub disabled_rules: Json,
    /// Names of every rule in the source, as compiled at the last write.
    pub rules: Json,
    pub revision: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
