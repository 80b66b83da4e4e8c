//! sea-orm entities, one per table. Relations are not declared: every query is written tenant-scoped
//! in `store/` and joins nothing implicitly.
pub mod alert_attempt;
pub mod alert_delivery;
pub mod alert_destination;
pub mod alert_event;
pub mod alert_sequence;
pub mod audit_event;
pub mod detection_ruleset;
pub mod detection_ruleset_revision;
pub mod message;
pub mod message_chunk;
pub mod message_key;
pub mod node;
pub mod retrohunt;
pub mod retrohunt_match;
pub mod revision_log;
pub mod sensor;
pub mod sensor_worker;
pub mod settings_revision;
pub mod smtp_settings;
pub mod tenant;
