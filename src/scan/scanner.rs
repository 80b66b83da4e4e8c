//! [`scan()`]: one raw message in, a [`ScanReport`] out.
use md5::Md5;
use sha2::{Digest, Sha256};

use super::findings::{
    Detection, HeaderSummary, KIND_EICAR, KIND_EXECUTABLE, KIND_RISKY_EXTENSION, KIND_TOO_COMPLEX,
    MAX_LISTED_DETECTIONS, MAX_LISTED_PARTS, Part, ScanReport, Verdict,
};
use super::{detect, guard, mime};

/// Scans one raw RFC 5322 message. Never panics, whatever the input; work is bounded by its size.
///
/// Every leaf part, including those of nested multiparts and attached messages, gets an entry
/// in `parts` in document order (up to [`MAX_LISTED_PARTS`]). Parts inside an attached message
/// count as attachments.
pub fn scan(raw: &[u8]) -> ScanReport {
    let mut parts = Vec::new();
    let mut detections = Detections::default();
    let mut headers = HeaderSummary::default();
    let mut parsed = false;

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
                    for detection in inspect_part(index, listed, &leaf) {
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
                    detections.list.push(Detection {
                        kind: KIND_TOO_COMPLEX.to_owned(),
                        description: format!("{leaves} MIME parts; only the first {MAX_LISTED_PARTS} are listed"),
                        part: None,
                        verdict: Verdict::Suspicious,
                    });
                }
            }
        }
        Err(reason) => {
            if let Some(message) = mime::parse_headers(raw) {
                headers = mime::header_summary(&message);
                mime::dismantle(message);
            }
            detections.push(Detection {
                kind: KIND_TOO_COMPLEX.to_owned(),
                description: format!("MIME structure not parsed, only scanned as raw bytes: {reason}"),
                part: None,
                verdict: Verdict::Suspicious,
            });
        }
    }

    if !detections.eicar && detect::contains_eicar(raw) {
        detections.push(Detection {
            kind: KIND_EICAR.to_owned(),
            description: "EICAR test string in the raw message".to_owned(),
            part: None,
            verdict: Verdict::Malicious,
        });
    }
    // A message never starts like this; a binary handed in as a message does.
    if let Some(kind) = detect::executable_kind(raw) {
        detections.push(Detection {
            kind: KIND_EXECUTABLE.to_owned(),
            description: format!("{kind} at the start of the raw message"),
            part: None,
            verdict: Verdict::Suspicious,
        });
    }
    if detections.dropped > 0 {
        detections.list.push(Detection {
            kind: KIND_TOO_COMPLEX.to_owned(),
            description: format!("{} further detections not listed", detections.dropped),
            part: None,
            verdict: Verdict::Suspicious,
        });
    }

    let verdict = detections.list.iter().map(|d| d.verdict).max().unwrap_or(Verdict::Clean);
    ScanReport { headers, parts, detections: detections.list, verdict, parsed }
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

/// The detections for one leaf part; `listed` when it has an entry in `parts`.
fn inspect_part(index: usize, listed: bool, leaf: &mime::Leaf<'_>) -> Vec<Detection> {
    let place = match (&leaf.name, listed) {
        (Some(name), true) => format!("attachment {name:?}"),
        (Some(name), false) => format!("attachment {name:?} (part {index}, not listed)"),
        (None, true) => format!("part {index} ({})", leaf.content_type),
        (None, false) => format!("part {index} ({}, not listed)", leaf.content_type),
    };
    let detection = |kind: &str, description: String, verdict| Detection {
        kind: kind.to_owned(),
        description,
        part: listed.then_some(index),
        verdict,
    };
    let mut found = Vec::new();
    let original = leaf.original.as_deref();
    if detect::contains_eicar(leaf.content) || original.is_some_and(detect::contains_eicar) {
        found.push(detection(KIND_EICAR, format!("EICAR test string in {place}"), Verdict::Malicious));
    }
    if let Some(kind) = original.and_then(detect::executable_kind).or_else(|| detect::executable_kind(leaf.content)) {
        found.push(detection(KIND_EXECUTABLE, format!("{kind} in {place}"), Verdict::Suspicious));
    }
    if let Some(risky) = leaf.name.as_deref().and_then(detect::risky_extension) {
        let double = match &risky.decoy {
            Some(decoy) => format!(", behind a double extension \".{decoy}.{}\"", risky.extension),
            None => String::new(),
        };
        let description = format!("risky file extension \".{}\" on {place}{double}", risky.extension);
        found.push(detection(KIND_RISKY_EXTENSION, description, Verdict::Suspicious));
    }
    found
}
