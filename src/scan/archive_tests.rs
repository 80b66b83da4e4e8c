//! Tests for archive expansion, on archives written here with the `zip` and `flate2` writers
//! (the integration tests send archives Python's own modules wrote).
use std::io::Write;

use super::archive::{Bound, Expander, LIMITS, Limits};
use super::tests::{EICAR_STR, noise, pe_image, with_attachment};
use super::*;

fn zipped(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        out.start_file(*name, options).unwrap();
        out.write_all(data).unwrap();
    }
    out.finish().unwrap().into_inner()
}

fn gzipped(name: &str, data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::GzBuilder::new().filename(name).write(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// What expanding `content` under `limits` hands out: member paths, and the bounds hit.
fn expand(content: &[u8], limits: Limits) -> (Vec<String>, Vec<Bound>) {
    let (mut members, mut bounds) = (Vec::new(), Vec::new());
    Expander::new(limits).expand(content, &mut |path, _| members.push(path.join("/")), &mut |b| bounds.push(b));
    (members, bounds)
}

fn detections_of(report: &ScanReport) -> Vec<(&str, Option<usize>, String)> {
    report.detections.iter().map(|d| (d.kind.as_str(), d.part, d.archive_path.join(" > "))).collect()
}

#[test]
fn eicar_in_a_deflated_zip_is_found_and_named() {
    let zip = zipped(&[("readme.txt", b"hello"), ("eicar.com", EICAR_STR.as_bytes())]);
    let report = scan(with_attachment("invoice.zip", "application/zip", &zip).as_bytes());
    assert_eq!(report.verdict, Verdict::Malicious);
    assert!(detections_of(&report).contains(&("eicar_test_file", Some(1), "eicar.com".to_owned())), "{report:#?}");
    let eicar = report.detections.iter().find(|d| d.kind == "eicar_test_file").unwrap();
    assert_eq!(eicar.description, "EICAR test string in member \"eicar.com\" of attachment \"invoice.zip\"");
}

#[test]
fn archives_inside_archives_are_opened_with_their_path() {
    let inner = zipped(&[("docs/eicar.txt", EICAR_STR.as_bytes())]);
    let outer = zipped(&[("inner.zip", &inner)]);
    let gz = gzipped("outer.zip", &outer);
    let report = scan(with_attachment("mail.gz", "application/gzip", &gz).as_bytes());
    assert_eq!(report.verdict, Verdict::Malicious);
    let eicar: Vec<_> = report.detections.iter().filter(|d| d.kind == "eicar_test_file").collect();
    assert_eq!(eicar.len(), 1, "{report:#?}");
    assert_eq!(eicar[0].archive_path, ["outer.zip", "inner.zip", "docs/eicar.txt"]);
    assert_eq!(eicar[0].part, Some(1));
}

#[test]
fn gzip_without_a_file_name_is_still_opened() {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(EICAR_STR.as_bytes()).unwrap();
    let gz = encoder.finish().unwrap();
    let (members, bounds) = expand(&gz, LIMITS);
    assert_eq!(members, ["(gzip content)"]);
    assert!(bounds.is_empty());
    let report = scan(with_attachment("x.bin", "application/octet-stream", &gz).as_bytes());
    assert_eq!(report.verdict, Verdict::Malicious);
}

#[test]
fn executables_and_risky_names_inside_a_zip_are_found() {
    let zip = zipped(&[("holiday.jpg.exe", &pe_image())]);
    let report = scan(with_attachment("photos.zip", "application/zip", &zip).as_bytes());
    assert_eq!(report.verdict, Verdict::Suspicious);
    let found = detections_of(&report);
    assert!(found.contains(&("executable_content", Some(1), "holiday.jpg.exe".to_owned())), "{found:?}");
    assert!(found.contains(&("risky_extension", Some(1), "holiday.jpg.exe".to_owned())), "{found:?}");
}

#[test]
fn an_ordinary_zip_is_clean() {
    let zip = zipped(&[("notes.txt", "nothing to see here\n".repeat(100).as_bytes()), ("dir/data.csv", b"a,b\n1,2\n")]);
    let report = scan(with_attachment("notes.zip", "application/zip", &zip).as_bytes());
    assert_eq!(report.verdict, Verdict::Clean, "{report:#?}");
    assert_eq!(expand(&zip, LIMITS).0, ["notes.txt", "dir/data.csv"]);
}

#[test]
fn a_zip_bomb_is_flagged_and_only_its_bounded_prefix_read() {
    let limits = Limits { member_bytes: 1 << 20, ..LIMITS };
    let zip = zipped(&[("zeros.bin", &vec![0u8; 8 << 20])]);
    assert!(zip.len() < 64 << 10);
    let (members, bounds) = expand(&zip, limits);
    assert_eq!(members, ["zeros.bin"]);
    assert_eq!(bounds.len(), 1, "{bounds:?}");
    assert_eq!(bounds[0].kind, KIND_ARCHIVE_BOMB);
    assert_eq!(bounds[0].path, ["zeros.bin"]);
    assert!(bounds[0].description.contains("inflates past 1 MiB"), "{}", bounds[0].description);

    // At the real limits, through the whole scan.
    let zip = zipped(&[("zeros.bin", &vec![0u8; 24 << 20])]);
    let report = scan(with_attachment("backup.zip", "application/zip", &zip).as_bytes());
    assert_eq!(report.verdict, Verdict::Suspicious);
    assert_eq!(detections_of(&report), [("archive_bomb", Some(1), "zeros.bin".to_owned())]);
}

#[test]
fn a_large_member_at_an_ordinary_ratio_is_too_complex_not_a_bomb() {
    let limits = Limits { member_bytes: 64 << 10, ..LIMITS };
    let zip = zipped(&[("random.bin", &noise(100 << 10, 7))]);
    let (_, bounds) = expand(&zip, limits);
    assert_eq!(bounds.len(), 1);
    assert_eq!(bounds[0].kind, KIND_ARCHIVE_TOO_COMPLEX);
    assert!(bounds[0].description.contains("only its first 65536 bytes were scanned"), "{}", bounds[0].description);
}

#[test]
fn the_total_budget_holds_across_members_and_is_reported_once() {
    let limits = Limits { total_bytes: 100 << 10, ..LIMITS };
    let zip = zipped(&[("a", &noise(60 << 10, 1)), ("b", &noise(60 << 10, 2)), ("c", &noise(60 << 10, 3))]);
    let (members, bounds) = expand(&zip, limits);
    assert_eq!(members, ["a", "b", "c"]);
    assert_eq!(bounds.len(), 1, "{bounds:?}");
    assert_eq!(bounds[0].kind, KIND_ARCHIVE_TOO_COMPLEX);
    assert!(bounds[0].description.contains("in all"), "{}", bounds[0].description);
}

#[test]
fn the_member_count_is_bounded() {
    let limits = Limits { members: 5, ..LIMITS };
    let names: Vec<String> = (0..10).map(|i| format!("f{i}.txt")).collect();
    let members: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), b"x" as &[u8])).collect();
    let (seen, bounds) = expand(&zipped(&members), limits);
    assert_eq!(seen.len(), 5);
    assert_eq!(bounds.len(), 1);
    assert!(bounds[0].description.contains("more than 5 archive members"), "{}", bounds[0].description);
}

