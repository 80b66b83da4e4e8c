//! [`scan()`]: one raw message in, a [`ScanReport`] out.
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

use super::archive::{self, Expander};
use super::findings::{
    Detection, ENGINE_BUILTIN, ENGINE_YARA, EngineRun, EngineStatus, HeaderSummary, KIND_EICAR, KIND_EXECUTABLE,
    KIND_RISKY_EXTENSION, KIND_TOO_COMPLEX, MAX_LISTED_DETECTIONS, MAX_LISTED_PARTS, Part, ScanReport, Verdict,
};
use super::yara::{self, Envelope, Object, ScanFailure};
use super::{detect, guard, mime};

/// A detection about the whole message rather than one of its objects.
fn on_message(kind: &str, description: String, verdict: Verdict) -> Detection {
    Detection::builtin(kind, description, None, Vec::new(), verdict)
}

/// YARA rules run over every object of a message: the scanners of this worker (the platform's
/// rules, the tenant's rulesets in the sensor's scope), the envelope the rules' globals describe,
/// and the first failure (after which no rule runs for this message).
pub struct YaraRun<'s, 'r> {
    scanners: Vec<&'s mut yara::Scanner<'r>>,
    envelope: Envelope,
    failure: Option<ScanFailure>,
    spent: Duration,
    /// Every match with its strings, when explaining ([`explain()`]).
    explained: Option<Vec<Explained>>,
}

/// A rule that matched an object, with where its strings matched: what the explainer answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explained {
    /// The object, e.g. `attachment "invoice.zip"` or `member "a/b.txt" of attachment "x.zip"`.
    pub object: String,
    pub part: Option<usize>,
    pub archive_path: Vec<String>,
    #[serde(flatten)]
    pub matched: yara::RuleMatch,
}

impl<'s, 'r> YaraRun<'s, 'r> {
    pub fn new(scanners: Vec<&'s mut yara::Scanner<'r>>, envelope: Envelope) -> Self {
        YaraRun { scanners, envelope, failure: None, spent: Duration::ZERO, explained: None }
    }

    /// How the run went, for the report.
    fn outcome(&self) -> EngineRun {
        let status = match self.failure {
            None => EngineStatus::Ok,
            Some(ScanFailure::Timeout) => EngineStatus::Timeout,
            Some(ScanFailure::Failed(_)) => EngineStatus::Error,
        };
        let version = format!("yara-x {}", yara::YARA_X_VERSION);
        let fingerprints: Vec<&str> = self.scanners.iter().map(|s| s.fingerprint).collect();
        let database = Some(fingerprints.join("; "));
        let mut run = EngineRun::new(ENGINE_YARA, status, version, database, self.spent.as_millis() as u64);
        run.error = self.failure.as_ref().map(ToString::to_string);
        run
    }

    /// The detections of the rules that match `object` at `place`.
    fn look(&mut self, object: Object<'_>, place: &str, part: Option<usize>, path: &[String]) -> Vec<Detection> {
        if self.failure.is_some() {
            return Vec::new();
        }
        let started = Instant::now();
        let mut scanned = Ok(Vec::new());
        for scanner in self.scanners.iter_mut() {
            match (scanner.scan(&object, &self.envelope), &mut scanned) {
                (Ok(matches), Ok(all)) => all.extend(matches),
                (Err(e), _) => {
                    scanned = Err(e);
                    break;
                }
                _ => {}
            }
        }
        self.spent += started.elapsed();
        if let (Ok(matches), Some(explained)) = (&scanned, self.explained.as_mut()) {
            explained.extend(matches.iter().map(|m| Explained {
                object: place.to_owned(),
                part,
                archive_path: path.to_vec(),
                matched: m.clone(),
            }));
        }
        match scanned {
            Ok(matches) => matches
                .into_iter()
                .map(|m| {
                    let description = format!("YARA rule {}.{} matched {place}", m.namespace, m.rule);
                    Detection::of_rule(&m, description, part, path.to_vec())
                })
                .collect(),
            Err(e) => {
                self.failure = Some(e);
                Vec::new()
            }
        }
    }
}

/// Scans one raw RFC 5322 message with the built-in checks. Never panics, whatever the input;
/// work is bounded by its size.
///
/// Every leaf part, including those of nested multiparts and attached messages, gets an entry
/// in `parts` in document order (up to [`MAX_LISTED_PARTS`]). Parts inside an attached message
/// count as attachments.
pub fn scan(raw: &[u8]) -> ScanReport {
    scan_objects(raw, &mut None)
}

