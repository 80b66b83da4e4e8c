//! Sensor workers: what each reports having applied, and when it was last heard from.
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};
use uuid::Uuid;

use super::db::as_tenant;
use super::entity::sensor_worker;
use super::{StoreError, TenantScope, scope};
use crate::wire::WorkerReport;

/// Records a worker's acknowledgement or heartbeat.
pub async fn report(
    db: &DatabaseConnection,
    tenant: Uuid,
    sensor: Uuid,
    instance_id: &str,
    r: WorkerReport,
) -> Result<sensor_worker::Model, StoreError> {
    let now = super::now();
    use sensor_worker::Column as C;
    as_tenant(db, tenant, async |txn| {
        sensor_worker::Entity::insert(sensor_worker::ActiveModel {
            tenant_id: Set(tenant),
            sensor_id: Set(sensor),
            instance_id: Set(instance_id.to_owned()),
            applied_token: Set(r.applied_token.clone()),
            applied_settings_revision: Set(r.applied_settings_revision),
            rejected: Set(serde_json::to_value(r.rejected.clone().unwrap_or_default()).unwrap_or_default()),
            version: Set(r.version.clone()),
            listen_address: Set(r.listen_address.clone()),
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
        .exec_without_returning(txn)
        .await?;
        sensor_worker::Entity::find()
            .filter(C::TenantId.eq(tenant))
            .filter(C::SensorId.eq(sensor))
            .filter(C::InstanceId.eq(instance_id))
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("worker"))
    })
    .await
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    sensor: Uuid,
) -> Result<Vec<sensor_worker::Model>, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        scope::sensor(txn, scope, sensor).await?;
        Ok(sensor_worker::Entity::find()
            .filter(sensor_worker::Column::TenantId.eq(scope.tenant))
            .filter(sensor_worker::Column::SensorId.eq(sensor))
            .order_by_asc(sensor_worker::Column::InstanceId)
            .all(txn)
            .await?)
    })
    .await
}
