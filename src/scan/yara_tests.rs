//! Tests for the YARA-X engine: compile problems where they are, globals, and matches on every
//! object of a message (raw message, parts, archive members).
use std::io::Write;

use super::tests::{EICAR_STR, with_attachment};
use super::yara::{self, Envelope, RuleSource};
use super::*;

fn source(text: &str) -> RuleSource {
    RuleSource::new("t", "test.yar", text)
}

fn rules(text: &str) -> yara::Rules {
    yara::compile(&[source(text)]).unwrap_or_else(|problems| panic!("{problems:?}"))
}

fn scan_with(rules: &yara::Rules, raw: &[u8], envelope: Envelope) -> ScanReport {
    let mut scanner = rules.scanner();
    let report = scan_with_yara(raw, YaraRun::new(vec![&mut scanner], envelope));
    assert!(report.engines.iter().all(|e| e.status == EngineStatus::Ok), "{:?}", report.engines);
    report
}

fn to(domains: &[&str]) -> Envelope {
    Envelope::of(Some("mallory@evil.example"), &domains.iter().map(|d| format!("x@{d}")).collect::<Vec<_>>())
}

#[test]
fn every_compile_error_is_reported_with_its_line_and_column() {
    let text = "rule good { condition: true }\n\nrule bad1 { strings: $a = \"x\" condition: $b }\nrule bad2 { condition: nosuchthing }\n";
    let problems = yara::compile(&[source(text)]).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!((problems[0].line, problems[0].origin.as_str()), (Some(3), "test.yar"));
    assert!(problems[0].column.is_some());
    assert!(problems[0].message.contains("unknown pattern"), "{}", problems[0].message);
    assert_eq!(problems[1].line, Some(4));
    assert!(problems[1].to_string().starts_with("test.yar:4:"), "{}", problems[1]);
}

#[test]
fn include_is_refused() {
    let problems = yara::compile(&[source("include \"/etc/passwd\"\nrule a { condition: true }")]).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].line, Some(1));
    assert!(problems[0].message.contains("include"), "{}", problems[0].message);
}

#[test]
fn slow_patterns_are_warnings() {
    // A one-byte pattern matches almost everywhere: it compiles, with a warning where it is.
    let compiled = rules("rule slow {\n strings: $a = { 00 }\n condition: $a }");
    assert_eq!(compiled.warnings.len(), 1, "{:?}", compiled.warnings);
    assert_eq!((compiled.warnings[0].line, compiled.warnings[0].code.as_str()), (Some(2), "slow_pattern"));
}

#[test]
fn rules_match_parts_and_archive_members_by_name_type_and_envelope() {
    let compiled = rules(
        r#"
        rule js_to_finance : finance { meta: severity = "malicious"
            condition: filename matches /\.js$/ and for any d in recipient_domains : (d == "finance.example.com") }
        rule eicar_anywhere { strings: $e = "EICAR-STANDARD" condition: $e }
        rule from_evil { meta: severity = "spam" condition: sender_domain == "evil.example" and content_type == "message/rfc822" }
        "#,
    );
    let raw = with_attachment("run.js", "application/javascript", b"WScript.Echo(1)");
    let finance = scan_with(&compiled, raw.as_bytes(), to(&["finance.example.com"]));
    assert_eq!(finance.verdict, Verdict::Malicious);
    let js = finance.detections.iter().find(|d| d.rule.as_deref() == Some("js_to_finance")).expect("js rule");
    assert_eq!((js.engine.as_str(), js.kind.as_str(), js.part), ("yara", "yara_rule", Some(1)));
    assert_eq!(js.namespace.as_deref(), Some("t"));
    assert_eq!(js.tags, ["finance"]);
    let spam = finance.detections.iter().find(|d| d.rule.as_deref() == Some("from_evil")).expect("envelope rule");
    assert_eq!((spam.part, spam.verdict), (None, Verdict::Spam));

    // The same mail to sales: only the sender's rule (and the built-in risky extension).
    let sales = scan_with(&compiled, raw.as_bytes(), to(&["sales.example.com"]));
    let rules: Vec<_> = sales.detections.iter().filter_map(|d| d.rule.as_deref()).collect();
    assert_eq!(rules, ["from_evil"]);

    // Inside a zip: the member's own name, and its path.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("inner/a.txt", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(EICAR_STR.as_bytes()).unwrap();
    let zip = zip.finish().unwrap().into_inner();
    let report = scan_with(&compiled, with_attachment("a.zip", "application/zip", &zip).as_bytes(), to(&["b.example"]));
    let hit =
        report.detections.iter().find(|d| d.rule.as_deref() == Some("eicar_anywhere") && d.part == Some(1)).unwrap();
    assert_eq!(hit.archive_path, ["inner/a.txt"]);
    assert_eq!(hit.verdict, Verdict::Suspicious, "no severity: suspicious");
}