#[test]
fn nesting_is_bounded() {
    let mut archive = zipped(&[("eicar.com", EICAR_STR.as_bytes())]);
    for level in 0..6 {
        archive = zipped(&[(&format!("level{level}.zip"), &archive)]);
    }
    let (members, bounds) = expand(&archive, LIMITS);
    assert_eq!(members.len(), LIMITS.depth);
    assert_eq!(bounds.len(), 1);
    assert_eq!(bounds[0].kind, KIND_ARCHIVE_TOO_COMPLEX);
    assert_eq!(bounds[0].path.len(), LIMITS.depth);
    assert!(bounds[0].description.contains("nested more than 4 deep"), "{}", bounds[0].description);
}

#[test]
fn an_encrypted_member_is_reported_not_skipped() {
    let mut zip = zipped(&[("secret.doc", b"0123456789")]);
    // Set the encryption bit (general purpose flag, bit 0) in the local and the central header,
    // as an encrypting archiver writes it.
    let local = zip.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    zip[local + 6] |= 1;
    let central = zip.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    zip[central + 8] |= 1;
    let report = scan(with_attachment("protected.zip", "application/zip", &zip).as_bytes());
    assert_eq!(detections_of(&report), [("encrypted_archive", Some(1), "secret.doc".to_owned())]);
    assert_eq!(report.verdict, Verdict::Suspicious);
}

#[test]
fn something_that_only_starts_like_an_archive_is_said_so() {
    let mut fake = b"PK\x03\x04".to_vec();
    fake.extend(noise(2000, 9));
    let (members, bounds) = expand(&fake, LIMITS);
    assert!(members.is_empty());
    assert_eq!(bounds.len(), 1);
    assert!(bounds[0].description.contains("could not be read"), "{}", bounds[0].description);
    let mut fake = vec![0x1f, 0x8b];
    fake.extend(noise(2000, 9));
    let (_, bounds) = expand(&fake, LIMITS);
    assert_eq!(bounds.len(), 1, "{bounds:?}");
}

#[test]
fn garbage_archives_never_panic() {
    let zip = zipped(&[("a.txt", &noise(5000, 3)), ("b.zip", &zipped(&[("c", b"ccc")]))]);
    for seed in 0..300u64 {
        let mut damaged = zip.clone();
        for (i, byte) in noise(8, seed).into_iter().enumerate() {
            let at = (seed as usize * 31 + i * 97) % damaged.len();
            damaged[at] ^= byte | 1;
        }
        let _ = expand(&damaged, LIMITS);
    }
}
