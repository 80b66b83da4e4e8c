//! What a scan finds: the report, its parts and detections, and the verdict they decide.
use std::fmt;

/// How bad a message or a single detection is. Ordered: `Clean < Spam < Suspicious < Malicious`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Clean,
    Spam,
    Suspicious,
    Malicious,
}

impl Verdict {
    /// `clean`, `suspicious` or `malicious`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Clean => "clean",
            Verdict::Spam => "spam",
            Verdict::Suspicious => "suspicious",
            Verdict::Malicious => "malicious",
        }
    }

    /// The inverse of [`Verdict::as_str`], ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Clean, Verdict::Spam, Verdict::Suspicious, Verdict::Malicious]
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Detection kind: the EICAR test string.
pub const KIND_EICAR: &str = "eicar_test_file";
/// Detection kind: a part that starts like an executable or a script.
pub const KIND_EXECUTABLE: &str = "executable_content";
/// Detection kind: a part name with a risky extension.
pub const KIND_RISKY_EXTENSION: &str = "risky_extension";
/// Detection kind: the message was not parsed (parsing it would not be bounded work), or not
/// all of its parts or detections are listed.
pub const KIND_TOO_COMPLEX: &str = "mime_structure_too_complex";

/// Detection kind: a YARA rule matched (`rule` names it).
pub const KIND_YARA_RULE: &str = "yara_rule";

/// The engine of the built-in checks.
pub const ENGINE_BUILTIN: &str = "builtin";
/// The engine of the YARA rules.
pub const ENGINE_YARA: &str = "yara";
/// ClamAV, through clamd.
pub const ENGINE_CLAMAV: &str = "clamav";
/// rspamd's spam and phishing checks.
pub const ENGINE_RSPAMD: &str = "rspamd";
/// Every engine, in the order a scan runs them.
pub const ENGINES: [&str; 4] = [ENGINE_BUILTIN, ENGINE_YARA, ENGINE_CLAMAV, ENGINE_RSPAMD];

/// Detection kind: a ClamAV signature matched (`rule` names it).
pub const KIND_SIGNATURE: &str = "signature";
/// Detection kind: the message is larger than an engine accepts, so that engine did not look at it.
pub const KIND_TOO_LARGE_FOR_ENGINE: &str = "too_large_for_engine";
/// Detection kind: rspamd's action for the message is to reject it or mark it as spam (`rule` is the action).
pub const KIND_SPAM: &str = "spam";
/// Detection kind: an rspamd phishing symbol (`rule` names it).
pub const KIND_PHISHING: &str = "phishing";

fn builtin() -> String {
    ENGINE_BUILTIN.to_owned()
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detection {
    /// Which engine found it: `builtin`, `yara`, `clamav` or `rspamd`.
    #[serde(default = "builtin")]
    pub engine: String,
    /// `eicar_test_file`, `executable_content`, `risky_extension`, `mime_structure_too_complex`,
    /// one of the archive bounds (`archive_bomb`, `encrypted_archive`, `too_complex`),
    /// `yara_rule`, `signature` (ClamAV), `spam` or `phishing` (rspamd), or
    /// `too_large_for_engine`.
    pub kind: String,
    /// The YARA rule, ClamAV signature, rspamd action or symbol that matched; a YARA rule's
    /// namespace and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Human-readable, e.g. `EICAR test string in attachment "eicar.com"`.
    pub description: String,
    /// Index into `parts` where found, if in a part; `None` when found in the raw message only.
    pub part: Option<usize>,
    /// Inside that part, the archive members leading to the object, outermost first
    /// (`["invoice.zip", "eicar.com"]`: `eicar.com` inside `invoice.zip` inside the part);
    /// empty when it is the part itself.
    #[serde(default)]
    pub archive_path: Vec<String>,
    /// What this detection alone implies.
    pub verdict: Verdict,
    /// The retro-hunt that found it over stored mail, when not the message's own scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrohunt_id: Option<uuid::Uuid>,
}

impl Detection {
    /// A finding of the built-in checks.
    pub fn builtin(
        kind: &str,
        description: String,
        part: Option<usize>,
        archive_path: Vec<String>,
        verdict: Verdict,
    ) -> Self {
        Detection {
            engine: builtin(),
            kind: kind.to_owned(),
            rule: None,
            namespace: None,
            tags: Vec::new(),
            description,
            part,
            archive_path,
            verdict,
            retrohunt_id: None,
        }
    }
}

impl Detection {
    /// A YARA rule's match on an object (`part`, `archive_path`): engine `yara`, its rule,
    /// namespace and tags, its severity as the verdict.
    pub fn of_rule(
        m: &super::yara::RuleMatch,
        description: String,
        part: Option<usize>,
        archive_path: Vec<String>,
    ) -> Self {
        let mut detection = Detection::builtin(KIND_YARA_RULE, description, part, archive_path, m.verdict);
        detection.engine = ENGINE_YARA.to_owned();
        detection.rule = Some(m.rule.clone());
        detection.namespace = Some(m.namespace.clone());
        detection.tags = m.tags.clone();
        detection
    }
}

/// One leaf MIME part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    pub index: usize,
    /// Attachment/inline filename (Content-Disposition filename or Content-Type name), if any.
    pub name: Option<String>,
    /// e.g. `text/plain`, `application/octet-stream`; lowercase.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the decoded content.
    pub sha256: String,
    /// Lowercase hex MD5 of the decoded content.
    pub md5: String,
    pub is_attachment: bool,
}

