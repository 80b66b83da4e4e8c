//! YARA-X in process: rule sources compiled once and shared, every object of a message scanned
//! with them, with globals that tell a rule what it is looking at.
//!
//! Globals every rule may use (declared before any source is compiled):
//! - `filename`: the attachment's or archive member's name, `""` for the raw message or a part
//!   without one;
//! - `content_type`: the part's `type/subtype` (`message/rfc822` for the raw message; a member
//!   inherits `application/octet-stream`);
//! - `sender_domain`: the envelope sender's domain, lowercase (`""` for a null sender);
//! - `recipient_domains`: the envelope recipients' domains, lowercase, as an array of strings.
//!
//! A matching rule's verdict comes from its `severity` metadata: `malicious`, `suspicious` or
//! `spam`; a rule without one (or with another value) is `suspicious`.
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;

use super::findings::Verdict;

/// One source to compile: its text, the namespace its rules live in, and where it came from.
#[derive(Debug, Clone)]
pub struct RuleSource {
    pub namespace: String,
    /// A file name or a ruleset's name: it prefixes every problem reported in this source.
    pub origin: String,
    pub text: String,
    /// Rules of this source that are switched off: still evaluated (another rule's condition may
    /// name them), never reported.
    pub disabled: Vec<String>,
}

impl RuleSource {
    pub fn new(namespace: impl Into<String>, origin: impl Into<String>, text: impl Into<String>) -> Self {
        RuleSource { namespace: namespace.into(), origin: origin.into(), text: text.into(), disabled: Vec::new() }
    }
}

/// A compile error or warning, where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// The source's origin.
    pub origin: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// yara-x's code, e.g. `E009` or `slow_pattern`.
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{}:{line}:{column}: {}", self.origin, self.message),
            _ => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// The YARA-X version compiled in (the dependency is pinned to it; a unit test holds the two together).
pub const YARA_X_VERSION: &str = "1.22.1";

/// Compiled rules, shared by every scan worker.
pub struct Rules {
    rules: yara_x::Rules,
    /// Warnings the compiler gave (rules with them still run).
    pub warnings: Vec<Problem>,
    /// What a scan result names as the rules it ran: their count and a digest of their sources.
    pub fingerprint: String,
    /// `(namespace, rule)` of the rules switched off.
    disabled: std::collections::HashSet<(String, String)>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules").field("rules", &self.count()).finish()
    }
}

/// The demo ruleset `mailsensor dev` runs unless given rules of its own.
pub fn demo_rules() -> RuleSource {
    RuleSource::new("demo", "demo.yar", include_str!("demo.yar"))
}

/// How long one object may take; a scan that times out is a failed scan, retried later.
pub const OBJECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Matches kept per pattern: enough to show where, not enough to grow without bound.
const MATCHES_PER_PATTERN: usize = 16;

fn declare_globals(compiler: &mut yara_x::Compiler<'_>) {
    for (name, value) in [
        ("filename", json!("")),
        ("content_type", json!("")),
        ("sender_domain", json!("")),
        ("recipient_domains", json!([""])),
    ] {
        // Declaring a fresh global of a plain type cannot fail.
        let _ = compiler.define_global(name, value);
    }
}

/// A compiler error or warning, turned into a [`Problem`]: its code and title, and where its first
/// label points (line and column exist only in a label's serialised form). The whole report is
/// never serialised: that renders the source snippet, which panics in yara-x 1.22.1 on sources
/// starting with some multi-byte characters (U+0085).
fn problem(origin: &str, code: &str, title: &str, first_label: Option<Value>) -> Problem {
    let label = first_label.unwrap_or_default();
    let number = |key: &str| label.get(key).and_then(Value::as_u64).map(|n| n as usize);
    let origin = label.get("code_origin").and_then(Value::as_str).unwrap_or(origin).to_owned();
    Problem { origin, line: number("line"), column: number("column"), code: code.to_owned(), message: title.to_owned() }
}

fn first_label<L: serde::Serialize>(mut labels: impl Iterator<Item = L>) -> Option<Value> {
    labels.next().and_then(|label| serde_json::to_value(&label).ok())
}

/// Compiles `sources` together. `include` is refused (a rule must not read the server's files).
/// Every error of every source comes back at once; warnings come back with the rules.
pub fn compile(sources: &[RuleSource]) -> Result<Rules, Vec<Problem>> {
    let mut compiler = yara_x::Compiler::new();
    compiler.enable_includes(false);
    declare_globals(&mut compiler);
    for source in sources {
        compiler.new_namespace(&source.namespace);
        let code = yara_x::SourceCode::from(source.text.as_str()).with_origin(source.origin.clone());
        // The first error is also in `errors()`, with every later one.
        let _ = compiler.add_source(code);
    }
    let origin = sources.first().map(|s| s.origin.as_str()).unwrap_or_default();
    let errors: Vec<Problem> =
        compiler.errors().iter().map(|e| problem(origin, e.code(), e.title(), first_label(e.labels()))).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let warnings =
        compiler.warnings().iter().map(|w| problem(origin, w.code(), w.title(), first_label(w.labels()))).collect();
    let rules = compiler.build();
    let digest = sources.iter().fold(sha2::Sha256::new(), |digest, source| {
        digest
            .chain_update(source.namespace.as_bytes())
            .chain_update([0])
            .chain_update(source.text.as_bytes())
            .chain_update([0])
            .chain_update(source.disabled.join("\n").as_bytes())
            .chain_update([0])
    });
    let disabled =
        sources.iter().flat_map(|s| s.disabled.iter().map(|rule| (s.namespace.clone(), rule.clone()))).collect();
    let count = rules.iter().len();
    let plural = if count == 1 { "" } else { "s" };
    let fingerprint = format!("{count} rule{plural}, sha256 {}", &hex::encode(digest.finalize())[..12]);
    Ok(Rules { rules, warnings, fingerprint, disabled })
}

