//! In-process YARA-X over a folder of files, for `bench/scan.sh`: the rules compiled once with the
//! project's own `scan::yara::compile` (the globals the scan queue declares included), one reused
//! scanner per thread, every file of the folder read from disk inside the timed loop (as the
//! `yara` command line reads them). A benchmark, not a test.
//!
//! Usage: `yara_scan RULES.yar CORPUS_DIR [--mode raw|objects|builtin] [--threads N]
//! [--matches FILE] [--clk-tck HZ]`
//!
//! Modes:
//! - `raw` (default): each file scanned whole, as one object: what `yara RULES DIR` does;
//! - `objects`: what the scan queue does with a message, `scan::scan_with_yara`: MIME parsed,
//!   parts decoded, archives expanded, the built-in checks, and the rules over the raw message,
//!   every part and every archive member;
//! - `builtin`: `scan::scan`, the same without YARA (what `objects` costs apart from the rules).
//!
//! Prints one line of `key=value` pairs on standard output: files, bytes, matching files, rule
//! matches, and wall / CPU seconds (CPU = utime + stime of the whole process from
//! /proc/self/stat) for the compile and for the scan. `--matches FILE` writes one
//! `RULE PATH` line per match, the `yara` command line's own output format.
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use mailsensor::scan::yara::{self, Envelope, Object, RuleSource};
use mailsensor::scan::{self as pipeline, KIND_YARA_RULE, YaraRun};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Raw,
    Objects,
    Builtin,
}

/// utime + stime of this process (every thread), in seconds.
fn cpu_seconds(clk_tck: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("unexpected /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc/self/stat")?.parse::<u64>().context("bad tick count")? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / clk_tck)
}

struct Totals {
    files: usize,
    bytes: u64,
    matching_files: usize,
    matches: usize,
    failures: usize,
    lines: Vec<String>,
}

fn scan_files(rules: &yara::Rules, files: &[PathBuf], mode: Mode) -> anyhow::Result<Totals> {
    let mut scanner = rules.scanner();
    let envelope = Envelope::default();
    let mut totals = Totals { files: 0, bytes: 0, matching_files: 0, matches: 0, failures: 0, lines: Vec::new() };
    for path in files {
        let content = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        totals.files += 1;
        totals.bytes += content.len() as u64;
        if mode != Mode::Raw {
            let report = match mode {
                Mode::Objects => pipeline::scan_with_yara(&content, YaraRun::new(vec![&mut scanner], envelope.clone())),
                _ => pipeline::scan(&content),
            };
            let mut found = 0;
            for d in report.detections.iter().filter(|d| d.kind == KIND_YARA_RULE) {
                found += 1;
                totals.lines.push(format!("{} {}", d.rule.as_deref().unwrap_or("?"), path.display()));
            }
            totals.matching_files += usize::from(found > 0);
            totals.matches += found;
            continue;
        }
        let object = Object { content: &content, filename: "", content_type: "message/rfc822" };
        match scanner.scan(&object, &envelope) {
            Ok(found) => {
                if !found.is_empty() {
                    totals.matching_files += 1;
                }
                totals.matches += found.len();
                for m in found {
                    totals.lines.push(format!("{} {}", m.rule, path.display()));
                }
            }
            Err(e) => {
                eprintln!("yara_scan: {}: {e}", path.display());
                totals.failures += 1;
            }
        }
    }
    Ok(totals)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut threads = 1usize;
    let mut matches_file: Option<PathBuf> = None;
    let mut clk_tck = 100.0;
    let mut mode = Mode::Raw;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().context("--threads N")?.parse().context("--threads N")?,
            "--matches" => matches_file = Some(args.next().context("--matches FILE")?.into()),
            "--mode" => {
                mode = match args.next().as_deref() {
                    Some("raw") => Mode::Raw,
                    Some("objects") => Mode::Objects,
                    Some("builtin") => Mode::Builtin,
                    _ => bail!("--mode raw|objects|builtin"),
                }
            }
            "--clk-tck" => clk_tck = args.next().context("--clk-tck HZ")?.parse().context("--clk-tck HZ")?,
            "-h" | "--help" => {
                println!(
                    "usage: yara_scan RULES.yar CORPUS_DIR [--mode raw|objects|builtin] [--threads N] [--matches FILE] [--clk-tck HZ]"
                );
                return Ok(());
            }
            _ => positional.push(arg),
        }
    }
    let [rules_path, corpus] = positional.as_slice() else {
        bail!(
            "usage: yara_scan RULES.yar CORPUS_DIR [--mode raw|objects|builtin] [--threads N] [--matches FILE] [--clk-tck HZ]"
        );
    };
    if threads == 0 {
        bail!("--threads must be at least 1");
    }

    let text = std::fs::read_to_string(rules_path).with_context(|| format!("reading {rules_path}"))?;
    let (cpu0, wall0) = (cpu_seconds(clk_tck)?, Instant::now());
    let rules = match yara::compile(&[RuleSource::new("bench", rules_path.as_str(), text)]) {
        Ok(rules) => rules,
        Err(problems) => {
            for p in problems.iter().take(20) {
                eprintln!("yara_scan: {p} [{}]", p.code);
            }
            bail!("{} compile error(s) in {rules_path}", problems.len());
        }
    };
    let (compile_wall, compile_cpu) = (wall0.elapsed().as_secs_f64(), cpu_seconds(clk_tck)? - cpu0);
    for w in rules.warnings.iter().take(5) {
        eprintln!("yara_scan: warning: {w} [{}]", w.code);
    }

    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)
        .with_context(|| format!("reading {corpus}"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.is_file());
    files.sort();

    let (cpu0, wall0) = (cpu_seconds(clk_tck)?, Instant::now());
    let chunk = files.len().div_ceil(threads).max(1);
    let parts: Vec<Totals> = std::thread::scope(|s| {
        let handles: Vec<_> = files.chunks(chunk).map(|part| s.spawn(|| scan_files(&rules, part, mode))).collect();
        handles.into_iter().map(|h| h.join().expect("a scan thread panicked")).collect::<anyhow::Result<_>>()
    })?;
    let (scan_wall, scan_cpu) = (wall0.elapsed().as_secs_f64(), cpu_seconds(clk_tck)? - cpu0);

    let sum = |f: fn(&Totals) -> u64| parts.iter().map(f).sum::<u64>();
    if let Some(path) = matches_file {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for line in parts.iter().flat_map(|t| &t.lines) {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    println!(
        "engine=yara-x mode={} rules={} warnings={} threads={threads} files={} bytes={} matching_files={} matches={} \
         failures={} compile_wall_s={compile_wall:.3} compile_cpu_s={compile_cpu:.3} scan_wall_s={scan_wall:.3} \
         scan_cpu_s={scan_cpu:.3}",
        match mode {
            Mode::Raw => "raw",
            Mode::Objects => "objects",
            Mode::Builtin => "builtin",
        },
        rules.count(),
        rules.warnings.len(),
        sum(|t| t.files as u64),
        sum(|t| t.bytes),
        sum(|t| t.matching_files as u64),
        sum(|t| t.matches as u64),
        sum(|t| t.failures as u64),
    );
    Ok(())
}
