//! Alerts: the tenants' destinations, the outbox of events and their deliveries.
//!
//! An event is written in the transaction of what causes it (a verdict, a retro-hunt's match or
//! end, a destination disabled), with one delivery row per destination whose filters admit it:
//! no alert for a verdict that did not commit, none lost when a replica dies after the commit.
//! Delivery workers on any replica claim due deliveries (`FOR UPDATE SKIP LOCKED`) and hold them
//! for a while by moving their due time on; one killed mid-delivery leaves them due again once
//! the hold runs out, so an event is delivered at least once, with the same id every time.
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use serde_json::json;
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::{Mode, Reach, as_tenant, run_in};
use super::entity::{
    alert_attempt as attempt, alert_delivery as delivery, alert_destination as dest, alert_event as event,
    alert_sequence as sequence, message, node, sensor,
};
use super::{Page, PageRequest, StoreError, TenantScope};
use crate::alerts::{self, AlertDetection, AlertMessage, Filters, Origin};
use crate::scan::{Detection, Part};

pub const ACTIVE: &str = "active";
pub const PAUSED: &str = "paused";
pub const DISABLED: &str = "disabled";

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// The most events one replay sends again.
pub const MAX_REPLAY: u64 = 10_000;

/// A destination to create.
pub struct NewDestination {
    pub name: String,
    pub kind: String,
    pub config: serde_json::Value,
    pub secret: Option<String>,
    pub filters: Filters,
}

/// A destination's version for `If-Match`: when it last changed, in microseconds.
pub fn version(d: &dest::Model) -> i64 {
    d.updated_at.timestamp_micros()
}

/// The ETag of a destination at `version`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A change to a destination; `None`: unchanged.
#[derive(Default)]
pub struct DestinationChange {
    /// The version the change is based on (`If-Match`); `None`: any.
    pub based_on: Option<i64>,
    pub name: Option<String>,
    pub config: Option<serde_json::Value>,
    pub secret: Option<String>,
    pub filters: Option<Filters>,
}

fn in_scope(scope: TenantScope) -> sea_orm::Select<dest::Entity> {
    let mut query = dest::Entity::find().filter(dest::Column::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        query = query.filter(dest::Column::NodeId.eq(node));
    }
    if scope.sensor.is_some() {
        query = query.filter(dest::Column::Id.eq(Uuid::nil()));
    }
    query
}

/// The destination, locked until the transaction ends (a change reads what it changes).
async fn locked(conn: &impl ConnectionTrait, scope: TenantScope, id: Uuid) -> Result<dest::Model, StoreError> {
    let query = in_scope(scope).filter(dest::Column::Id.eq(id)).lock_exclusive();
    query.one(conn).await?.ok_or(StoreError::NotFound("alert destination"))
}

async fn one(conn: &impl ConnectionTrait, scope: TenantScope, id: Uuid) -> Result<dest::Model, StoreError> {
    in_scope(scope).filter(dest::Column::Id.eq(id)).one(conn).await?.ok_or(StoreError::NotFound("alert destination"))
}

/// What the audit log keeps of a destination: never its secret.
fn audited(d: &dest::Model) -> serde_json::Value {
    json!({"name": d.name, "kind": d.kind, "config": d.config, "filters": d.filters, "state": d.state})
}

fn entry(
    tenant: Uuid,
    action: &'static str,
    id: Uuid,
    before: Option<&dest::Model>,
    after: Option<&dest::Model>,
) -> AuditEntry<'static> {
    AuditEntry {
        tenant,
        action,
        target_type: "alert_destination",
        target_id: id,
        sensor_id: None,
        before: before.map(audited),
        after: after.map(audited),
    }
}

pub async fn create(
    db: &DatabaseConnection,
    scope: TenantScope,
    node: Uuid,
    new: NewDestination,
    actor: &Actor,
) -> Result<dest::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        check_references(txn, scope, &new.filters).await?;
        let now = super::now();
        let created = dest::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(scope.tenant),
            node_id: Set(node),
            name: Set(new.name.clone()),
            kind: Set(new.kind.clone()),
            config: Set(new.config.clone()),
            secret: Set(new.secret.clone()),
            previous_secret: Set(None),
            previous_secret_until: Set(None),
            filters: Set(serde_json::to_value(&new.filters).unwrap_or_default()),
            state: Set(ACTIVE.to_owned()),
            disabled_reason: Set(None),
            failing_since: Set(None),
            created_by: Set(actor.sub.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(txn)
        .await?;
        audit::record(txn, actor, entry(scope.tenant, "alert_destination.create", created.id, None, Some(&created)))
            .await?;
        Ok(created)
    })
    .await
}