/// [`scan()`], and the YARA rules of `yara` over the raw message, every part and every archive
/// member. When a rule cannot finish on an object (a timeout), no rule runs on the rest of the
/// message and the report's `yara` engine says so: the caller must not take the verdict for a
/// complete one.
pub fn scan_with_yara(raw: &[u8], yara: YaraRun<'_, '_>) -> ScanReport {
    scan_and_run(raw, yara).0
}

/// [`scan_with_yara()`], and every rule that matched every object with where its strings matched
/// (the raw message's own matches included, even of rules that matched a part too).
pub fn explain(raw: &[u8], mut yara: YaraRun<'_, '_>) -> (ScanReport, Vec<Explained>) {
    yara.explained = Some(Vec::new());
    let (report, yara) = scan_and_run(raw, yara);
    (report, yara.explained.unwrap_or_default())
}

fn scan_and_run<'s, 'r>(raw: &[u8], yara: YaraRun<'s, 'r>) -> (ScanReport, YaraRun<'s, 'r>) {
    let mut yara = Some(yara);
    let mut report = scan_objects(raw, &mut yara);
    let yara = yara.expect("scan_objects keeps the run");
    if let Some(builtin) = report.engines.first_mut() {
        builtin.millis = builtin.millis.saturating_sub(yara.spent.as_millis() as u64);
    }
    report.engines.push(yara.outcome());
    (report, yara)
}

fn scan_objects(raw: &[u8], yara: &mut Option<YaraRun<'_, '_>>) -> ScanReport {
    let started = Instant::now();
    let mut parts = Vec::new();
    let mut detections = Detections::default();
    let mut headers = HeaderSummary::default();
    let mut parsed = false;
    let mut expander = Expander::new(archive::LIMITS);

    match guard::check(raw) {
        Ok(()) => {
            if let Some(message) = mime::parse(raw) {
                parsed = true;
                headers = mime::header_summary(&message);
                let mut leaves = 0;
                mime::for_each_leaf(message, |leaf| {
                    let index = leaves;
                    leaves += 1;
                    let listed = index < MAX_LISTED_PARTS;
                    for detection in inspect_part(index, listed, &leaf, &mut expander, yara) {
                        detections.push(detection);
                    }
                    if listed {
                        parts.push(Part {
                            index,
                            name: leaf.name,
                            content_type: leaf.content_type,
                            size: leaf.content.len() as u64,
                            sha256: hex::encode(Sha256::digest(leaf.content)),
                            md5: hex::encode(Md5::digest(leaf.content)),
                            is_attachment: leaf.is_attachment,
                        });
                    }
                });
                if leaves > MAX_LISTED_PARTS {
                    detections.list.push(on_message(
                        KIND_TOO_COMPLEX,
                        format!("{leaves} MIME parts; only the first {MAX_LISTED_PARTS} are listed"),
                        Verdict::Suspicious,
                    ));
                }
            }
        }
        Err(reason) => {
            if let Some(message) = mime::parse_headers(raw) {
                headers = mime::header_summary(&message);
                mime::dismantle(message);
            }
            detections.push(on_message(
                KIND_TOO_COMPLEX,
                format!("MIME structure not parsed, only scanned as raw bytes: {reason}"),
                Verdict::Suspicious,
            ));
        }
    }

    if let Some(yara) = yara {
        // Every part's bytes are in the raw message too: a rule is reported for the raw message
        // only when no object of it matched (a rule on headers, or on what the parser missed).
        let object = Object { content: raw, filename: "", content_type: "message/rfc822" };
        for detection in yara.look(object, "the raw message", None, &[]) {
            let seen = detections.list.iter().any(|d| d.rule == detection.rule && d.namespace == detection.namespace);
            if !seen {
                detections.push(detection);
            }
        }
    }
    if !detections.eicar && detect::contains_eicar(raw) {
        detections.push(on_message(KIND_EICAR, "EICAR test string in the raw message".to_owned(), Verdict::Malicious));
    }
    // A message never starts like this; a binary handed in as a message does.
    if let Some(kind) = detect::executable_kind(raw) {
        detections.push(on_message(
            KIND_EXECUTABLE,
            format!("{kind} at the start of the raw message"),
            Verdict::Suspicious,
        ));
    }
    if detections.dropped > 0 {
        detections.list.push(on_message(
            KIND_TOO_COMPLEX,
            format!("{} further detections not listed", detections.dropped),
            Verdict::Suspicious,
        ));
    }

    let verdict = detections.list.iter().map(|d| d.verdict).max().unwrap_or(Verdict::Clean);
    let version = format!("mailsensor {}", env!("CARGO_PKG_VERSION"));
    let builtin = EngineRun::new(ENGINE_BUILTIN, EngineStatus::Ok, version, None, started.elapsed().as_millis() as u64);
    ScanReport { headers, parts, detections: detections.list, verdict, parsed, engines: vec![builtin] }
}

