//! Sensor workers: what each reports having applied, and when it was last heard from.
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::sensor_worker;
use super::{StoreError, TenantScope, sensors};

/// A worker's acknowledgement or heartbeat.
#[derive(Debug, Clone)]
pub struct Report {
    pub instance_id: String,
    pub applied_token: Option<String>,
    pub applied_settings_revision: Option<i64>,
    pub rejected: Value,
    pub version: String,
    pub listen_address: Option<String>,
}

pub async fn report(
    db: &DatabaseConnection,
    tenant: Uuid,
    sensor: Uuid,
    r: Report,
) -> Result<sensor_worker::Model, StoreError> {
    let now = super::now();
    use sensor_worker::Column as C;
    sensor_worker::Entity::insert(sensor_worker::ActiveModel {
        tenant_id: Set(tenant),
        sensor_id: Set(sensor),
        instance_id: Set(r.instance_id.clone()),
        applied_token: Set(r.applied_token),
        applied_settings_revision: Set(r.applied_settings_revision),
        rejected: Set(r.rejected),
        version: Set(r.version),
        listen_address: Set(r.listen_address),
        first_seen: Set(now),
        last_seen: Set(now),
    })
    .on_conflict(
        OnConflict::columns([C::TenantId, C::SensorId, C::InstanceId])
            .update_columns([
                C::AppliedToken,
                C::AppliedSettingsRevision,
                C::Rejected,
                C::Version,
                C::ListenAddress,
                C::LastSeen,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    sensor_worker::Entity::find()
        .filter(C::TenantId.eq(tenant))
        .filter(C::SensorId.eq(sensor))
        .filter(C::InstanceId.eq(r.instance_id))
        .one(db)
        .await?
        .ok_or(StoreError::NotFound("worker"))
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor: Uuid,
) -> Result<Vec<sensor_worker::Model>, StoreError> {
    sensors::get(db, scope, sensor).await?;
    Ok(sensor_worker::Entity::find()
        .filter(sensor_worker::Column::TenantId.eq(scope.tenant))
        .filter(sensor_worker::Column::SensorId.eq(sensor))
        .order_by_asc(sensor_worker::Column::InstanceId)
        .all(db)
        .await?)
}