/// The sensors and nodes the filters name must be in the caller's scope (else 422, as missing).
async fn check_references(
    conn: &impl ConnectionTrait,
    scope: TenantScope,
    filters: &Filters,
) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    if !filters.sensor_ids.is_empty() {
        let known: Vec<Uuid> = super::scope::sensors(scope)
            .select_only()
            .column(sensor::Column::Id)
            .filter(sensor::Column::Id.is_in(filters.sensor_ids.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        for (i, id) in filters.sensor_ids.iter().enumerate().filter(|(_, id)| !known.contains(id)) {
            missing.push(crate::policy::Violation::new(
                format!("/filters/sensor_ids/{i}"),
                format!("no sensor {id} in your scope"),
            ));
        }
    }
    if !filters.node_ids.is_empty() {
        let mut query = node::Entity::find()
            .select_only()
            .column(node::Column::Id)
            .filter(node::Column::TenantId.eq(scope.tenant))
            .filter(node::Column::Id.is_in(filters.node_ids.iter().copied()));
        if let Some(own) = scope.node {
            query = query.filter(node::Column::Id.eq(own));
        }
        let known: Vec<Uuid> = query.into_tuple().all(conn).await?;
        for (i, id) in filters.node_ids.iter().enumerate().filter(|(_, id)| !known.contains(id)) {
            missing.push(crate::policy::Violation::new(
                format!("/filters/node_ids/{i}"),
                format!("no node {id} in your scope"),
            ));
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(StoreError::Invalid(missing)) }
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    page: PageRequest,
) -> Result<Page<dest::Model>, StoreError> {
    let mut query = in_scope(scope);
    if let Some(after) = page.after {
        query = query.filter(dest::Column::Id.gt(after));
    }
    let query = query.order_by_asc(dest::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<dest::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| one(txn, scope, id).await).await
}

/// Changes a destination with `change` (what it is and where it sends; `check` sees the result
/// before it is written and may refuse it).
pub async fn update(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    change: DestinationChange,
    actor: &Actor,
) -> Result<dest::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = locked(txn, scope, id).await?;
        if change.based_on.is_some_and(|v| v != version(&before)) {
            return Err(StoreError::Stale { current_etag: etag(version(&before)) });
        }
        if let Some(filters) = &change.filters {
            check_references(txn, scope, filters).await?;
        }
        let mut active: dest::ActiveModel = before.clone().into();
        if let Some(name) = change.name.clone() {
            active.name = Set(name);
        }
        if let Some(config) = change.config.clone() {
            active.config = Set(config);
        }
        if let Some(secret) = change.secret.clone() {
            active.secret = Set(Some(secret));
        }
        if let Some(filters) = &change.filters {
            active.filters = Set(serde_json::to_value(filters).unwrap_or_default());
        }
        active.updated_at = Set(super::now());
        let after = active.update(txn).await?;
        audit::record(txn, actor, entry(scope.tenant, "alert_destination.update", id, Some(&before), Some(&after)))
            .await?;
        Ok(after)
    })
    .await
}

pub async fn delete(db: &DatabaseConnection, scope: TenantScope, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = one(txn, scope, id).await?;
        // Its deliveries and their log go with it (foreign keys, cascading).
        dest::Entity::delete_by_id(id).exec(txn).await?;
        audit::record(txn, actor, entry(scope.tenant, "alert_destination.delete", id, Some(&before), None)).await?;
        Ok(())
    })
    .await
}

/// Pauses (`active: false`) or resumes a destination. Its deliveries wait while it is paused;
/// resuming a disabled destination also forgets its failures.
pub async fn set_active(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    active_now: bool,
    actor: &Actor,
) -> Result<dest::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = locked(txn, scope, id).await?;
        let mut active: dest::ActiveModel = before.clone().into();
        active.state = Set(if active_now { ACTIVE } else { PAUSED }.to_owned());
        if active_now {
            active.disabled_reason = Set(None);
            active.failing_since = Set(None);
        }
        active.updated_at = Set(super::now());
        let after = active.update(txn).await?;
        let action = if active_now { "alert_destination.resume" } else { "alert_destination.pause" };
        audit::record(txn, actor, entry(scope.tenant, action, id, Some(&before), Some(&after))).await?;
        Ok(after)
    })
    .await
}

/// How long a rotated-out webhook secret keeps signing.
pub const ROTATION_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Replaces a destination's secret with `secret`; the old one keeps signing for
/// [`ROTATION_OVERLAP`].
pub async fn rotate_secret(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    secret: String,
    actor: &Actor,
) -> Result<dest::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = locked(txn, scope, id).await?;
        let now = super::now();
        let mut active: dest::ActiveModel = before.clone().into();
        active.previous_secret = Set(before.secret.clone());
        active.previous_secret_until = Set(Some(now + ROTATION_OVERLAP));
        active.secret = Set(Some(secret.clone()));
        active.updated_at = Set(now);
        let after = active.update(txn).await?;
        audit::record(
            txn,
            actor,
            entry(scope.tenant, "alert_destination.rotate_secret", id, Some(&before), Some(&after)),
        )
        .await?;
        Ok(after)
    })
    .await
}

