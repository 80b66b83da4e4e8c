use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "retrohunts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// The node of whoever started it: an SCN's hunts read that SCN's sensors only.
    pub node_id: Uuid,
    /// `queued`, `running`, `finished`, `aborted` or `failed`.
    pub state: String,
    /// The saved ruleset it runs, if it was started with one (its source is copied at the start).
    pub ruleset_id: Option<Uuid>,
    /// The rules' namespace: the saved ruleset's name, or `inline`.
    pub ruleset_name: String,
    pub source: String,
    pub since: DateTimeUtc,
    pub until: DateTimeUtc,
    /// The sensors whose mail it reads; empty: every sensor of the tenant.
    pub sensor_ids: Json,
    pub match_cap: i64,
    pub total: i64,
    pub scanned: i64,
    pub skipped: i64,
    pub bytes: i64,
    pub matches: i64,
    pub cap_reached: bool,
    /// The last message worked off (ids are time-ordered).
    pub cursor: Option<Uuid>,
    pub error: Option<String>,
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
