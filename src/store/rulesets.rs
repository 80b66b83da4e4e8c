//! Detection rulesets: a tenant's YARA rules attached to a node, with their history; and, for the
//! scan queue, which rulesets are in force for a sensor.
//!
//! A ruleset attached to the PCN applies to every sensor of the tenant; one attached to an SCN, to
//! that SCN's sensors. A principal signed in at an SCN sees only the rulesets of its SCN.
use std::collections::{HashMap, HashSet};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::audit::{self, Actor, AuditEntry};
use super::db::as_tenant;
use super::entity::{detection_ruleset as ruleset, detection_ruleset_revision as revision, node, sensor};
use super::{Page, PageRequest, StoreError, TenantScope, scope};

/// The most rulesets one tenant may have.
pub const MAX_RULESETS_PER_TENANT: u64 = 100;

/// A ruleset as written: everything but its identity and bookkeeping.
#[derive(Debug, Clone)]
pub struct Draft {
    pub name: String,
    pub description: String,
    pub node_id: Uuid,
    pub source: String,
    pub enabled: bool,
    pub disabled_rules: Vec<String>,
    /// Every rule the source defines, as compiled.
    pub rules: Vec<String>,
}

impl Draft {
    /// The draft a stored ruleset is.
    pub fn of(r: &ruleset::Model) -> Draft {
        Draft {
            name: r.name.clone(),
            description: r.description.clone(),
            node_id: r.node_id,
            source: r.source.clone(),
            enabled: r.enabled,
            disabled_rules: strings(&r.disabled_rules),
            rules: strings(&r.rules),
        }
    }
}

/// A JSON array of strings, as stored.
pub fn strings(value: &Value) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap_or_default()
}

/// What the audit trail keeps of a ruleset: not its source (up to 512 KiB a write), but its digest.
fn audited(d: &Draft) -> Value {
    json!({
        "name": d.name,
        "node_id": d.node_id,
        "enabled": d.enabled,
        "disabled_rules": d.disabled_rules,
        "rules": d.rules.len(),
        "source_bytes": d.source.len(),
        "source_sha256": hex::encode(Sha256::digest(d.source.as_bytes())),
    })
}

fn in_scope(scope: TenantScope) -> sea_orm::Select<ruleset::Entity> {
    let mut query = ruleset::Entity::find().filter(ruleset::Column::TenantId.eq(scope.tenant));
    if let Some(node) = scope.node {
        query = query.filter(ruleset::Column::NodeId.eq(node));
    }
    if scope.sensor.is_some() {
        // A sensor's own scope holds no rulesets.
        query = query.filter(ruleset::Column::Id.eq(Uuid::nil()));
    }
    query
}

async fn one(conn: &impl ConnectionTrait, scope: TenantScope, id: Uuid) -> Result<ruleset::Model, StoreError> {
    in_scope(scope).filter(ruleset::Column::Id.eq(id)).one(conn).await?.ok_or(StoreError::NotFound("detection ruleset"))
}

pub async fn get(db: &DatabaseConnection, scope: TenantScope, id: Uuid) -> Result<ruleset::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| one(txn, scope, id).await).await
}

