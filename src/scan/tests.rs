//! Tests for `scan`, on messages built here.

use std::time::{Duration, Instant};

use super::detect::{EICAR, contains_eicar, executable_kind, risky_extension};
use super::*;

pub(super) const EICAR_STR: &str = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// sha256("hello\n"), from `printf 'hello\n' | sha256sum`.
const SHA256_HELLO_NL: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
/// md5("hello\n"), from `printf 'hello\n' | md5sum`.
const MD5_HELLO_NL: &str = "b1946ac92492d2347c6235b4d2611184";
/// sha256("hello").
const SHA256_HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
/// sha256("") and md5("").
const SHA256_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MD5_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// Joins lines with CRLF, the way messages travel.
fn crlf(lines: &[&str]) -> String {
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

/// Standard base64 with padding, wrapped at 76 characters per line with CRLF.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() / 3 * 4 + data.len() / 38 + 8);
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
        out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
        out.push(if chunk.len() > 1 { char::from(ALPHABET[(n >> 6) as usize & 63]) } else { '=' });
        out.push(if chunk.len() > 2 { char::from(ALPHABET[n as usize & 63]) } else { '=' });
    }
    out
}

/// A multipart/mixed message with a text body and one base64 attachment.
pub(super) fn with_attachment(filename: &str, content_type: &str, content: &[u8]) -> String {
    crlf(&[
        "From: Mallory <mallory@example.net>",
        "To: victim@example.com",
        "Subject: see attached",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"b1\"",
        "",
        "--b1",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Please open the attachment.",
        "--b1",
        &format!("Content-Type: {content_type}; name=\"{filename}\""),
        &format!("Content-Disposition: attachment; filename=\"{filename}\""),
        "Content-Transfer-Encoding: base64",
        "",
        &base64(content),
        "--b1--",
    ])
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub(super) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn kinds(report: &ScanReport) -> Vec<(&str, Option<usize>)> {
    report.detections.iter().map(|d| (d.kind.as_str(), d.part)).collect()
}

pub(super) fn pe_image() -> Vec<u8> {
    let mut image = vec![0u8; 512];
    image[..2].copy_from_slice(b"MZ");
    image[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    image[0x80..0x84].copy_from_slice(b"PE\0\0");
    image
}

#[test]
fn plain_text_message_is_clean() {
    let raw = crlf(&[
        "From: Alice <alice@example.com>",
        "To: Bob <bob@example.com>",
        "Subject: Lunch",
        "Message-ID: <lunch-1@example.com>",
        "Date: Mon, 30 Jun 2025 12:00:00 +0000",
        "",
        "hello",
    ]);
    let report = scan(raw.as_bytes());
    assert!(report.parsed);
    assert_eq!(report.verdict, Verdict::Clean);
    assert!(report.detections.is_empty(), "{:?}", report.detections);
    assert_eq!(report.parts.len(), 1);
    let part = &report.parts[0];
    assert_eq!(part.index, 0);
    assert_eq!(part.content_type, "text/plain");
    assert_eq!(part.name, None);
    assert!(!part.is_attachment);
    // mail-parser keeps the body's final line break.
    assert_eq!(part.size, 7);
    assert_eq!(part.sha256.len(), 64);
    assert_eq!(part.md5.len(), 32);
}

#[test]
fn eicar_in_a_plain_body_is_found_in_the_part() {
    let raw = crlf(&["From: a@example.com", "Subject: test", "", EICAR_STR]);
    let report = scan(raw.as_bytes());
    assert_eq!(report.verdict, Verdict::Malicious);
    assert_eq!(kinds(&report), [("eicar_test_file", Some(0))]);
    assert_eq!(report.detections[0].verdict, Verdict::Malicious);
    assert_eq!(report.detections[0].description, "EICAR test string in part 0 (text/plain)");
}

#[test]
fn eicar_in_a_base64_attachment_is_found_in_the_part() {
    let raw = with_attachment("eicar.com", "application/octet-stream", EICAR);
    assert!(!contains_eicar(raw.as_bytes()), "the test must hide the string from a raw search");
    let report = scan(raw.as_bytes());
    assert_eq!(report.verdict, Verdict::Malicious);
    assert_eq!(report.parts.len(), 2);
    let attachment = &report.parts[1];
    assert_eq!(attachment.name.as_deref(), Some("eicar.com"));
    assert_eq!(attachment.size, 68);
    assert!(attachment.is_attachment);
    assert!(!report.parts[0].is_attachment);
    let eicar: Vec<_> = report.detections.iter().filter(|d| d.kind == "eicar_test_file").collect();
    assert_eq!(eicar.len(), 1);
    assert_eq!(eicar[0].part, Some(1));
    assert_eq!(eicar[0].verdict, Verdict::Malicious);
    assert_eq!(eicar[0].description, "EICAR test string in attachment \"eicar.com\"");
    // .com is also a risky extension.
    assert!(kinds(&report).contains(&("risky_extension", Some(1))));
}

#[test]
fn eicar_outside_any_part_is_reported_for_the_raw_message() {
    let raw = crlf(&["From: a@example.com", &format!("Subject: {EICAR_STR}"), "", "nothing here"]);
    let report = scan(raw.as_bytes());
    assert_eq!(kinds(&report), [("eicar_test_file", None)]);
    assert_eq!(report.verdict, Verdict::Malicious);
}

#[test]
fn eicar_in_two_parts_is_reported_once_per_part_and_not_for_raw() {
    let raw = crlf(&[
        "Content-Type: multipart/mixed; boundary=x",
        "",
        "--x",
        "",
        EICAR_STR,
        "--x",
        "Content-Type: application/octet-stream",
        "",
        EICAR_STR,
        "--x--",
    ]);
    let report = scan(raw.as_bytes());
    assert_eq!(kinds(&report), [("eicar_test_file", Some(0)), ("eicar_test_file", Some(1))]);
}

#[test]
fn executable_named_pdf_is_suspicious() {
    let raw = with_attachment("report.pdf", "application/pdf", &pe_image());
    let report = scan(raw.as_bytes());
    assert_eq!(report.verdict, Verdict::Suspicious);
    assert_eq!(kinds(&report), [("executable_content", Some(1))]);
    assert_eq!(report.detections[0].description, "Windows PE executable in attachment \"report.pdf\"");
    assert_eq!(report.parts[1].content_type, "application/pdf");
    assert_eq!(report.parts[1].size, 512);
}

#[test]
fn double_extension_is_a_risky_extension() {
    let raw = with_attachment("invoice.pdf.exe", "application/octet-stream", b"%PDF-1.7 not really");
    let report = scan(raw.as_bytes());
    assert_eq!(report.verdict, Verdict::Suspicious);
    assert_eq!(kinds(&report), [("risky_extension", Some(1))]);
    let description = &report.detections[0].description;
    assert!(description.contains("\".exe\""), "{description}");
    assert!(description.contains("double extension \".pdf.exe\""), "{description}");
}

#[test]
fn nested_multiparts_and_attached_messages_list_every_leaf() {
    let raw = crlf(&[
        "From: Alice <alice@example.com>",
        "To: Bob <bob@example.com>",
        "Subject: Nested",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"outer\"",
        "",
        "This is the preamble.",
        "--outer",
        "Content-Type: multipart/alternative; boundary=\"alt\"",
        "",
        "--alt",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "hello",
        "--alt",
        "Content-Type: text/html; charset=utf-8",
        "",
        "<p>hello</p>",
        "--alt--",
        "",
        "--outer",
        "Content-Type: message/rfc822",
        "Content-Disposition: attachment; filename=\"forwarded.eml\"",
        "",
        "From: Dave <dave@example.com>",
        "Subject: inner",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed; boundary=\"inner\"",
        "",
        "--inner",
        "Content-Type: text/plain",
        "",
        "inner body",
        "--inner",
        "Content-Type: application/octet-stream; name=\"data.bin\"",
        "Content-Disposition: attachment; filename=\"data.bin\"",
        "Content-Transfer-Encoding: base64",
        "",
        "aGVsbG8K",
        "--inner--",
        "",
        "--outer",
        "Content-Type: image/png",
        "Content-Disposition: inline",
        "Content-Transfer-Encoding: base64",
        "",
        "aGVsbG8=",
        "--outer--",
    ]);
    let report = scan(raw.as_bytes());
    assert!(report.parsed);
    assert_eq!(report.verdict, Verdict::Clean, "{:?}", report.detections);
    let summary: Vec<_> = report
        .parts
        .iter()
        .map(|p| (p.index, p.content_type.as_str(), p.name.as_deref(), p.size, p.is_attachment))
        .collect();
    assert_eq!(
        summary,
        [
            (0, "text/plain", None, 5, false),
            (1, "text/html", None, 12, false),
            (2, "text/plain", None, 10, true),
            (3, "application/octet-stream", Some("data.bin"), 6, true),
            (4, "image/png", None, 5, true),
        ]
    );
    assert_eq!(report.parts[0].sha256, SHA256_HELLO);
    assert_eq!(report.parts[3].sha256, SHA256_HELLO_NL);
    assert_eq!(report.parts[3].md5, MD5_HELLO_NL);
    assert_eq!(report.parts[4].sha256, SHA256_HELLO);
    // The attached message's headers are not the message's.
    assert_eq!(report.headers.from.as_deref(), Some("Alice <alice@example.com>"));
    assert_eq!(report.headers.subject.as_deref(), Some("Nested"));
}

#[test]
fn detections_inside_attached_messages_point_at_their_part() {
    let inner = crlf(&[
        "From: x@example.com",
        "Subject: inner",
        "Content-Type: multipart/mixed; boundary=in",
        "",
        "--in",
        "Content-Type: application/octet-stream",
        "Content-Disposition: attachment; filename=\"setup.EXE\"",
        "Content-Transfer-Encoding: base64",
        "",
        &base64(&pe_image()),
        "--in--",
    ]);
    let raw = crlf(&[
        "Subject: outer",
        "Content-Type: multipart/mixed; boundary=out",
        "",
        "--out",
        "",
        "see the forwarded message",
        "--out",
        "Content-Type: message/rfc822",
        "",
        &inner,
        "--out--",
    ]);
    let report = scan(raw.as_bytes());
    assert_eq!(report.parts.len(), 2);
    assert_eq!(report.parts[1].name.as_deref(), Some("setup.EXE"));
    assert_eq!(kinds(&report), [("executable_content", Some(1)), ("risky_extension", Some(1))]);
    assert_eq!(report.verdict, Verdict::Suspicious);
}

#[test]
fn base64_encoded_attached_message_is_parsed_and_scanned() {
    let inner = with_attachment("eicar.txt", "text/plain", EICAR);
    let raw = crlf(&[
        "From: a@example.com",
        "Subject: encoded forward",
        "Content-Type: multipart/mixed; boundary=out",
        "",
        "--out",
        "Content-Type: text/plain",
        "",
        "see attached",
        "--out",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        &base64(inner.as_bytes()),
        "--out",
        "Content-Type: text/plain",
        "",
        "trailer",
        "--out--",
    ]);
    let report = scan(raw.as_bytes());
    assert!(report.parsed, "{:?}", report.detections);
    let names: Vec<_> = report.parts.iter().map(|p| (p.content_type.as_str(), p.name.as_deref())).collect();
    assert_eq!(
        names,
        [("text/plain", None), ("text/plain", None), ("text/plain", Some("eicar.txt")), ("text/plain", None)]
    );
    assert_eq!(kinds(&report), [("eicar_test_file", Some(2))]);
    assert_eq!(report.verdict, Verdict::Malicious);
}

#[test]
fn header_summary() {
    let raw = crlf(&[
        "From: \"Doe, Jane\" <jane@example.com>",
        "To: Bob <bob@example.com>, carol@example.com",
        "To: Undisclosed: dan@example.com;",
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Berlin",
        "Message-ID: <abc.123@mail.example.com>",
        "Date: Tue, 1 Jul 2025 10:20:30 +0200",
        "",
        "body",
    ]);
    let headers = scan(raw.as_bytes()).headers;
    assert_eq!(headers.from.as_deref(), Some("\"Doe, Jane\" <jane@example.com>"));
    assert_eq!(headers.to.as_deref(), Some("Bob <bob@example.com>, carol@example.com, dan@example.com"));
    assert_eq!(headers.subject.as_deref(), Some("Grüße aus Berlin"));
    assert_eq!(headers.message_id.as_deref(), Some("abc.123@mail.example.com"));
    assert_eq!(headers.date.as_deref(), Some("2025-07-01T10:20:30+02:00"));

    let raw = crlf(&["Subject: no date", "Date: sometime next week", "", "body"]);
    let headers = scan(raw.as_bytes()).headers;
    assert_eq!(headers.date.as_deref(), Some("sometime next week"));
    assert_eq!((headers.from, headers.to, headers.message_id), (None, None, None));
}

#[test]
fn nul_characters_never_reach_the_report() {
    let raw = crlf(&[
        "Subject: =?utf-8?q?a=00b?=",
        "Content-Type: multipart/mixed; boundary=x",
        "",
        "--x",
        "Content-Type: application/octet-stream; name=\"=?utf-8?q?evil=00.exe?=\"",
        "",
        "data",
        "--x--",
    ]);
    let report = scan(raw.as_bytes());
    let json = serde_json::to_string(&report).expect("serialises");
    assert!(!json.contains("\\u0000"), "{json}");
    assert_eq!(report.headers.subject.as_deref(), Some("a\u{fffd}b"));
}

#[test]
fn garbage_never_panics() {
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n".to_vec(),
        b"\r\n\r\n".to_vec(),
        b":".to_vec(),
        b"Subject: only headers\r\nFrom: a@b\r\n".to_vec(),
        b"Subject: only headers\r\n\r\n".to_vec(),
        vec![b'A'; 1 << 20],
        vec![0xff; 4096],
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n--\r\n".to_vec(),
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a"
            .to_vec(),
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n====--==".to_vec(),
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r\n=".to_vec(),
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n--d\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec(),
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!".to_vec(),
        b"Content-Type: \r\nContent-Disposition: attachment; filename=\r\n\r\nMZ".to_vec(),
        EICAR.to_vec(),
        pe_image(),
    ];
    for seed in 1..40u64 {
        inputs.push(noise(seed as usize * 97, seed));
    }
    // Random bytes sprinkled with MIME syntax.
    let tokens: [&[u8]; 10] = [
        b"\r\n",
        b"--b\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename=x.exe\r\n",
        b"\r\n\r\n",
        b"=?utf-8?b?",
        b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQ",
    ];
    for seed in 1..200u64 {
        let picks = noise(64, seed);
        let mut input = Vec::new();
        for pick in picks {
            input.extend_from_slice(tokens[usize::from(pick) % tokens.len()]);
            if pick % 7 == 0 {
                input.extend_from_slice(&noise(usize::from(pick), seed ^ u64::from(pick)));
            }
        }
        inputs.push(input);
    }
    for input in &inputs {
        let report = scan(input);
        assert_eq!(report.verdict, report.detections.iter().map(|d| d.verdict).max().unwrap_or(Verdict::Clean));
        for (i, part) in report.parts.iter().enumerate() {
            assert_eq!(part.index, i);
        }
        for detection in &report.detections {
            assert!(detection.part.is_none_or(|p| p < report.parts.len()));
        }
        serde_json::to_string(&report).expect("serialises");
    }
    let empty = scan(b"");
    assert!(!empty.parsed);
    assert_eq!(empty.verdict, Verdict::Clean);
    assert!(empty.parts.is_empty());
    let headers_only = scan(b"Subject: only headers\r\n\r\n");
    assert!(headers_only.parsed);
    assert_eq!(headers_only.headers.subject.as_deref(), Some("only headers"));
    assert_eq!((headers_only.parts[0].sha256.as_str(), headers_only.parts[0].md5.as_str()), (SHA256_EMPTY, MD5_EMPTY));
}

#[test]
fn raw_executable_is_reported() {
    // mail-parser reads the image as one long header name, so no part holds it.
    let report = scan(&pe_image());
    assert_eq!(kinds(&report), [("executable_content", None)]);
    assert_eq!(report.detections[0].description, "Windows PE executable at the start of the raw message");
}

#[test]
fn twenty_megabyte_attachment_scans_fine() {
    let mut content = noise(20 << 20, 7);
    content[..2].copy_from_slice(b"\x7fE");
    content[2..4].copy_from_slice(b"LF");
    let at = content.len() - 1000;
    content[at..at + EICAR.len()].copy_from_slice(EICAR);
    let raw = with_attachment("big.bin", "application/octet-stream", &content);
    let started = Instant::now();
    let report = scan(raw.as_bytes());
    let elapsed = started.elapsed();
    assert_eq!(report.parts[1].size, 20 << 20);
    assert_eq!(kinds(&report), [("eicar_test_file", Some(1)), ("executable_content", Some(1))]);
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
}

#[test]
fn large_plain_message_with_many_parts_scans_fine() {
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=p\r\n\r\n");
    for i in 0..9_000 {
        raw.push_str(&format!("--p\r\nContent-Type: text/plain; name=\"f{i}.txt\"\r\n\r\npart {i}\r\n"));
    }
    raw.push_str("--p--\r\n");
    let report = scan(raw.as_bytes());
    assert_eq!(report.parts.len(), 9_000);
    assert_eq!(report.parts[8_999].name.as_deref(), Some("f8999.txt"));
    assert_eq!(report.parts[8_999].size, 9);
    assert_eq!(report.verdict, Verdict::Clean);
}

/// `depth` message/rfc822 parts nested inside each other, the innermost holding `body`.
fn nested_messages(depth: usize, body: &str) -> String {
    let mut raw = String::new();
    for _ in 0..depth {
        raw.push_str("Subject: x\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    raw.push_str("Subject: innermost\r\n\r\n");
    raw.push_str(body);
    raw
}

#[test]
fn deeply_nested_plain_messages_do_not_overflow_the_stack() {
    let raw = nested_messages(20_000, EICAR_STR);
    let report = scan(raw.as_bytes());
    assert!(report.parsed);
    assert_eq!(report.parts.len(), 1);
    assert_eq!(kinds(&report), [("eicar_test_file", Some(0))]);
}

#[test]
fn deeply_nested_encoded_messages_are_refused_not_parsed() {
    // mail-parser would overflow the stack (and copy the content once per level) on these.
    let bomb = base64(nested_messages(5_000, "boom").as_bytes());
    let alone = crlf(&[
        "From: a@example.com",
        "Subject: bomb",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        &bomb,
    ]);
    let behind_a_decoy = crlf(&[
        "Subject: bomb behind a decoy",
        "Content-Type: multipart/mixed; boundary=b",
        "",
        "--b",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        &base64(b"Subject: decoy\r\n\r\nhi\r\n"),
        "--b",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        &bomb,
        "--b--",
    ]);
    let encoded_twice = crlf(&[
        "Subject: bomb inside an encoded message",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        &base64(
            crlf(&["Subject: middle", "Content-Type: message/rfc822", "Content-Transfer-Encoding: base64", "", &bomb])
                .as_bytes(),
        ),
    ]);
    let quoted_printable = crlf(&[
        "Subject: qp bomb",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        &nested_messages(5_000, "boom").replace("Subject", "=53ubject"),
    ]);
    for raw in [alone, behind_a_decoy, encoded_twice, quoted_printable] {
        let started = Instant::now();
        let report = scan(raw.as_bytes());
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(!report.parsed);
        assert_eq!(kinds(&report), [("mime_structure_too_complex", None)]);
        assert_eq!(report.verdict, Verdict::Suspicious);
        assert!(report.headers.subject.as_deref().is_some_and(|s| s.contains("bomb")));
    }
}

#[test]
fn verdict_names_and_order() {
    for verdict in [Verdict::Clean, Verdict::Spam, Verdict::Suspicious, Verdict::Malicious] {
        assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
        assert_eq!(serde_json::to_string(&verdict).expect("serialises"), format!("\"{}\"", verdict.as_str()));
        assert_eq!(verdict.to_string(), verdict.as_str());
    }
    assert_eq!(Verdict::parse("MALICIOUS"), Some(Verdict::Malicious));
    assert_eq!(Verdict::parse("bad"), None);
    assert_eq!(Verdict::parse(""), None);
    assert!(Verdict::Clean < Verdict::Spam && Verdict::Spam < Verdict::Suspicious);
    assert!(Verdict::Suspicious < Verdict::Malicious);
}

#[test]
fn report_round_trips_through_json() {
    let report = scan(with_attachment("eicar.com", "application/octet-stream", EICAR).as_bytes());
    let json = serde_json::to_value(&report).expect("serialises");
    assert_eq!(json["verdict"], "malicious");
    assert_eq!(json["detections"][0]["verdict"], "malicious");
    assert_eq!(serde_json::from_value::<ScanReport>(json).expect("deserialises"), report);
}

#[test]
fn eicar_search_finds_every_position_and_only_the_real_string() {
    assert!(contains_eicar(EICAR));
    assert!(!contains_eicar(&EICAR[..67]));
    assert!(!contains_eicar(b""));
    let filler = noise(300, 3);
    for at in [0, 1, 67, 68, 150, 232] {
        let mut hay = filler.clone();
        hay.splice(at..at, EICAR.iter().copied());
        assert!(contains_eicar(&hay), "at {at}");
    }
    let mut almost = EICAR.to_vec();
    almost[30] ^= 1;
    assert!(!contains_eicar(&almost));
    // Overlapping near-misses: the true string right after a truncated copy.
    let mut tricky = EICAR[..60].to_vec();
    tricky.extend_from_slice(EICAR);
    assert!(contains_eicar(&tricky));
    // Against a naive search on noise made of the string's own bytes.
    for seed in 1..50u64 {
        let hay: Vec<u8> = noise(2000, seed).into_iter().map(|b| EICAR[usize::from(b) % 4 * 17]).collect();
        assert_eq!(contains_eicar(&hay), hay.windows(68).any(|w| w == EICAR));
    }
}

#[test]
fn executable_magic() {
    assert_eq!(executable_kind(&pe_image()), Some("Windows PE executable"));
    let mut mz = vec![0u8; 64];
    mz[..2].copy_from_slice(b"MZ");
    assert_eq!(executable_kind(&mz), Some("DOS/Windows MZ executable"));
    mz[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(executable_kind(&mz), Some("DOS/Windows MZ executable"));
    assert_eq!(executable_kind(b"MZ is a state abbreviation"), None);
    assert_eq!(executable_kind(b"\x7fELF\x02\x01\x01"), Some("ELF executable"));
    for magic in
        [[0xfe, 0xed, 0xfa, 0xce], [0xfe, 0xed, 0xfa, 0xcf], [0xce, 0xfa, 0xed, 0xfe], [0xcf, 0xfa, 0xed, 0xfe]]
    {
        assert_eq!(executable_kind(&magic), Some("Mach-O executable"));
    }
    assert_eq!(executable_kind(&[0xca, 0xfe, 0xba, 0xbe, 0, 0]), Some("Mach-O universal or Java class"));
    assert_eq!(executable_kind(b"#!/bin/sh\nrm -rf /"), Some("script with a #! interpreter line"));
    assert_eq!(executable_kind(b"# not a script"), None);
    assert_eq!(executable_kind(b""), None);
    assert_eq!(executable_kind(b"M"), None);
    assert_eq!(executable_kind(b"\x7fEL"), None);
}

#[test]
fn risky_extensions() {
    let risky = |name: &str| risky_extension(name).map(|r| (r.extension, r.decoy));
    assert_eq!(risky("invoice.pdf.exe"), Some(("exe".to_owned(), Some("pdf".to_owned()))));
    assert_eq!(risky("SETUP.EXE"), Some(("exe".to_owned(), None)));
    assert_eq!(risky("macro.Docm"), Some(("docm".to_owned(), None)));
    assert_eq!(risky("evil.exe."), Some(("exe".to_owned(), None)));
    assert_eq!(risky("evil.scr \u{200b}"), Some(("scr".to_owned(), None)));
    assert_eq!(risky("C:\\Users\\x\\run.bat"), Some(("bat".to_owned(), None)));
    assert_eq!(risky("photo\u{202e}gpj.js"), Some(("js".to_owned(), None)));
    assert_eq!(risky(".lnk"), Some(("lnk".to_owned(), None)));
    for ext in ["exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta", "ps1"] {
        assert!(risky(&format!("a.{ext}")).is_some(), "{ext}");
    }
    for ext in ["msi", "jar", "lnk", "iso", "img", "dll", "cpl", "reg", "docm", "xlsm", "pptm"] {
        assert!(risky(&format!("a.{ext}")).is_some(), "{ext}");
    }
    for name in ["report.pdf", "archive.exe.zip", "exe", "notes.txt", "json.json", "", "."] {
        assert_eq!(risky(name), None, "{name}");
    }
}

#[test]
fn parts_and_detections_beyond_the_caps_are_scanned_but_not_listed() {
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=p\r\n\r\n");
    for i in 0..MAX_LISTED_PARTS + 5 {
        raw.push_str(&format!("--p\r\nContent-Type: application/octet-stream; name=\"f{i}.exe\"\r\n\r\nx\r\n"));
    }
    raw.push_str(&format!("--p\r\n\r\n{EICAR_STR}\r\n--p--\r\n"));
    let report = scan(raw.as_bytes());
    assert_eq!(report.parts.len(), MAX_LISTED_PARTS);
    // The cap keeps every detection that makes the verdict worse: the EICAR one comes last.
    assert_eq!(report.verdict, Verdict::Malicious);
    let n = report.detections.len();
    assert_eq!(n, MAX_LISTED_DETECTIONS + 3);
    let tail: Vec<_> = report.detections[n - 3..].iter().map(|d| (d.kind.as_str(), d.part, d.verdict)).collect();
    assert_eq!(
        tail,
        [
            ("eicar_test_file", None, Verdict::Malicious),
            ("mime_structure_too_complex", None, Verdict::Suspicious),
            ("mime_structure_too_complex", None, Verdict::Suspicious),
        ]
    );
    let last_part = MAX_LISTED_PARTS + 5;
    assert_eq!(
        report.detections[n - 3].description,
        format!("EICAR test string in part {last_part} (text/plain, not listed)")
    );
    assert_eq!(
        report.detections[n - 2].description,
        format!("{} MIME parts; only the first {MAX_LISTED_PARTS} are listed", last_part + 1)
    );
    assert_eq!(
        report.detections[n - 1].description,
        format!("{} further detections not listed", last_part - MAX_LISTED_DETECTIONS)
    );
}

#[test]
fn executable_disguised_as_converted_text_is_found_in_its_transferred_bytes() {
    for content_type in ["text/plain; charset=utf-16", "text/plain", "text/html; charset=iso-8859-1"] {
        let raw = with_attachment("notes.txt", content_type, &pe_image());
        let report = scan(raw.as_bytes());
        assert_eq!(kinds(&report), [("executable_content", Some(1))], "{content_type}");
        assert_eq!(report.detections[0].description, "Windows PE executable in attachment \"notes.txt\"");
    }
    // Plain UTF-8 text is not decoded twice, and stays clean.
    let raw = with_attachment("notes.txt", "text/plain; charset=utf-8", "Grüße".as_bytes());
    let report = scan(raw.as_bytes());
    assert_eq!(report.verdict, Verdict::Clean);
    assert_eq!(report.parts[1].size, 7);
}

#[test]
fn converted_text_inside_attached_messages_is_read_from_the_right_buffer() {
    let inner = with_attachment("notes.txt", "text/plain; charset=utf-16", &pe_image());
    let plain = crlf(&[
        "Subject: outer",
        "Content-Type: multipart/mixed; boundary=out",
        "",
        "--out",
        "",
        "forwarded",
        "--out",
        "Content-Type: message/rfc822",
        "",
        &inner,
        "--out--",
    ]);
    let encoded = crlf(&[
        "Subject: outer",
        "Content-Type: multipart/mixed; boundary=out",
        "",
        "--out",
        "",
        "forwarded",
        "--out",
        "Content-Type: message/rfc822",
        "Content-Transfer-Encoding: base64",
        "",
        &base64(inner.as_bytes()),
        "--out--",
    ]);
    for raw in [plain, encoded] {
        let report = scan(raw.as_bytes());
        assert!(report.parsed);
        assert_eq!(report.parts.len(), 3);
        assert_eq!(kinds(&report), [("executable_content", Some(2))]);
        assert_eq!(report.detections[0].description, "Windows PE executable in attachment \"notes.txt\"");
    }
}

#[test]
fn a_message_of_countless_tiny_parts_is_scanned_raw() {
    let mut raw = String::from("Subject: many\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
    for _ in 0..60_000 {
        raw.push_str("--b\r\n\r\nx\r\n");
    }
    raw.push_str("--b--\r\n");
    let report = scan(raw.as_bytes());
    assert!(!report.parsed);
    assert_eq!(report.verdict, Verdict::Suspicious);
    assert!(report.detections.iter().any(|d| d.kind == "mime_structure_too_complex"));
    assert_eq!(report.headers.subject.as_deref(), Some("many"));
}