#[test]
fn the_demo_rules_compile_and_find_html_smuggling_and_pdf_javascript() {
    let demo = yara::compile(&[yara::demo_rules()]).unwrap();
    let html = br#"<html><body><script>
        var b = atob("TVqQAAMAAAAEAAAA"); var bytes = new Uint8Array(b.length);
        var blob = new Blob([bytes], {type: "application/octet-stream"});
        var a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = "invoice.exe"; a.click();
        </script></body></html>"#;
    let report = scan_with(&demo, with_attachment("invoice.html", "text/html", html).as_bytes(), to(&["a.example"]));
    assert!(report.detections.iter().any(|d| d.rule.as_deref() == Some("html_smuggling")), "{:?}", report.detections);
    assert_eq!(report.verdict, Verdict::Malicious);

    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n2 0 obj << /S /JavaScript /JS (app.alert(1)) >> endobj\n%%EOF\n";
    let report = scan_with(&demo, with_attachment("doc.pdf", "application/pdf", pdf).as_bytes(), to(&["a.example"]));
    assert!(report.detections.iter().any(|d| d.rule.as_deref() == Some("pdf_openaction_javascript")));

    let plain = scan_with(&demo, with_attachment("notes.txt", "text/plain", b"hello").as_bytes(), to(&["a.example"]));
    assert_eq!(plain.verdict, Verdict::Clean);
}

#[test]
fn a_rule_that_cannot_finish_fails_the_scan_rather_than_calling_it_clean() {
    // A loop over every byte pair of a 4 MiB part takes far longer than the per-object timeout.
    let compiled = rules(
        "rule slow { condition: for all i in (0..filesize) : (for all j in (0..filesize) : (uint8(i) != 0xff or uint8(j) != 0xfe)) }",
    );
    let mut scanner = compiled.scanner();
    let raw = with_attachment("big.bin", "application/octet-stream", &vec![0u8; 4 << 20]);
    let report = scan_with_yara(raw.as_bytes(), YaraRun::new(vec![&mut scanner], to(&["a.example"])));
    let engines: Vec<_> = report.engines.iter().map(|e| (e.engine.as_str(), e.status)).collect();
    assert_eq!(engines, [("builtin", EngineStatus::Ok), ("yara", EngineStatus::Timeout)]);
    assert!(report.engines[1].error.as_deref().is_some_and(|e| e.contains("gave up")), "{:?}", report.engines[1]);
}

#[test]
fn a_report_names_each_engine_its_version_and_rules() {
    let compiled = rules("rule a { condition: false }\nrule b { condition: false }");
    let report = scan_with(&compiled, b"Subject: x\r\n\r\nhello\r\n", to(&["a.example"]));
    assert_eq!(report.engines.len(), 2);
    assert_eq!(report.engines[0].engine, "builtin");
    assert_eq!(report.engines[1].version, format!("yara-x {}", yara::YARA_X_VERSION));
    let database = report.engines[1].database.as_deref().unwrap();
    assert!(database.starts_with("2 rules, sha256 "), "{database}");
    // The same sources, the same fingerprint; other sources, another.
    assert_eq!(rules("rule a { condition: false }\nrule b { condition: false }").fingerprint, compiled.fingerprint);
    assert_ne!(rules("rule a { condition: true }\nrule b { condition: false }").fingerprint, compiled.fingerprint);
    assert_eq!(scan(b"Subject: x\r\n\r\nhello\r\n").engines.len(), 1);
}

#[test]
fn the_version_named_is_the_version_built() {
    let lock = include_str!("../../Cargo.lock");
    let entry = lock.split("[[package]]").find(|p| p.contains("name = \"yara-x\"\n")).expect("yara-x in Cargo.lock");
    assert!(entry.contains(&format!("version = \"{}\"", yara::YARA_X_VERSION)), "{entry}");
}

#[test]
fn problems_in_any_text_are_reported_not_panicked_on() {
    // yara-x 1.22.1 panics rendering a snippet of a source that starts with U+0085.
    for text in ["\u{85}\u{99}S\u{d1}", "\u{85}", "rule \u{85} { condition: true }"] {
        let problems = yara::compile(&[source(text)]).expect_err(text);
        assert!(problems.iter().all(|p| !p.code.is_empty() && !p.message.is_empty()), "{problems:?}");
    }
}
