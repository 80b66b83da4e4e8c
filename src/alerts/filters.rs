//! Which destinations an event is for: a destination's filters, read against the event's data
//! (the same JSON when the event is raised and when it is replayed).
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::event::{DESTINATION_TEST, MESSAGE_DETECTED, RETROHUNT_MATCHED};

/// The lowest verdict a destination hears of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum MinVerdict {
    /// Every verdict but `clean`: also messages an engine could not look at.
    Incomplete,
    Spam,
    #[default]
    Suspicious,
    Malicious,
}

impl MinVerdict {
    /// Where `verdict` (as stored) stands against the thresholds; `clean` and unknown below all.
    fn rank(verdict: &str) -> Option<MinVerdict> {
        match verdict {
            "incomplete" => Some(MinVerdict::Incomplete),
            "spam" => Some(MinVerdict::Spam),
            "suspicious" => Some(MinVerdict::Suspicious),
            "malicious" => Some(MinVerdict::Malicious),
            _ => None,
        }
    }
}

/// What a destination hears of. Every list left empty lets everything through; a message's
/// event must pass each list that is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Filters {
    /// Events about a message: its verdict at least this (default `suspicious`).
    #[schema(required = false)]
    pub min_verdict: MinVerdict,
    /// Only these event types (`message.detected`, `retrohunt.matched`, `retrohunt.finished`,
    /// `destination.disabled`).
    #[schema(required = false)]
    pub events: Vec<String>,
    /// Only messages with a detection by one of these engines (`builtin`, `yara`, `clamav`, `rspamd`).
    #[schema(required = false)]
    pub engines: Vec<String>,
    /// Only mail of these sensors.
    #[schema(required = false)]
    pub sensor_ids: Vec<Uuid>,
    /// Only mail of the sensors of these nodes.
    #[schema(required = false)]
    pub node_ids: Vec<Uuid>,
    /// Only messages with a detection by a YARA rule carrying one of these tags.
    #[schema(required = false)]
    pub rule_tags: Vec<String>,
}

/// Where an event happened, beside its data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin {
    pub sensor: Option<Uuid>,
    pub node: Option<Uuid>,
}

impl Filters {
    /// Whether an event of `kind` with `data`, from `origin`, passes these filters.
    pub fn admit(&self, kind: &str, data: &serde_json::Value, origin: Origin) -> bool {
        if kind == DESTINATION_TEST {
            return true;
        }
        if !self.events.is_empty() && !self.events.iter().any(|e| e == kind) {
            return false;
        }
        if kind != MESSAGE_DETECTED && kind != RETROHUNT_MATCHED {
            return true;
        }
        let verdict = data.pointer("/message/verdict").and_then(|v| v.as_str()).unwrap_or("clean");
        if MinVerdict::rank(verdict).is_none_or(|rank| rank < self.min_verdict) {
            return false;
        }
        let detections = data.get("detections").and_then(|d| d.as_array()).map(Vec::as_slice).unwrap_or_default();
        let engine_of = |d: &serde_json::Value| d.get("engine").and_then(|e| e.as_str()).map(str::to_owned);
        if !self.engines.is_empty() && !detections.iter().filter_map(engine_of).any(|e| self.engines.contains(&e)) {
            return false;
        }
        if !self.rule_tags.is_empty() {
            let tagged = detections
                .iter()
                .filter_map(|d| d.get("tags").and_then(|t| t.as_array()))
                .flatten()
                .filter_map(|t| t.as_str())
                .any(|t| self.rule_tags.iter().any(|want| want == t));
            if !tagged {
                return false;
            }
        }
        let listed = |list: &[Uuid], id: Option<Uuid>| list.is_empty() || id.is_some_and(|id| list.contains(&id));
        listed(&self.sensor_ids, origin.sensor) && listed(&self.node_ids, origin.node)
    }