/// The top-level headers that identify a message.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct HeaderSummary {
    /// As a display string, e.g. `Alice <alice@example.com>`; several joined with `, `.
    pub from: Option<String>,
    /// All To addresses joined with `, `.
    pub to: Option<String>,
    pub subject: Option<String>,
    /// Without the angle brackets.
    pub message_id: Option<String>,
    /// RFC 3339 if parseable, else the raw header text.
    pub date: Option<String>,
}

/// How an engine's look at a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineStatus {
    Ok,
    Error,
    Timeout,
}

impl EngineStatus {
    /// `ok`, `error` or `timeout`, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineStatus::Ok => "ok",
            EngineStatus::Error => "error",
            EngineStatus::Timeout => "timeout",
        }
    }
}

/// What rspamd made of a message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpamCheck {
    pub score: f64,
    /// The score from which rspamd's action is `reject`.
    pub required_score: f64,
    /// `no action`, `greylist`, `add header`, `rewrite subject`, `soft reject` or `reject`.
    pub action: String,
    /// The symbols that fired, highest score first (at most [`MAX_LISTED_SYMBOLS`]).
    pub symbols: Vec<SpamSymbol>,
}

/// One rspamd symbol that fired.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpamSymbol {
    pub name: String,
    pub score: f64,
}

/// The most rspamd symbols kept per message.
pub const MAX_LISTED_SYMBOLS: usize = 50;

/// One engine's look at a message: how it went, which version with which rules or signatures, and
/// how long it took.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineRun {
    /// `builtin`, `yara`, `clamav` or `rspamd`.
    pub engine: String,
    pub status: EngineStatus,
    /// The engine's version, e.g. `yara-x 1.22.1`.
    pub version: String,
    /// Its rules or signature database, e.g. `12 rules, sha256 3f2a…` (none for the built-in checks).
    pub database: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub millis: u64,
    /// rspamd's score, action and symbols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam: Option<SpamCheck>,
}

impl EngineRun {
    /// A look that went as `status` says, without a spam check.
    pub fn new(engine: &str, status: EngineStatus, version: String, database: Option<String>, millis: u64) -> Self {
        EngineRun { engine: engine.to_owned(), status, version, database, error: None, millis, spam: None }
    }
}

/// Everything [`scan()`] found out about a message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanReport {
    pub headers: HeaderSummary,
    pub parts: Vec<Part>,
    pub detections: Vec<Detection>,
    /// The worst of the detections, `Clean` if none.
    pub verdict: Verdict,
    /// `false` when mail-parser could not parse the message at all (still scanned as raw bytes),
    /// or was not let near it (a `mime_structure_too_complex` detection says why).
    pub parsed: bool,
    /// Every engine that looked, and how it went.
    #[serde(default)]
    pub engines: Vec<EngineRun>,
}

impl ScanReport {
    /// Adds the look of an engine run outside this module (a daemon's), and what it found; the
    /// verdict stays the worst detection.
    pub fn add_engine(&mut self, run: EngineRun, detections: Vec<Detection>) {
        for detection in detections {
            self.verdict = self.verdict.max(detection.verdict);
            self.detections.push(detection);
        }
        self.engines.push(run);
    }
}

/// The most parts listed in a report; later ones are still scanned.
pub const MAX_LISTED_PARTS: usize = 10_000;
/// The most detections listed in a report, apart from ones that make the verdict worse.
pub const MAX_LISTED_DETECTIONS: usize = 1_000;
