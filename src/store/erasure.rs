//! Erasure: the mail of a deleted tenant, and every message to or from one address (a
//! data-subject request). Both work in transactions of at most [`BATCH`] rows each, so erasing
//! a tenant of millions of messages never holds one giant transaction; a crash midway leaves the
//! rest to the next run ([`pending`] lists what is left).
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::db::{Reach, as_tenant, run};
use super::entity::{
    alert_attempt, alert_delivery, alert_destination, alert_event, alert_sequence, message, message_chunk, message_key,
    retrohunt, retrohunt_match, tenant,
};
use super::retention::{BATCH, in_batches, rows_of};
use super::{Actor, StoreError, TenantScope};

/// The tenants deleted whose erasure has not finished (the platform path).
pub async fn pending(db: &DatabaseConnection) -> Result<Vec<Uuid>, StoreError> {
    run(db, Reach::Platform, async |txn| {
        Ok(tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .filter(tenant::Column::ErasingSince.is_not_null())
            .into_tuple::<Uuid>()
            .all(txn)
            .await?)
    })
    .await
}

/// Deletes, a batch at a time, every row of `E` that is `tenant`'s.
async fn all_rows_of<E: EntityTrait>(
    db: &DatabaseConnection,
    tenant: Uuid,
    id: E::Column,
    tenant_column: E::Column,
) -> Result<u64, StoreError> {
    rows_of::<E>(db, tenant, [id, tenant_column], None).await
}

/// Erases what a deleted tenant ([`super::tenants::delete`]) left: its messages with their
/// content and keys, retro-hunts and their results, alert destinations, events, deliveries and
/// attempts; then the tenant's row. Returns the messages erased. A tenant not being erased is
/// left alone.
pub async fn erase_tenant(db: &DatabaseConnection, id: Uuid) -> Result<u64, StoreError> {
    let erasing = run(db, Reach::Tenant(id), async |txn| {
        Ok(tenant::Entity::find_by_id(id).one(txn).await?.is_some_and(|t| t.erasing_since.is_some()))
    })
    .await?;
    if !erasing {
        return Ok(0);
    }
    let messages = all_rows_of::<message::Entity>(db, id, message::Column::Id, message::Column::TenantId).await?;
    in_batches(db, Reach::Tenant(id), |limit| {
        let batch = Query::select()
            .column(message_key::Column::MessageId)
            .from(message_key::Entity)
            .and_where(message_key::Column::TenantId.eq(id))
            .limit(limit)
            .to_owned();
        message_key::Entity::delete_many().filter(message_key::Column::MessageId.in_subquery(batch))
    })
    .await?;
    all_rows_of::<retrohunt_match::Entity>(db, id, retrohunt_match::Column::Id, retrohunt_match::Column::TenantId)
        .await?;
    all_rows_of::<retrohunt::Entity>(db, id, retrohunt::Column::Id, retrohunt::Column::TenantId).await?;
    all_rows_of::<alert_attempt::Entity>(db, id, alert_attempt::Column::Id, alert_attempt::Column::TenantId).await?;
    all_rows_of::<alert_delivery::Entity>(db, id, alert_delivery::Column::Id, alert_delivery::Column::TenantId).await?;
    all_rows_of::<alert_event::Entity>(db, id, alert_event::Column::Id, alert_event::Column::TenantId).await?;
    all_rows_of::<alert_destination::Entity>(
        db,
        id,
        alert_destination::Column::Id,
        alert_destination::Column::TenantId,
    )
    .await?;
    run(db, Reach::Tenant(id), async |txn| {
        alert_sequence::Entity::delete_many().filter(alert_sequence::Column::TenantId.eq(id)).exec(txn).await?;
        tenant::Entity::delete_by_id(id).exec(txn).await?;
        Ok(())
    })
    .await?;
    Ok(messages)
}

/// Whether a message is to or from `address` (lower case): its envelope sender or any envelope
/// recipient, or an address in its `From` or `To` header.
fn concerns(address: &str, mail_from: &str, rcpt_to: &serde_json::Value, headers: [Option<&str>; 2]) -> bool {
    let is = |candidate: &str| candidate.trim().eq_ignore_ascii_case(address);
    let in_header = |header: &str| header.split(|c: char| c.is_whitespace() || "<>,;\"'()".contains(c)).any(&is);
    is(mail_from)
        || rcpt_to.as_array().is_some_and(|all| all.iter().filter_map(|r| r.as_str()).any(is))
        || headers.into_iter().flatten().any(in_header)
}

