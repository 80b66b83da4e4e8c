//! The tenants' detection rulesets as the scan workers hold them: each ruleset's content by
//! revision, and each combination in force for some sensor compiled once and shared by every
//! worker of this replica. A new revision is another key: it is compiled the first time a claimed
//! message needs it, and what no message needs any more is dropped.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::scan::yara;
use crate::store::rulesets::{InForce, Loaded};

/// Compiled combinations kept; past this the least recently used go.
const COMPILED_KEPT: usize = 64;

/// Compiled rules, and the tick they were last used at.
type Compiled = (Arc<yara::Rules>, u64);

#[derive(Default)]
pub struct TenantRules {
    /// Ruleset id → (revision, its source as compiled).
    sources: Mutex<HashMap<Uuid, (i64, yara::RuleSource)>>,
    /// The rulesets in force for a sensor → them compiled together, and when last used.
    compiled: Mutex<HashMap<Vec<InForce>, Compiled>>,
    uses: std::sync::atomic::AtomicU64,
}

impl TenantRules {
    /// Whether `revision` of ruleset `id` is held.
    pub fn knows(&self, id: Uuid, revision: i64) -> bool {
        self.sources.lock().unwrap_or_else(|e| e.into_inner()).get(&id).is_some_and(|(r, _)| *r == revision)
    }

    /// Takes the content of rulesets read with a claim.
    pub fn learn(&self, loaded: Vec<Loaded>) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        for ruleset in loaded {
            let mut source = yara::RuleSource::new(ruleset.name.clone(), ruleset.name, ruleset.source);
            source.disabled = ruleset.disabled_rules;
            sources.insert(ruleset.id, (ruleset.revision, source));
        }
    }

    /// `in_force` compiled together (a blocking call: compiling is CPU work); `None` for none.
    pub fn rules(&self, in_force: &[InForce]) -> Result<Option<Arc<yara::Rules>>, String> {
        if in_force.is_empty() {
            return Ok(None);
        }
        let tick = self.uses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some((rules, used)) = self.compiled.lock().unwrap_or_else(|e| e.into_inner()).get_mut(in_force) {
            *used = tick;
            return Ok(Some(rules.clone()));
        }
        let sources: Vec<yara::RuleSource> = {
            let held = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            in_force
                .iter()
                .map(|(id, revision)| match held.get(id) {
                    Some((r, source)) if r == revision => Ok(source.clone()),
                    _ => Err(format!("detection ruleset {id} revision {revision} was not loaded")),
                })
                .collect::<Result<_, _>>()?
        };
        // Each was compiled when written: together they compile too (one namespace each).
        let rules = yara::compile(&sources).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            format!("the tenant's detection rulesets do not compile: {}", list.join("; "))
        })?;
        let rules = Arc::new(rules);
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if compiled.len() >= COMPILED_KEPT
            && let Some(oldest) = compiled.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            compiled.remove(&oldest);
        }
        compiled.insert(in_force.to_vec(), (rules.clone(), tick));
        Ok(Some(rules))
    }
}