/// Queues a `destination.test` event for this destination alone.
pub async fn test(db: &DatabaseConnection, scope: TenantScope, id: Uuid, actor: &Actor) -> Result<Logged, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let d = one(txn, scope, id).await?;
        let data =
            alerts::DestinationTest { destination_id: d.id, name: d.name.clone(), requested_by: actor.sub.clone() };
        let raised = Raised {
            tenant: scope.tenant,
            kind: alerts::DESTINATION_TEST,
            origin: Origin { sensor: None, node: Some(d.node_id) },
            message: None,
            data: serde_json::to_value(data).unwrap_or_default(),
            only: Some(d.id),
        };
        raise(txn, vec![raised]).await?;
        let queued = delivery::Entity::find()
            .filter(delivery::Column::TenantId.eq(scope.tenant))
            .filter(delivery::Column::DestinationId.eq(d.id))
            .order_by_desc(delivery::Column::Id)
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("delivery"))?;
        audit::record(txn, actor, entry(scope.tenant, "alert_destination.test", id, None, None)).await?;
        logged(txn, queued).await
    })
    .await
}

/// A delivery with its event's type and sequence and its attempts, for the delivery log.
pub struct Logged {
    pub delivery: delivery::Model,
    pub kind: String,
    pub sequence: i64,
    pub attempts: Vec<attempt::Model>,
}

/// A destination's deliveries, oldest first, each with its attempts.
pub async fn deliveries(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    page: PageRequest,
) -> Result<Page<Logged>, StoreError> {
    let mut query = delivery::Entity::find()
        .filter(delivery::Column::TenantId.eq(scope.tenant))
        .filter(delivery::Column::DestinationId.eq(id));
    if let Some(after) = page.after {
        query = query.filter(delivery::Column::Id.gt(after));
    }
    let query = query.order_by_asc(delivery::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| {
        one(txn, scope, id).await?;
        let rows = query.clone().all(txn).await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let events: HashMap<Uuid, (String, i64)> = event::Entity::find()
            .filter(event::Column::TenantId.eq(scope.tenant))
            .filter(event::Column::Id.is_in(rows.iter().map(|r| r.event_id)))
            .all(txn)
            .await?
            .into_iter()
            .map(|e| (e.id, (e.kind, e.sequence)))
            .collect();
        let mut attempts: HashMap<Uuid, Vec<attempt::Model>> = HashMap::new();
        for a in attempt::Entity::find()
            .filter(attempt::Column::TenantId.eq(scope.tenant))
            .filter(attempt::Column::DeliveryId.is_in(ids))
            .order_by_asc(attempt::Column::Id)
            .all(txn)
            .await?
        {
            attempts.entry(a.delivery_id).or_default().push(a);
        }
        Ok(rows
            .into_iter()
            .map(|d| {
                let (kind, sequence) = events.get(&d.event_id).cloned().unwrap_or_default();
                let attempts = attempts.remove(&d.id).unwrap_or_default();
                Logged { delivery: d, kind, sequence, attempts }
            })
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Page::from_rows(rows, page, |r| r.delivery.id))
}

/// A delivery with its event's type and sequence, before any attempt.
async fn logged(conn: &impl ConnectionTrait, d: delivery::Model) -> Result<Logged, StoreError> {
    let e = event::Entity::find_by_id(d.event_id).one(conn).await?.ok_or(StoreError::NotFound("alert event"))?;
    let attempts = attempt::Entity::find()
        .filter(attempt::Column::TenantId.eq(d.tenant_id))
        .filter(attempt::Column::DeliveryId.eq(d.id))
        .order_by_asc(attempt::Column::Id)
        .all(conn)
        .await?;
    Ok(Logged { delivery: d, kind: e.kind, sequence: e.sequence, attempts })
}

/// Makes one delivery due now again, with a fresh schedule.
pub async fn retry(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    delivery_id: Uuid,
    actor: &Actor,
) -> Result<Logged, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        one(txn, scope, id).await?;
        let found = delivery::Entity::find()
            .filter(delivery::Column::TenantId.eq(scope.tenant))
            .filter(delivery::Column::DestinationId.eq(id))
            .filter(delivery::Column::Id.eq(delivery_id))
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("delivery"))?;
        let mut active: delivery::ActiveModel = found.into();
        active.state = Set(PENDING.to_owned());
        active.attempts = Set(0);
        active.next_attempt_at = Set(super::now());
        let after = active.update(txn).await?;
        let mut logged = entry(scope.tenant, "alert_destination.retry", id, None, None);
        logged.after = Some(json!({"delivery_id": delivery_id}));
        audit::record(txn, actor, logged).await?;
        self::logged(txn, after).await
    })
    .await
}