/// A data-subject request: erases every message in `scope` to or from `address` (see
/// [`concerns`]), with its content, keys, retro-hunt results and alert events; audited as
/// `messages.erase` with the count. Reads the scope's messages a page at a time and erases each
/// page's matches in one transaction.
pub async fn erase_address(
    db: &DatabaseConnection,
    scope: TenantScope,
    address: &str,
    actor: &Actor,
) -> Result<u64, StoreError> {
    let address = address.trim().to_ascii_lowercase();
    let mut after: Option<Uuid> = None;
    let mut erased = 0;
    loop {
        let page = as_tenant(db, scope.tenant, async |txn| {
            let mut query = super::messages::scoped(scope)
                .select_only()
                .columns([
                    message::Column::Id,
                    message::Column::MailFrom,
                    message::Column::RcptTo,
                    message::Column::HeaderFrom,
                    message::Column::HeaderTo,
                ])
                .order_by_asc(message::Column::Id)
                .limit(BATCH);
            if let Some(after) = after {
                query = query.filter(message::Column::Id.gt(after));
            }
            Ok(query.into_tuple::<(Uuid, String, serde_json::Value, Option<String>, Option<String>)>().all(txn).await?)
        })
        .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        // A message not scanned yet has no header summary stored: its headers are read here.
        let unscanned: Vec<Uuid> =
            page.iter().filter(|(.., f, t)| f.is_none() && t.is_none()).map(|(id, ..)| *id).collect();
        let headers: std::collections::HashMap<Uuid, crate::scan::HeaderSummary> =
            as_tenant(db, scope.tenant, async |txn| {
                let firsts = message_chunk::Entity::find()
                    .filter(message_chunk::Column::MessageId.is_in(unscanned.clone()))
                    .filter(message_chunk::Column::Seq.eq(0))
                    .all(txn)
                    .await?;
                Ok(firsts.into_iter().map(|c| (c.message_id, crate::scan::headers_of(&c.data))).collect())
            })
            .await?;
        let ids: Vec<Uuid> = page
            .iter()
            .filter(|(id, from, to, header_from, header_to)| {
                let read = headers.get(id);
                let header_from = header_from.as_deref().or(read.and_then(|h| h.from.as_deref()));
                let header_to = header_to.as_deref().or(read.and_then(|h| h.to.as_deref()));
                concerns(&address, from, to, [header_from, header_to])
            })
            .map(|(id, ..)| *id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        // The messages first: a scan holding one (it raises its alert event as it records the
        // verdict) finishes before the delete goes on, and its event is then found below.
        erased += as_tenant(db, scope.tenant, async |txn| {
            message_key::Entity::delete_many()
                .filter(message_key::Column::MessageId.is_in(ids.clone()))
                .exec(txn)
                .await?;
            let erased = message::Entity::delete_many()
                .filter(message::Column::Id.is_in(ids.clone()))
                .exec(txn)
                .await?
                .rows_affected;
            retrohunt_match::Entity::delete_many()
                .filter(retrohunt_match::Column::MessageId.is_in(ids.clone()))
                .exec(txn)
                .await?;
            alert_event::Entity::delete_many()
                .filter(alert_event::Column::MessageId.is_in(ids.clone()))
                .exec(txn)
                .await?;
            Ok(erased)
        })
        .await?;
    }
    as_tenant(db, scope.tenant, async |txn| {
        super::audit::record(
            txn,
            actor,
            super::audit::AuditEntry {
                tenant: scope.tenant,
                action: "messages.erase",
                target_type: "tenant",
                target_id: scope.tenant,
                sensor_id: None,
                before: None,
                after: Some(serde_json::json!({"address": address, "messages_erased": erased})),
            },
        )
        .await
    })
    .await?;
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::concerns;
    use serde_json::json;

    #[test]
    fn an_address_is_matched_whole_in_the_envelope_and_the_headers() {
        let none = [None, None];
        assert!(concerns("bob@example.com", "Bob@Example.com", &json!([]), none));
        assert!(concerns("bob@example.com", "a@x.org", &json!(["c@x.org", "BOB@example.com"]), none));
        assert!(concerns("bob@example.com", "a@x.org", &json!([]), [Some("\"Bob\" <bob@example.com>"), None]));
        assert!(concerns("bob@example.com", "a@x.org", &json!([]), [None, Some("c@x.org, bob@example.com")]));
        assert!(!concerns(
            "bob@example.com",
            "xbob@example.com",
            &json!(["bob@example.com.evil"]),
            [Some("<bob@example.co>"), None]
        ));
    }
}