impl Rules {
    pub fn count(&self) -> usize {
        self.rules.iter().len()
    }

    /// The rules of `namespace`, in source order.
    pub fn rule_names(&self, namespace: &str) -> Vec<String> {
        self.rules.iter().filter(|r| r.namespace() == namespace).map(|r| r.identifier().to_owned()).collect()
    }

    /// A scanner for one worker, to be reused for every object it scans.
    pub fn scanner(&self) -> Scanner<'_> {
        let mut scanner = yara_x::Scanner::new(&self.rules);
        scanner.set_timeout(OBJECT_TIMEOUT);
        scanner.max_matches_per_pattern(MATCHES_PER_PATTERN);
        Scanner { scanner, fingerprint: &self.fingerprint, disabled: &self.disabled }
    }
}

/// What a rule may know of the message around the object it looks at.
#[derive(Debug, Clone, Default)]
pub struct Envelope {
    pub sender_domain: String,
    pub recipient_domains: Vec<String>,
}

impl Envelope {
    /// From the envelope as stored: `MAIL FROM` and the accepted `RCPT TO` addresses.
    pub fn of(mail_from: Option<&str>, rcpt_to: &[String]) -> Envelope {
        let domain =
            |address: &str| address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase());
        let mut recipient_domains: Vec<String> = rcpt_to.iter().filter_map(|a| domain(a)).collect();
        recipient_domains.sort();
        recipient_domains.dedup();
        Envelope { sender_domain: mail_from.and_then(domain).unwrap_or_default(), recipient_domains }
    }
}

/// One object as a rule sees it.
pub struct Object<'a> {
    pub content: &'a [u8],
    pub filename: &'a str,
    pub content_type: &'a str,
}

/// A rule that matched an object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleMatch {
    pub rule: String,
    pub namespace: String,
    pub tags: Vec<String>,
    pub verdict: Verdict,
    /// The matched strings: pattern identifier and where, at most a few per pattern.
    pub strings: Vec<StringMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StringMatch {
    /// e.g. `$a`.
    pub pattern: String,
    pub offset: u64,
    pub length: u64,
}

/// Why an object could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanFailure {
    #[error("YARA-X gave up on an object after {} s", OBJECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("YARA-X failed: {0}")]
    Failed(String),
}

/// A reusable scanner (creating one is costly).
pub struct Scanner<'r> {
    scanner: yara_x::Scanner<'r>,
    /// Its rules' [`Rules::fingerprint`].
    pub fingerprint: &'r str,
    disabled: &'r std::collections::HashSet<(String, String)>,
}

fn severity(rule: &yara_x::Rule<'_, '_>) -> Verdict {
    let named = rule.metadata().find_map(|(key, value)| match value {
        yara_x::MetaValue::String(s) if key == "severity" => Some(s.to_ascii_lowercase()),
        _ => None,
    });
    match named.as_deref() {
        Some("malicious") => Verdict::Malicious,
        Some("spam") => Verdict::Spam,
        _ => Verdict::Suspicious,
    }
}

impl Scanner<'_> {
    /// The rules that match `object`, seen from `envelope`.
    pub fn scan(&mut self, object: &Object<'_>, envelope: &Envelope) -> Result<Vec<RuleMatch>, ScanFailure> {
        let failed = |e: yara_x::errors::VariableError| ScanFailure::Failed(e.to_string());
        let recipients = match envelope.recipient_domains.is_empty() {
            true => json!([""]),
            false => json!(envelope.recipient_domains),
        };
        self.scanner.set_global("filename", object.filename).map_err(failed)?;
        self.scanner.set_global("content_type", object.content_type).map_err(failed)?;
        self.scanner.set_global("sender_domain", envelope.sender_domain.as_str()).map_err(failed)?;
        self.scanner.set_global("recipient_domains", recipients).map_err(failed)?;
        let results = match self.scanner.scan(object.content) {
            Ok(results) => results,
            Err(yara_x::errors::ScanError::Timeout) => return Err(ScanFailure::Timeout),
            Err(e) => return Err(ScanFailure::Failed(e.to_string())),
        };
        let disabled = self.disabled;
        Ok(results
            .matching_rules()
            .filter(|rule| !disabled.contains(&(rule.namespace().to_owned(), rule.identifier().to_owned())))
            .map(|rule| RuleMatch {
                rule: rule.identifier().to_owned(),
                namespace: rule.namespace().to_owned(),
                tags: rule.tags().map(|t| t.identifier().to_owned()).collect(),
                verdict: severity(&rule),
                strings: rule
                    .patterns()
                    .flat_map(|p| {
                        let pattern = p.identifier().to_owned();
                        p.matches()
                            .map(move |m| StringMatch {
                                pattern: pattern.clone(),
                                offset: m.range().start as u64,
                                length: m.range().len() as u64,
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            })
            .collect())
    }
}