/// Sends the tenant's events of `[since, until)` that the destination admits again (at most
/// [`MAX_REPLAY`], oldest first): a delivery each, due now, with the events' own ids.
pub async fn replay(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    actor: &Actor,
) -> Result<u64, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let d = one(txn, scope, id).await?;
        let pcn = is_pcn(txn, scope.tenant, d.node_id).await?;
        let filters: Filters = serde_json::from_value(d.filters.clone()).unwrap_or_default();
        let events = event::Entity::find()
            .filter(event::Column::TenantId.eq(scope.tenant))
            .filter(event::Column::OccurredAt.gte(since))
            .filter(event::Column::OccurredAt.lt(until))
            .filter(event::Column::Kind.ne(alerts::DESTINATION_TEST))
            .order_by_asc(event::Column::Sequence)
            .limit(MAX_REPLAY * 4)
            .all(txn)
            .await?;
        let now = super::now();
        let mut queued = 0u64;
        for e in events {
            let origin = Origin { sensor: e.sensor_id, node: e.node_id };
            if !reaches(&d, pcn, &filters, &e.kind, &e.payload, origin) {
                continue;
            }
            if queued == MAX_REPLAY {
                break;
            }
            let row = new_delivery(e.tenant_id, e.id, d.id, now);
            let upsert = OnConflict::columns([
                delivery::Column::TenantId,
                delivery::Column::DestinationId,
                delivery::Column::EventId,
            ])
            .update_columns([delivery::Column::State, delivery::Column::Attempts, delivery::Column::NextAttemptAt])
            .to_owned();
            delivery::Entity::insert(row).on_conflict(upsert).exec_without_returning(txn).await?;
            queued += 1;
        }
        let mut logged = entry(scope.tenant, "alert_destination.replay", id, None, None);
        logged.after = Some(json!({"since": since, "until": until, "queued": queued}));
        audit::record(txn, actor, logged).await?;
        Ok(queued)
    })
    .await
}