    /// What is wrong with these filters, as (JSON pointer below `filters`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (i, event) in self.events.iter().enumerate() {
            if !super::EVENT_KINDS.contains(&event.as_str()) || event == DESTINATION_TEST {
                let kinds = super::EVENT_KINDS[..4].join(", ");
                problems.push((format!("/events/{i}"), format!("unknown event type {event:?}; one of {kinds}")));
            }
        }
        for (i, engine) in self.engines.iter().enumerate() {
            if !crate::scan::ENGINES.contains(&engine.as_str()) {
                let engines = crate::scan::ENGINES.join(", ");
                problems.push((format!("/engines/{i}"), format!("unknown engine {engine:?}; one of {engines}")));
            }
        }
        for (i, tag) in self.rule_tags.iter().enumerate() {
            if tag.is_empty() || tag.len() > 128 {
                problems.push((format!("/rule_tags/{i}"), "must be 1 to 128 characters".to_owned()));
            }
        }
        for (name, len) in [
            ("events", self.events.len()),
            ("engines", self.engines.len()),
            ("sensor_ids", self.sensor_ids.len()),
            ("node_ids", self.node_ids.len()),
            ("rule_tags", self.rule_tags.len()),
        ] {
            if len > 100 {
                problems.push((format!("/{name}"), "at most 100 entries".to_owned()));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detected(verdict: &str, engine: &str, tags: &[&str]) -> serde_json::Value {
        json!({"message": {"verdict": verdict}, "detections": [{"engine": engine, "tags": tags}]})
    }

    #[test]
    fn a_verdict_passes_at_or_above_the_threshold() {
        let filters = Filters::default();
        let origin = Origin::default();
        assert!(filters.admit(MESSAGE_DETECTED, &detected("malicious", "clamav", &[]), origin));
        assert!(filters.admit(MESSAGE_DETECTED, &detected("suspicious", "yara", &[]), origin));
        assert!(!filters.admit(MESSAGE_DETECTED, &detected("spam", "rspamd", &[]), origin));
        assert!(!filters.admit(MESSAGE_DETECTED, &detected("clean", "builtin", &[]), origin));
        let all = Filters { min_verdict: MinVerdict::Incomplete, ..Filters::default() };
        assert!(all.admit(MESSAGE_DETECTED, &detected("incomplete", "builtin", &[]), origin));
        assert!(!all.admit(MESSAGE_DETECTED, &detected("clean", "builtin", &[]), origin));
    }

    #[test]
    fn every_list_that_is_set_must_pass() {
        let sensor = Uuid::now_v7();
        let filters = Filters {
            engines: vec!["yara".into()],
            rule_tags: vec!["apt".into()],
            sensor_ids: vec![sensor],
            ..Filters::default()
        };
        let here = Origin { sensor: Some(sensor), node: None };
        assert!(filters.admit(MESSAGE_DETECTED, &detected("malicious", "yara", &["apt", "x"]), here));
        assert!(!filters.admit(MESSAGE_DETECTED, &detected("malicious", "clamav", &["apt"]), here));
        assert!(!filters.admit(MESSAGE_DETECTED, &detected("malicious", "yara", &["crime"]), here));
        let elsewhere = Origin { sensor: Some(Uuid::now_v7()), node: None };
        assert!(!filters.admit(MESSAGE_DETECTED, &detected("malicious", "yara", &["apt"]), elsewhere));
    }

    #[test]
    fn event_types_filter_and_tests_always_pass() {
        let filters = Filters { events: vec!["retrohunt.finished".into()], ..Filters::default() };
        assert!(!filters.admit(MESSAGE_DETECTED, &detected("malicious", "yara", &[]), Origin::default()));
        assert!(filters.admit("retrohunt.finished", &json!({}), Origin::default()));
        assert!(filters.admit(DESTINATION_TEST, &json!({}), Origin::default()));
        let bad = Filters { events: vec!["nope".into()], engines: vec!["av".into()], ..Filters::default() };
        let pointers: Vec<String> = bad.problems().into_iter().map(|(p, _)| p).collect();
        assert_eq!(pointers, ["/events/0", "/engines/0"]);
    }
}