/// Detections as they are found, capped at [`MAX_LISTED_DETECTIONS`] without changing the verdict.
#[derive(Default)]
struct Detections {
    list: Vec<Detection>,
    worst: Option<Verdict>,
    dropped: usize,
    /// An EICAR detection was made in a part (listed or not).
    eicar: bool,
}

impl Detections {
    fn push(&mut self, detection: Detection) {
        self.eicar |= detection.kind == KIND_EICAR;
        if self.list.len() < MAX_LISTED_DETECTIONS || Some(detection.verdict) > self.worst {
            self.worst = self.worst.max(Some(detection.verdict));
            self.list.push(detection);
        } else {
            self.dropped += 1;
        }
    }
}

/// The detections for one leaf part and the members of the archive it may be; `listed` when it
/// has an entry in `parts`.
fn inspect_part(
    index: usize,
    listed: bool,
    leaf: &mime::Leaf<'_>,
    expander: &mut Expander,
    yara: &mut Option<YaraRun<'_, '_>>,
) -> Vec<Detection> {
    let place = match (&leaf.name, listed) {
        (Some(name), true) => format!("attachment {name:?}"),
        (Some(name), false) => format!("attachment {name:?} (part {index}, not listed)"),
        (None, true) => format!("part {index} ({})", leaf.content_type),
        (None, false) => format!("part {index} ({}, not listed)", leaf.content_type),
    };
    let part = listed.then_some(index);
    let original = leaf.original.as_deref();
    let mut found = inspect_object(&place, part, &[], leaf.name.as_deref(), leaf.content, original);
    // A text part converted from another charset is an archive (or a rule's match) only in its
    // bytes as sent.
    let bytes = original.unwrap_or(leaf.content);
    if let Some(yara) = yara.as_mut() {
        let object = Object {
            content: bytes,
            filename: leaf.name.as_deref().unwrap_or_default(),
            content_type: &leaf.content_type,
        };
        found.extend(yara.look(object, &place, part, &[]));
    }
    let mut bounds = Vec::new();
    expander.expand(
        bytes,
        &mut |path, content| {
            let place = format!("member {:?} of {place}", path.join("/"));
            let name = path.last().map(String::as_str);
            found.extend(inspect_object(&place, part, path, name, content, None));
            if let Some(yara) = yara.as_mut() {
                let filename = name.unwrap_or_default();
                let object = Object { content, filename, content_type: "application/octet-stream" };
                found.extend(yara.look(object, &place, part, path));
            }
        },
        &mut |bound| bounds.push(bound),
    );
    found.extend(bounds.into_iter().map(|bound| {
        let place = match bound.path.is_empty() {
            true => place.clone(),
            false => format!("member {:?} of {place}", bound.path.join("/")),
        };
        let verdict = Verdict::Suspicious;
        let description = format!("{place}: {}", bound.description);
        Detection::builtin(bound.kind, description, part, bound.path, verdict)
    }));
    found
}

/// The built-in checks on one object: a part (empty `path`) or an archive member in it.
fn inspect_object(
    place: &str,
    part: Option<usize>,
    path: &[String],
    name: Option<&str>,
    content: &[u8],
    original: Option<&[u8]>,
) -> Vec<Detection> {
    let detection =
        |kind: &str, description: String, verdict| Detection::builtin(kind, description, part, path.to_vec(), verdict);
    let mut found = Vec::new();
    if detect::contains_eicar(content) || original.is_some_and(detect::contains_eicar) {
        found.push(detection(KIND_EICAR, format!("EICAR test string in {place}"), Verdict::Malicious));
    }
    if let Some(kind) = original.and_then(detect::executable_kind).or_else(|| detect::executable_kind(content)) {
        found.push(detection(KIND_EXECUTABLE, format!("{kind} in {place}"), Verdict::Suspicious));
    }
    if let Some(risky) = name.and_then(detect::risky_extension) {
        let double = match &risky.decoy {
            Some(decoy) => format!(", behind a double extension \".{decoy}.{}\"", risky.extension),
            None => String::new(),
        };
        let description = format!("risky file extension \".{}\" on {place}{double}", risky.extension);
        found.push(detection(KIND_RISKY_EXTENSION, description, Verdict::Suspicious));
    }
    found
}