pub async fn list(
    db: &DatabaseConnection,
    scope: TenantScope,
    node_filter: Option<Uuid>,
    page: PageRequest,
) -> Result<Page<ruleset::Model>, StoreError> {
    let mut query = in_scope(scope);
    if let Some(node) = node_filter {
        query = query.filter(ruleset::Column::NodeId.eq(node));
    }
    if let Some(after) = page.after {
        query = query.filter(ruleset::Column::Id.gt(after));
    }
    let query = query.order_by_asc(ruleset::Column::Id).limit(page.limit + 1);
    let rows = as_tenant(db, scope.tenant, async |txn| Ok(query.clone().all(txn).await?)).await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

async fn record_revision(
    conn: &impl ConnectionTrait,
    r: &ruleset::Model,
    actor: &Actor,
    restored_from: Option<i64>,
) -> Result<(), StoreError> {
    revision::Entity::insert(revision::ActiveModel {
        tenant_id: Set(r.tenant_id),
        ruleset_id: Set(r.id),
        revision: Set(r.revision),
        node_id: Set(r.node_id),
        name: Set(r.name.clone()),
        description: Set(r.description.clone()),
        source: Set(r.source.clone()),
        enabled: Set(r.enabled),
        disabled_rules: Set(r.disabled_rules.clone()),
        created_at: Set(r.updated_at),
        created_by: Set(actor.sub.clone()),
        restored_from: Set(restored_from),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn create(
    db: &DatabaseConnection,
    scope: TenantScope,
    draft: Draft,
    actor: &Actor,
) -> Result<ruleset::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        scope::node_in_scope(txn, scope, draft.node_id, "attach detection rulesets to").await?;
        let count = ruleset::Entity::find().filter(ruleset::Column::TenantId.eq(scope.tenant)).count(txn).await?;
        if count >= MAX_RULESETS_PER_TENANT {
            return Err(StoreError::Conflict(format!(
                "the tenant has {count} detection rulesets, the most it may have; delete one first"
            )));
        }
        let now = super::now();
        let created = ruleset::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(scope.tenant),
            node_id: Set(draft.node_id),
            name: Set(draft.name.clone()),
            description: Set(draft.description.clone()),
            source: Set(draft.source.clone()),
            enabled: Set(draft.enabled),
            disabled_rules: Set(json!(draft.disabled_rules)),
            rules: Set(json!(draft.rules)),
            revision: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(txn)
        .await?;
        record_revision(txn, &created, actor, None).await?;
        let entry = AuditEntry {
            tenant: scope.tenant,
            action: "detection_ruleset.create",
            target_type: "detection_ruleset",
            target_id: created.id,
            sensor_id: None,
            before: None,
            after: Some(audited(&draft)),
        };
        audit::record(txn, actor, entry).await?;
        Ok(created)
    })
    .await
}

/// How a replacement is made: who, against which revision (`None`: whatever is current), and
/// whether it restores an earlier one.
pub struct Write<'a> {
    pub actor: &'a Actor,
    pub expected: Option<i64>,
    pub restored_from: Option<i64>,
}

/// Writes `draft` as the ruleset's next revision.
pub async fn replace(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    draft: Draft,
    write: Write<'_>,
) -> Result<ruleset::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = one(txn, scope, id).await?;
        if write.expected.is_some_and(|expected| expected != before.revision) {
            return Err(StoreError::Stale { current_etag: etag(before.revision) });
        }
        if draft.node_id != before.node_id {
            scope::node_in_scope(txn, scope, draft.node_id, "attach detection rulesets to").await?;
        }
        let mut active: ruleset::ActiveModel = before.clone().into();
        active.name = Set(draft.name.clone());
        active.description = Set(draft.description.clone());
        active.node_id = Set(draft.node_id);
        active.source = Set(draft.source.clone());
        active.enabled = Set(draft.enabled);
        active.disabled_rules = Set(json!(draft.disabled_rules));
        active.rules = Set(json!(draft.rules));
        active.revision = Set(before.revision + 1);
        active.updated_at = Set(super::now());
        let after = active.update(txn).await?;
        record_revision(txn, &after, write.actor, write.restored_from).await?;
        let action = match write.restored_from {
            Some(_) => "detection_ruleset.restore",
            None => "detection_ruleset.replace",
        };
        let entry = AuditEntry {
            tenant: scope.tenant,
            action,
            target_type: "detection_ruleset",
            target_id: id,
            sensor_id: None,
            before: Some(audited(&Draft::of(&before))),
            after: Some(audited(&draft)),
        };
        audit::record(txn, write.actor, entry).await?;
        Ok(after)
    })
    .await
}

/// The ETag of a ruleset at `revision`.
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

pub async fn delete(db: &DatabaseConnection, scope: TenantScope, id: Uuid, actor: &Actor) -> Result<(), StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        let before = one(txn, scope, id).await?;
        ruleset::Entity::delete_by_id(id).exec(txn).await?;
        let entry = AuditEntry {
            tenant: scope.tenant,
            action: "detection_ruleset.delete",
            target_type: "detection_ruleset",
            target_id: id,
            sensor_id: None,
            before: Some(audited(&Draft::of(&before))),
            after: None,
        };
        audit::record(txn, actor, entry).await?;
        Ok(())
    })
    .await
}

