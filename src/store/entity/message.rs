use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    /// UUIDv7: ordering by id is ordering by arrival, and it is the pagination cursor.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub sensor_id: Uuid,
    pub idempotency_key: String,
    /// "incomplete" while chunks arrive, "stored" once complete (its verdict "pending" until scanned).
    pub status: String,
    pub received_at: DateTimeUtc,
    pub client_ip: String,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Json,
    pub tls: bool,
    pub worker: String,
    pub size: i64,
    pub sha256: Option<String>,
    pub md5: Option<String>,
    pub header_from: Option<String>,
    pub header_to: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub verdict: Option<String>,
    pub detections: Json,
    pub parts: Json,
    /// What makes a retry the same message (sensor, envelope, bytes); see `messages::content_key`.
    pub content_key: Option<String>,
    /// Failed scans so far; the next try waits until `scan_after`.
    pub scan_attempts: i32,
    pub scan_after: Option<DateTimeUtc>,
    /// When the current verdict was reached.
    pub scanned_at: Option<DateTimeUtc>,
    /// The results of earlier scans, oldest first (`messages::EarlierScan`), kept by a rescan.
    pub earlier_scans: Json,
    /// How each engine's look went in the current result (`scan::EngineRun`).
    pub engines: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
