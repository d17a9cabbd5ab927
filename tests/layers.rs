//! The layers of `docs/architecture.md`, held by a test: every `crate::<module>`
//! path in the library's non-test code must point to its own layer or one
//! below it. A later change that adds an upward import (and so a cycle)
//! fails here, naming the file, the line and the path.

use std::fs;
use std::path::{Path, PathBuf};

/// The first-level modules of `src/`, lowest first. A module may import its
/// own layer and any layer of a lower rank; two modules of the same rank may
/// not import each other.
const LAYERS: &[(&str, u8)] = &[
    ("domain", 0),
    ("telemetry", 1),
    ("index", 2),
    ("strategy", 3),
    ("decision", 4),
    ("ingest", 5),
    ("demo", 5),
    ("serve", 6),
    ("app", 7),
];

fn rank(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The part of a file that ships: everything before its test module, an
/// unindented `#[cfg(test)]` followed by `mod ...` (test modules come last,
/// or live in sibling `tests.rs` files). A `#[cfg(test)]` on an item inside
/// the file does not end it.
fn shipped_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0] == "#[cfg(test)]" && w[1].starts_with("mod "))
        .unwrap_or(lines.len());
    lines
        .into_iter()
        .take(end)
        .enumerate()
        .map(|(n, l)| (n + 1, l))
}

/// The first-level modules a line names through `crate::`, including those
/// in a grouped import such as `use crate::{index::UserIndex, domain::ids}`.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = after;
    }
    found
}

/// A file's own first-level module: `src/index/profile/mod.rs` -> `index`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn library_imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 20,
        "found only {} files under src/",
        files.len()
    );

    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let Some(own) = module_of(&src, file) else {
            continue;
        };
        if own == "lib" || own == "main" {
            continue;
        }
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let Some(own_rank) = rank(&own) else {
            violations.push(format!(
                "{}: module `{own}` is in no layer (add it to LAYERS and docs/architecture.md)",
                file.display()
            ));
            continue;
        };
        let text = fs::read_to_string(file).expect("source file is readable");
        for (line_no, line) in shipped_lines(&text) {
            for target in crate_paths(line) {
                checked += 1;
                if target == own {
                    continue;
                }
                match rank(&target) {
                    Some(r) if r < own_rank => {}
                    Some(_) => violations.push(format!(
                        "{}:{line_no}: `{own}` imports `crate::{target}`, which is not below it",
                        file.display()
                    )),
                    // a crate-root item such as a macro, or a private module: not a layer
                    None => {}
                }
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate paths found: is the parser broken?"
    );
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_path_parser_sees_grouped_and_nested_imports() {
    assert_eq!(crate_paths("use crate::index::UserIndex;"), ["index"]);
    assert_eq!(
        crate_paths("use crate::{domain::ids::DeviceKey, strategy::Os};"),
        ["domain", "strategy"]
    );
    assert_eq!(
        crate_paths("let x = crate::decision::Decision::default(); // crate::serve"),
        ["decision"]
    );
    assert!(crate_paths("// use crate::serve::admin;").is_empty());
}

#[test]
fn only_the_test_module_is_left_out() {
    let text = "use crate::index::A;\n    #[cfg(test)]\n    fn hook() {}\nuse crate::strategy::B;\n#[cfg(test)]\nmod tests;\nuse crate::serve::C;\n";
    let shipped: Vec<usize> = shipped_lines(text).map(|(n, _)| n).collect();
    assert_eq!(shipped, [1, 2, 3, 4]);
}

#[test]
fn the_checker_flags_an_upward_import() {
    // what the main test does for one line, on a line that breaks the rule
    let own = rank("index").expect("index is a layer");
    let upward: Vec<_> = crate_paths("use crate::decision::DecisionEngine;")
        .into_iter()
        .filter(|t| rank(t).is_some_and(|r| r >= own))
        .collect();
    assert_eq!(upward, ["decision"]);
}