/// The tenant's events in scope, in the order they happened (for those who pull).
pub async fn events(
    db: &DatabaseConnection,
    scope: TenantScope,
    page: PageRequest,
) -> Result<Page<event::Model>, StoreError> {
    let mut query = event::Entity::find().filter(event::Column::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        query = query.filter(event::Column::NodeId.eq(node));
    }
    if scope.sensor.is_some() {
        query = query.filter(event::Column::Id.eq(Uuid::nil()));
    }
    if let Some(after) = page.after {
        query = query.filter(event::Column::Id.gt(after));
    }
    let query = query.order_by_asc(event::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

// ---------------------------------------------------------------------------------------------
// The outbox.

impl From<event::Model> for alerts::AlertEvent {
    fn from(e: event::Model) -> Self {
        alerts::AlertEvent {
            id: e.id,
            kind: e.kind,
            sequence: e.sequence,
            timestamp: e.occurred_at,
            tenant_id: e.tenant_id,
            data: e.payload,
        }
    }
}

/// An event to write.
pub(crate) struct Raised {
    pub tenant: Uuid,
    pub kind: &'static str,
    pub origin: Origin,
    pub message: Option<Uuid>,
    pub data: serde_json::Value,
    /// For this destination only (a test event).
    pub only: Option<Uuid>,
}

async fn is_pcn(conn: &impl ConnectionTrait, tenant: Uuid, node_id: Uuid) -> Result<bool, StoreError> {
    let found = node::Entity::find()
        .filter(node::Column::TenantId.eq(tenant))
        .filter(node::Column::Id.eq(node_id))
        .one(conn)
        .await?;
    Ok(found.is_some_and(|n| n.kind == super::nodes::PCN))
}

/// Whether destination `d` (its node the PCN or not) hears of an event: an SCN's destination only
/// of its own node's events; then its filters.
fn reaches(
    d: &dest::Model,
    pcn: bool,
    filters: &Filters,
    kind: &str,
    data: &serde_json::Value,
    origin: Origin,
) -> bool {
    (pcn || origin.node == Some(d.node_id)) && filters.admit(kind, data, origin)
}

fn new_delivery(tenant: Uuid, event: Uuid, destination: Uuid, now: DateTime<Utc>) -> delivery::ActiveModel {
    delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(tenant),
        event_id: Set(event),
        destination_id: Set(destination),
        state: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_status: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
    }
}

/// Writes `raised` with their deliveries, inside the caller's transaction (the one that commits
/// what caused them). Answers how many deliveries were queued.
pub(crate) async fn raise(conn: &impl ConnectionTrait, raised: Vec<Raised>) -> Result<usize, StoreError> {
    if raised.is_empty() {
        return Ok(0);
    }
    let tenants: HashSet<Uuid> = raised.iter().map(|r| r.tenant).collect();
    let destinations = dest::Entity::find()
        .filter(dest::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(dest::Column::State.ne(DISABLED))
        .all(conn)
        .await?;
    let pcns: HashSet<Uuid> = node::Entity::find()
        .filter(node::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(node::Column::Kind.eq(super::nodes::PCN))
        .all(conn)
        .await?
        .into_iter()
        .map(|n| n.id)
        .collect();
    let filters: HashMap<Uuid, Filters> =
        destinations.iter().map(|d| (d.id, serde_json::from_value(d.filters.clone()).unwrap_or_default())).collect();
    // Gapless per tenant: the counter's row is locked until this transaction ends.
    let mut next: HashMap<Uuid, i64> = HashMap::new();
    for tenant in &tenants {
        let count = raised.iter().filter(|r| r.tenant == *tenant).count() as i64;
        let reserve = sequence::ActiveModel { tenant_id: Set(*tenant), last: Set(count) };
        let bump = OnConflict::column(sequence::Column::TenantId)
            .value(sequence::Column::Last, Expr::col((sequence::Entity, sequence::Column::Last)).add(count))
            .to_owned();
        let last = sequence::Entity::insert(reserve).on_conflict(bump).exec_with_returning(conn).await?.last;
        next.insert(*tenant, last - count + 1);
    }
    let now = super::now();
    let mut events = Vec::with_capacity(raised.len());
    let mut deliveries = Vec::new();
    for r in raised {
        let id = Uuid::now_v7();
        let sequence = next.get_mut(&r.tenant).map(|n| {
            *n += 1;
            *n - 1
        });
        for d in destinations.iter().filter(|d| d.tenant_id == r.tenant) {
            let wanted = match r.only {
                Some(only) => only == d.id,
                None => reaches(d, pcns.contains(&d.node_id), &filters[&d.id], r.kind, &r.data, r.origin),
            };
            if wanted {
                deliveries.push(new_delivery(r.tenant, id, d.id, now));
            }
        }
        metrics::counter!("mailsensor_alert_events_total", "type" => r.kind).increment(1);
        events.push(event::ActiveModel {
            id: Set(id),
            tenant_id: Set(r.tenant),
            sequence: Set(sequence.unwrap_or_default()),
            kind: Set(r.kind.to_owned()),
            occurred_at: Set(now),
            node_id: Set(r.origin.node),
            sensor_id: Set(r.origin.sensor),
            message_id: Set(r.message),
            payload: Set(r.data),
        });
    }
    let queued = deliveries.len();
    event::Entity::insert_many(events).exec_without_returning(conn).await?;
    if !deliveries.is_empty() {
        delivery::Entity::insert_many(deliveries).exec_without_returning(conn).await?;
    }
    Ok(queued)
}

/// The events of freshly recorded verdicts: one `message.detected` per message whose verdict is
/// not `clean` (each destination's threshold picks among them), inside the scan's transaction.
pub(crate) async fn raise_detected(
    conn: &impl ConnectionTrait,
    scanned: &[message::Model],
) -> Result<usize, StoreError> {
    let worth: Vec<&message::Model> = scanned
        .iter()
        .filter(|m| m.verdict.as_deref().is_some_and(|v| v != "clean" && v != super::messages::PENDING))
        .collect();
    if worth.is_empty() {
        return Ok(0);
    }
    let sensors = sensors_of(conn, worth.iter().map(|m| m.sensor_id)).await?;
    let raised = worth
        .into_iter()
        .filter_map(|m| {
            let s = sensors.get(&m.sensor_id)?;
            let detections: Vec<Detection> = serde_json::from_value(m.detections.clone()).unwrap_or_default();
            let data =
                alerts::MessageDetected { message: alert_message(m, s), detections: alert_detections(m, &detections) };
            Some(Raised {
                tenant: m.tenant_id,
                kind: alerts::MESSAGE_DETECTED,
                origin: Origin { sensor: Some(m.sensor_id), node: Some(s.node_id) },
                message: Some(m.id),
                data: serde_json::to_value(data).unwrap_or_default(),
                only: None,
            })
        })
        .collect();
    raise(conn, raised).await
}

/// A retro-hunt's match on `m`: its `detections` (those the hunt added).
pub(crate) async fn raise_retro_match(
    conn: &impl ConnectionTrait,
    hunt: Uuid,
    ruleset_name: &str,
    m: &message::Model,
    detections: &[Detection],
) -> Result<usize, StoreError> {
    let sensors = sensors_of(conn, [m.sensor_id]).await?;
    let Some(s) = sensors.get(&m.sensor_id) else { return Ok(0) };
    let mut message = alert_message(m, s);
    // The hunt's own finding decides what this alert is worth.
    let worst = detections.iter().map(|d| d.verdict).max();
    if let Some(worst) = worst {
        message.verdict = worst.as_str().to_owned();
    }
    let data = alerts::RetrohuntMatched {
        retrohunt_id: hunt,
        ruleset_name: ruleset_name.to_owned(),
        message,
        detections: alert_detections(m, detections),
    };
    let raised = Raised {
        tenant: m.tenant_id,
        kind: alerts::RETROHUNT_MATCHED,
        origin: Origin { sensor: Some(m.sensor_id), node: Some(s.node_id) },
        message: Some(m.id),
        data: serde_json::to_value(data).unwrap_or_default(),
        only: None,
    };
    raise(conn, vec![raised]).await
}

/// A retro-hunt ended.
pub(crate) async fn raise_retro_end(
    conn: &impl ConnectionTrait,
    h: &super::entity::retrohunt::Model,
    state: &str,
) -> Result<usize, StoreError> {
    let data = alerts::RetrohuntFinished {
        retrohunt_id: h.id,
        ruleset_name: h.ruleset_name.clone(),
        state: state.to_owned(),
        scanned: h.scanned,
        matches: h.matches,
        cap_reached: h.cap_reached,
        href: format!("/v1/tenants/{}/retrohunts/{}", h.tenant_id, h.id),
    };
    let raised = Raised {
        tenant: h.tenant_id,
        kind: alerts::RETROHUNT_FINISHED,
        origin: Origin { sensor: None, node: Some(h.node_id) },
        message: None,
        data: serde_json::to_value(data).unwrap_or_default(),
        only: None,
    };
    raise(conn, vec![raised]).await
}

async fn sensors_of(
    conn: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, sensor::Model>, StoreError> {
    let ids: HashSet<Uuid> = ids.into_iter().collect();
    let rows = sensor::Entity::find().filter(sensor::Column::Id.is_in(ids)).all(conn).await?;
    Ok(rows.into_iter().map(|s| (s.id, s)).collect())
}

fn alert_message(m: &message::Model, s: &sensor::Model) -> AlertMessage {
    AlertMessage {
        id: m.id,
        sensor_id: m.sensor_id,
        sensor_name: s.name.clone(),
        node_id: s.node_id,
        received_at: m.received_at,
        client_ip: m.client_ip.clone(),
        helo: m.helo.clone(),
        mail_from: m.mail_from.clone(),
        rcpt_to: serde_json::from_value(m.rcpt_to.clone()).unwrap_or_default(),
        header_from: m.header_from.clone(),
        subject: m.subject.clone(),
        message_id: m.message_id.clone(),
        size: m.size,
        sha256: m.sha256.clone(),
        verdict: m.verdict.clone().unwrap_or_default(),
        href: alerts::message_href(m.tenant_id, m.id),
    }
}

fn alert_detections(m: &message::Model, detections: &[Detection]) -> Vec<AlertDetection> {
    let parts: Vec<Part> = serde_json::from_value(m.parts.clone()).unwrap_or_default();
    detections.iter().take(100).map(|d| AlertDetection::of(d, &parts)).collect()
}

// ---------------------------------------------------------------------------------------------
// The delivery workers' side.

/// A delivery a worker holds: what to send, and where.
pub struct Due {
    pub delivery: delivery::Model,
    pub event: alerts::AlertEvent,
    pub destination: dest::Model,
}

/// Claims up to `limit` due deliveries of active destinations (but those in `skip`, which have
/// enough in flight) and holds them for `hold`: the delivery workers' cross-tenant path
/// (`mailsensor_platform`). Each destination's come oldest first, in the order of their events.
pub async fn claim(db: &DatabaseConnection, limit: u64, hold: Duration, skip: &[Uuid]) -> Result<Vec<Due>, StoreError> {
    run_in(db, Reach::Platform, Mode::Durable, async |txn| {
        let now = super::now();
        let held_until = now + chrono::TimeDelta::from_std(hold).unwrap_or(chrono::TimeDelta::seconds(60));
        let due = if txn.get_database_backend() == DatabaseBackend::Postgres {
            claim_by_destination(txn, now, held_until, limit, skip).await?
        } else {
            claim_any(txn, now, held_until, limit, skip).await?
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let events: HashMap<Uuid, event::Model> = event::Entity::find()
            .filter(event::Column::Id.is_in(due.iter().map(|d| d.event_id)))
            .all(txn)
            .await?
            .into_iter()
            .map(|e| (e.id, e))
            .collect();
        let destinations: HashMap<Uuid, dest::Model> = dest::Entity::find()
            .filter(dest::Column::Id.is_in(due.iter().map(|d| d.destination_id)))
            .all(txn)
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect();
        let mut claimed: Vec<Due> = due
            .into_iter()
            .filter_map(|d| {
                let e = events.get(&d.event_id)?;
                let destination = destinations.get(&d.destination_id)?.clone();
                Some(Due { delivery: d, event: e.clone().into(), destination })
            })
            .collect();
        claimed.sort_by_key(|d| (d.delivery.destination_id, d.event.sequence));
        Ok(claimed)
    })
    .await
}

/// PostgreSQL: the oldest due deliveries of one destination after another, the destinations in a
/// random order, taken and held in one statement. Each destination's are read from its own range
/// of the waiting deliveries' index, so one destination's backlog (a slow e-mail relay, a
/// receiver that is down) neither slows the others' claims nor crowds them out; before, every
/// claim walked past every due delivery of the destinations it skipped.
async fn claim_by_destination(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    held_until: DateTime<Utc>,
    limit: u64,
    skip: &[Uuid],
) -> Result<Vec<delivery::Model>, StoreError> {
    let sql = "WITH due AS ( \
                 SELECT x.id FROM ( \
                   SELECT id FROM alert_destinations WHERE state = 'active' AND NOT (id = ANY($4)) ORDER BY random() \
                 ) AS a CROSS JOIN LATERAL ( \
                   SELECT d.id FROM alert_deliveries AS d \
                   WHERE d.destination_id = a.id AND d.state = 'pending' AND d.next_attempt_at <= $1 \
                   ORDER BY d.next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED \
                 ) AS x LIMIT $3 \
               ) \
               UPDATE alert_deliveries AS d SET next_attempt_at = $2, attempts = d.attempts + 1 \
               FROM due WHERE d.id = due.id RETURNING d.*";
    let statement = sea_orm::Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        [now.into(), held_until.into(), (limit as i64).into(), skip.to_vec().into()],
    );
    Ok(delivery::Model::find_by_statement(statement).all(txn).await?)
}

/// Elsewhere (SQLite, one process): any due deliveries.
async fn claim_any(
    txn: &DatabaseTransaction,
    now: DateTime<Utc>,
    held_until: DateTime<Utc>,
    limit: u64,
    skip: &[Uuid],
) -> Result<Vec<delivery::Model>, StoreError> {
    let active = Query::select()
        .column(dest::Column::Id)
        .from(dest::Entity)
        .and_where(dest::Column::State.eq(ACTIVE))
        .to_owned();
    let mut due = delivery::Entity::find()
        .filter(super::db::equals_literal((delivery::Entity, delivery::Column::State), PENDING))
        .filter(delivery::Column::NextAttemptAt.lte(now))
        .filter(delivery::Column::DestinationId.in_subquery(active))
        .apply_if((!skip.is_empty()).then_some(skip), |q, skip| {
            q.filter(delivery::Column::DestinationId.is_not_in(skip.iter().copied()))
        })
        .limit(limit)
        .all(txn)
        .await?;
    if due.is_empty() {
        return Ok(due);
    }
    delivery::Entity::update_many()
        .col_expr(delivery::Column::NextAttemptAt, Expr::value(held_until))
        .col_expr(delivery::Column::Attempts, Expr::col(delivery::Column::Attempts).add(1))
        .filter(delivery::Column::Id.is_in(due.iter().map(|d| d.id)))
        .exec(txn)
        .await?;
    for d in &mut due {
        d.next_attempt_at = held_until;
        d.attempts += 1;
    }
    Ok(due)
}

/// How one attempt went.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub outcome: Outcome,
    /// HTTP status or SMTP reply code.
    pub status: Option<i32>,
    pub error: Option<String>,
    pub latency: Duration,
    /// The start of the receiver's answer.
    pub response: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again on the schedule, or after the receiver's `Retry-After`.
    Failed {
        retry_after: Option<Duration>,
    },
    /// The receiver is gone for good (`410`): the destination is disabled at once.
    Gone,
    /// The address guard refused the address (retried: names can resolve elsewhere later).
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed { .. } => "failed",
            Outcome::Gone => "gone",
            Outcome::Refused => "refused",
        }
    }
}

/// Records an attempt at `due` and what follows from it: delivered, due again later, failed for
/// good; the destination's failing streak, and its disabling (with a `destination.disabled`
/// event) after a `410` or [`alerts::schedule::DISABLE_AFTER`] of failures.
///
/// Several attempts at once share one transaction (one WAL flush). The delivered ones are written
/// together, a few statements for the lot whatever their number; the others one by one after
/// them, in the order given (so a destination that delivered and then failed in one batch starts
/// its failing streak at that failure).
pub async fn record(db: &DatabaseConnection, attempts: &[(Due, Attempted)]) -> Result<(), StoreError> {
    run_in(db, Reach::Platform, Mode::Durable, async |txn| {
        let (delivered, others): (Vec<_>, Vec<_>) =
            attempts.iter().partition(|(_, attempted)| attempted.outcome == Outcome::Delivered);
        record_delivered(txn, &delivered).await?;
        for (due, attempted) in others {
            record_failure(txn, due, attempted).await?;
        }
        Ok(())
    })
    .await
}

/// Delivered attempts: their deliveries marked delivered (one UPDATE per distinct answer, almost
/// always one), their attempts logged in one INSERT, their destinations' failing streaks ended in
/// one UPDATE. A delivery gone meanwhile (its destination deleted) is left out; the ones still
/// there are locked first, as one attempt's record locks its delivery.
async fn record_delivered(txn: &DatabaseTransaction, delivered: &[&(Due, Attempted)]) -> Result<(), StoreError> {
    if delivered.is_empty() {
        return Ok(());
    }
    let now = super::now();
    let present: HashMap<Uuid, delivery::Model> = delivery::Entity::find()
        .filter(delivery::Column::Id.is_in(delivered.iter().map(|(due, _)| due.delivery.id)))
        .lock_exclusive()
        .all(txn)
        .await?
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
    let mut by_answer: HashMap<(Option<i32>, Option<String>), Vec<Uuid>> = HashMap::new();
    for (due, attempted) in delivered.iter().filter(|(due, _)| present.contains_key(&due.delivery.id)) {
        by_answer.entry((attempted.status, capped(&attempted.error))).or_default().push(due.delivery.id);
    }
    for ((status, error), ids) in by_answer {
        delivery::Entity::update_many()
            .col_expr(delivery::Column::State, Expr::value(DELIVERED))
            .col_expr(delivery::Column::DeliveredAt, Expr::value(now))
            .col_expr(delivery::Column::LastStatus, Expr::value(status))
            .col_expr(delivery::Column::LastError, Expr::value(error))
            .filter(delivery::Column::Id.is_in(ids))
            .exec(txn)
            .await?;
    }
    let logged: Vec<attempt::ActiveModel> = delivered
        .iter()
        .filter_map(|(due, attempted)| {
            let current = present.get(&due.delivery.id)?;
            Some(attempt_row(current, due, attempted, now))
        })
        .collect();
    if logged.is_empty() {
        return Ok(());
    }
    attempt::Entity::insert_many(logged).exec(txn).await?;
    let destinations: HashSet<Uuid> = present.values().map(|r| r.destination_id).collect();
    dest::Entity::update_many()
        .col_expr(dest::Column::FailingSince, Expr::value(Option::<DateTime<Utc>>::None))
        .filter(dest::Column::Id.is_in(destinations))
        .filter(dest::Column::FailingSince.is_not_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// An attempt's error as the log keeps it.
fn capped(error: &Option<String>) -> Option<String> {
    error.as_ref().map(|e| e.chars().take(2000).collect())
}

/// The log's row for an attempt at `current`.
fn attempt_row(
    current: &delivery::Model,
    due: &Due,
    attempted: &Attempted,
    now: DateTime<Utc>,
) -> attempt::ActiveModel {
    attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(current.tenant_id),
        delivery_id: Set(current.id),
        destination_id: Set(current.destination_id),
        attempt: Set(due.delivery.attempts),
        attempted_at: Set(now),
        outcome: Set(attempted.outcome.as_str().to_owned()),
        status: Set(attempted.status),
        error: Set(capped(&attempted.error)),
        latency_ms: Set(attempted.latency.as_millis() as i64),
        response: Set(attempted.response.clone()),
    }
}

/// An attempt that did not deliver: due again on the schedule (or after the receiver's
/// `Retry-After`), or failed for good; the destination's failing streak goes on.
async fn record_failure(txn: &impl ConnectionTrait, due: &Due, attempted: &Attempted) -> Result<(), StoreError> {
    let now = super::now();
    let Some(current) = delivery::Entity::find_by_id(due.delivery.id).lock_exclusive().one(txn).await? else {
        return Ok(());
    };
    let error = capped(&attempted.error);
    attempt_row(&current, due, attempted, now).insert(txn).await?;
    let mut row: delivery::ActiveModel = current.clone().into();
    row.last_status = Set(attempted.status);
    row.last_error = Set(error.clone());
    let retry_after = match attempted.outcome {
        Outcome::Failed { retry_after } => retry_after,
        _ => None,
    };
    let next = match attempted.outcome {
        Outcome::Gone => None,
        _ => alerts::schedule::after_failure(Ord::max(current.attempts, 1) as u32, retry_after),
    };
    match next {
        Some(wait) => {
            row.state = Set(PENDING.to_owned());
            row.next_attempt_at = Set(now + chrono::TimeDelta::from_std(wait).unwrap_or_default());
        }
        None => row.state = Set(FAILED.to_owned()),
    }
    row.update(txn).await?;
    // The destination's streak and state change by conditional UPDATEs, never by locking its
    // row first: every attempt's insert holds a key-share lock on it (the foreign key), and
    // two transactions upgrading those to row locks would deadlock.
    let destination = current.destination_id;
    dest::Entity::update_many()
        .filter(dest::Column::Id.eq(destination))
        .col_expr(dest::Column::FailingSince, Expr::value(now))
        .filter(dest::Column::FailingSince.is_null())
        .exec(txn)
        .await?;
    let Some(d) = dest::Entity::find_by_id(destination).one(txn).await? else { return Ok(()) };
    let since = d.failing_since.unwrap_or(now);
    let reason = if attempted.outcome == Outcome::Gone {
        "the receiver answered 410 Gone".to_owned()
    } else if alerts::schedule::gives_up_on(Some(since), now) {
        format!("every delivery since {since} failed; the last: {}", error.unwrap_or_default())
    } else {
        return Ok(());
    };
    // Only the transaction that turns it off says so.
    let turned_off = dest::Entity::update_many()
        .col_expr(dest::Column::State, Expr::value(DISABLED))
        .col_expr(dest::Column::DisabledReason, Expr::value(reason.clone()))
        .col_expr(dest::Column::UpdatedAt, Expr::value(now))
        .filter(dest::Column::Id.eq(destination))
        .filter(dest::Column::State.eq(ACTIVE))
        .exec(txn)
        .await?
        .rows_affected;
    if turned_off == 1 {
        metrics::counter!("mailsensor_alert_destinations_disabled_total").increment(1);
        let data = alerts::DestinationDisabled { destination_id: d.id, name: d.name.clone(), reason };
        let raised = Raised {
            tenant: d.tenant_id,
            kind: alerts::DESTINATION_DISABLED,
            origin: Origin { sensor: None, node: Some(d.node_id) },
            message: None,
            data: serde_json::to_value(data).unwrap_or_default(),
            only: None,
        };
        raise(txn, vec![raised]).await?;
    }
    Ok(())
}

/// Deliveries due now or waiting for a retry (the outbox's depth).
pub async fn pending(db: &DatabaseConnection) -> Result<u64, StoreError> {
    use sea_orm::PaginatorTrait;
    let query = delivery::Entity::find()
        .filter(super::db::equals_literal((delivery::Entity, delivery::Column::State), PENDING));
    super::db::run(db, Reach::Platform, async |txn| Ok(query.count(txn).await?)).await
}
