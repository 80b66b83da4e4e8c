//! The import rule of ARCHITECTURE.md, checked against the source: a module may only name the
//! modules its row of the table lists.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `module -> modules it may import`, from the table in ARCHITECTURE.md.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md is readable");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',').map(|n| n.trim().trim_matches('`').to_owned()).filter(|n| !n.is_empty() && n != "—").collect()
    };
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | `module` | may import | what |
            (cells.len() >= 4 && cells[1].starts_with('`'))
                .then(|| (cells[1].trim_matches('`').to_owned(), names(cells[2])))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<name>` a file mentions outside comments.
fn crate_paths(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        for (i, _) in line.match_indices("crate::") {
            let preceded = line[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
            let name: String = line[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !preceded && !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_what_architecture_md_forbids() {
    let allowed = allowed();
    assert!(allowed.contains_key("policy") && allowed.contains_key("sensor"), "the table was not found: {allowed:?}");
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let module =
            relative.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(may) = allowed.get(&module) else {
            broken.push(format!("src/{module} has no row in ARCHITECTURE.md's table"));
            continue;
        };
        let source = std::fs::read_to_string(&file).unwrap();
        for used in crate_paths(&source) {
            if used != module && !may.contains(&used) {
                broken.push(format!("src/{} imports crate::{used}, which `{module}` may not", relative.display()));
            }
        }
    }
    assert!(broken.is_empty(), "forbidden imports (see ARCHITECTURE.md):\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_imports_and_ignores_comments() {
    let found = crate_paths("use crate::api::x;\n// crate::store in a comment\nlet a = crate::wire::Y; my_crate::z();");
    assert_eq!(found, BTreeSet::from(["api".to_owned(), "wire".to_owned()]));
}