/// Newest first; `before` is the revision the previous page ended at.
pub async fn history(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    before: Option<i64>,
    limit: u64,
) -> Result<(Vec<revision::Model>, Option<i64>), StoreError> {
    let mut query = revision::Entity::find()
        .filter(revision::Column::TenantId.eq(scope.tenant))
        .filter(revision::Column::RulesetId.eq(id));
    if let Some(before) = before {
        query = query.filter(revision::Column::Revision.lt(before));
    }
    let query = query.order_by_desc(revision::Column::Revision).limit(limit + 1);
    let mut rows = as_tenant(db, scope.tenant, async |txn| {
        one(txn, scope, id).await?;
        Ok(query.clone().all(txn).await?)
    })
    .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(|r| r.revision) } else { None };
    Ok((rows, next))
}

pub async fn revision_at(
    db: &DatabaseConnection,
    scope: TenantScope,
    id: Uuid,
    at: i64,
) -> Result<revision::Model, StoreError> {
    as_tenant(db, scope.tenant, async |txn| {
        one(txn, scope, id).await?;
        revision::Entity::find()
            .filter(revision::Column::TenantId.eq(scope.tenant))
            .filter(revision::Column::RulesetId.eq(id))
            .filter(revision::Column::Revision.eq(at))
            .one(txn)
            .await?
            .ok_or(StoreError::NotFound("revision"))
    })
    .await
}

/// A ruleset in force, by identity and revision: what the scan queue compiles once and shares.
pub type InForce = (Uuid, i64);

/// A ruleset's content, for the scan queue to compile.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Uuid,
    pub revision: i64,
    pub name: String,
    pub source: String,
    pub disabled_rules: Vec<String>,
}

/// For each of `sensors` (by tenant), the enabled rulesets in force for it — those attached to its
/// tenant's PCN and to its own node — sorted; and the content of those `known` does not hold yet.
/// Read in the scan queue's claim, so a ruleset applies to every message claimed after its write
/// commits. A sensor deleted since gets its tenant's PCN rulesets.
pub(super) async fn in_force(
    conn: &impl ConnectionTrait,
    sensors: &[(Uuid, Uuid)],
    known: impl Fn(Uuid, i64) -> bool,
) -> Result<(HashMap<Uuid, Vec<InForce>>, Vec<Loaded>), StoreError> {
    let tenants: HashSet<Uuid> = sensors.iter().map(|(tenant, _)| *tenant).collect();
    let rulesets: Vec<(Uuid, Uuid, Uuid, i64)> = ruleset::Entity::find()
        .select_only()
        .columns([ruleset::Column::Id, ruleset::Column::TenantId, ruleset::Column::NodeId, ruleset::Column::Revision])
        .filter(ruleset::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(ruleset::Column::Enabled.eq(true))
        .into_tuple()
        .all(conn)
        .await?;
    let mut by_sensor = HashMap::new();
    if rulesets.is_empty() {
        return Ok((by_sensor, Vec::new()));
    }
    let pcns: HashMap<Uuid, Uuid> = node::Entity::find()
        .select_only()
        .columns([node::Column::TenantId, node::Column::Id])
        .filter(node::Column::TenantId.is_in(tenants.iter().copied()))
        .filter(node::Column::Kind.eq(super::nodes::PCN))
        .into_tuple()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    let nodes: HashMap<Uuid, Uuid> = sensor::Entity::find()
        .select_only()
        .columns([sensor::Column::Id, sensor::Column::NodeId])
        .filter(sensor::Column::Id.is_in(sensors.iter().map(|(_, sensor)| *sensor)))
        .into_tuple()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    for (tenant, sensor) in sensors {
        let (pcn, own) = (pcns.get(tenant), nodes.get(sensor));
        let mut applying: Vec<InForce> = rulesets
            .iter()
            .filter(|(_, t, node, _)| t == tenant && (Some(node) == pcn || Some(node) == own))
            .map(|(id, _, _, revision)| (*id, *revision))
            .collect();
        applying.sort();
        by_sensor.insert(*sensor, applying);
    }
    let missing: Vec<Uuid> =
        rulesets.iter().filter(|(id, _, _, revision)| !known(*id, *revision)).map(|(id, ..)| *id).collect();
    let loaded = match missing.is_empty() {
        true => Vec::new(),
        false => ruleset::Entity::find()
            .filter(ruleset::Column::Id.is_in(missing))
            .all(conn)
            .await?
            .into_iter()
            .map(|r| Loaded {
                id: r.id,
                revision: r.revision,
                disabled_rules: strings(&r.disabled_rules),
                name: r.name,
                source: r.source,
            })
            .collect(),
    };
    Ok((by_sensor, loaded))
}
