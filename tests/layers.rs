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

/// `text` without `//` comments (a `//` inside a string literal is kept).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_string = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_string = !in_string;
            }
            if !in_string && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first name of each item of a `{...}` group starting at `group[0]`
/// (nested groups and line breaks included), and where the group ends.
fn group_heads(group: &str) -> (Vec<String>, usize) {
    let mut heads = Vec::new();
    let (mut depth, mut item_start) = (0usize, 1usize);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' | ',' if depth == 1 => {
                let name = ident(&group[item_start..i]);
                if !name.is_empty() {
                    heads.push(name);
                }
                item_start = i + 1;
                if c == '}' {
                    return (heads, i + 1);
                }
            }
            '}' => depth -= 1,
            _ => {}
        }
    }
    (heads, group.len())
}

/// The first-level modules `code` names through `crate::`, including every
/// item of a grouped import such as `use crate::{index::UserIndex, domain::{ids, os}}`
/// written over several lines.
fn crate_paths(code: &str) -> Vec<String> {
    crate_paths_at(&without_comments(code))
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

/// [`crate_paths`] of comment-free `code`, each with its byte offset.
fn crate_paths_at(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::").map(|i| i + from) {
        let start = at + "crate::".len();
        let after = &code[start..];
        if after.starts_with('{') {
            let (heads, end) = group_heads(after);
            found.extend(heads.into_iter().map(|h| (at, h)));
            from = start + end;
        } else {
            let name = ident(after);
            if !name.is_empty() {
                found.push((at, name));
            }
            from = start;
        }
    }
    found
}

/// The first-level modules `super::` paths reach from a file whose module
/// path is `module` (`src/serve/mod.rs` is `[serve]`; `super::app` there is
/// `crate::app`). Paths that stay inside the file's own first-level module
/// are left out.
fn super_paths(code: &str, module: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("super::").map(|i| i + from) {
        let mut after = &code[at..];
        let mut ups = 0;
        while let Some(r) = after.strip_prefix("super::") {
            ups += 1;
            after = r;
        }
        if ups >= module.len() {
            let name = ident(after);
            if !name.is_empty() {
                found.push((at, name));
            }
        }
        from = code.len() - after.len();
    }
    found
}

/// A file's module path: `src/index/profile/mod.rs` -> `[index, profile]`,
/// `src/decision/feedback.rs` -> `[decision, feedback]`.
fn module_path(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_str()
                .map(|s| s.trim_end_matches(".rs").to_string())
        })
        .collect::<Option<_>>()?;
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    Some(parts)
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
        let Some(module) = module_path(&src, file) else {
            continue;
        };
        let Some(own) = module.first().cloned() else {
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
        let shipped: Vec<&str> = shipped_lines(&text).map(|(_, l)| l).collect();
        let code = without_comments(&shipped.join("\n"));
        let paths = crate_paths_at(&code)
            .into_iter()
            .chain(super_paths(&code, &module));
        for (at, target) in paths {
            checked += 1;
            if target == own {
                continue;
            }
            let line_no = code[..at].matches('\n').count() + 1;
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
fn grouped_imports_over_several_lines_and_nested_groups_are_read_whole() {
    let code = "use crate::{\n    decision::{Decision, DecisionEngine},\n    // crate::app\n    index::UserIndex,\n};\nlet s = \"// not a comment\"; crate::serve::x();\n";
    assert_eq!(crate_paths(code), ["decision", "index", "serve"]);
}

#[test]
fn super_paths_that_reach_the_crate_root_are_imports_of_a_layer() {
    let top = ["serve".to_string()];
    let nested = ["serve".to_string(), "tencent".to_string()];
    let code = "use super::app::config;\nuse super::super::decision::X;\n";
    let names = |m: &[String]| -> Vec<String> {
        super_paths(code, m).into_iter().map(|(_, n)| n).collect()
    };
    // from src/serve/mod.rs, `super::` is the crate root
    assert_eq!(names(&top), ["app", "decision"]);
    // from src/serve/tencent/mod.rs, only `super::super::` is
    assert_eq!(names(&nested), ["decision"]);
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
