//! The shape of `src/`: no module-level import circles, no file too long to read.
//!
//! Both checks read the source as text, the way a reader finds their way in:
//!
//! - a module is a file (`a/b.rs` and `a/b/mod.rs` are `a::b`); a module *uses* another when
//!   its text, above its first `#[cfg(test)]`, names `crate::other::…` or `super::other`
//!   (doc links count: they send the reader there). A module and its own ancestors or
//!   descendants are one story and never count as a circle;
//! - files that are test modules themselves (`#[cfg(test)] mod tests;`) are left out of both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines of code (not blank, not a comment, not under `#[cfg(test)]`) in one file.
const MAX_CODE_LINES: usize = 700;

struct Module {
    path: PathBuf,
    /// The text above the first `#[cfg(test)]`.
    code: String,
}

/// Every non-test module of `src/`, by its path (`controller::service`).
fn modules() -> BTreeMap<String, Module> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rs_files(&root, &mut files);
    let mut test_files = BTreeSet::new();
    let mut modules = BTreeMap::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let relative = path.strip_prefix(&root).unwrap().with_extension("");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        // `#[cfg(test)] mod name;` makes `name.rs` next to this module's file a test file.
        let dir = match path.file_name().and_then(|f| f.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => path.parent().unwrap().to_path_buf(),
            _ => path.with_extension(""),
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if pair[0] == "#[cfg(test)]" {
                if let Some(name) = pair[1]
                    .strip_prefix("mod ")
                    .and_then(|rest| rest.strip_suffix(';'))
                {
                    test_files.insert(dir.join(format!("{name}.rs")));
                    test_files.insert(dir.join(name).join("mod.rs"));
                }
            }
        }
        let code = match text.find("#[cfg(test)]") {
            Some(at) => text[..at].to_string(),
            None => text.clone(),
        };
        modules.insert(parts.join("::"), Module { path, code });
    }
    modules.retain(|_, m| !test_files.contains(&m.path));
    modules
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `a::b::c` paths written after `prefix` (`crate::` or `super::`) in `text`.
fn paths_after<'t>(text: &'t str, prefix: &str) -> Vec<Vec<&'t str>> {
    let is_word = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut path = Vec::new();
        let mut tail = rest;
        loop {
            let end = tail.find(|c: char| !is_word(c)).unwrap_or(tail.len());
            if end == 0 {
                break;
            }
            path.push(&tail[..end]);
            match tail[end..].strip_prefix("::") {
                Some(next) => tail = next,
                None => break,
            }
        }
        if !path.is_empty() {
            found.push(path);
        }
    }
    found
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// Module → the modules it uses, ancestors and descendants left out.
fn edges(modules: &BTreeMap<String, Module>) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, module) in modules {
        let uses = edges.entry(name.as_str()).or_default();
        for path in paths_after(&module.code, "crate::") {
            // The longest prefix of the path that is a module.
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find_map(|t| modules.get_key_value(&t).map(|(k, _)| k.as_str()));
            if let Some(target) = target.filter(|t| !related(name, t)) {
                uses.insert(target);
            }
        }
        let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
        for path in paths_after(&module.code, "super::") {
            let target = match parent {
                "" => path[0].to_string(),
                p => format!("{p}::{}", path[0]),
            };
            if let Some((target, _)) = modules.get_key_value(&target) {
                if !related(name, target) {
                    uses.insert(target.as_str());
                }
            }
        }
    }
    edges
}

/// Every module reachable from `from`.
fn reachable<'m>(edges: &BTreeMap<&'m str, BTreeSet<&'m str>>, from: &'m str) -> BTreeSet<&'m str> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from];
    while let Some(m) = todo.pop() {
        for &next in edges.get(m).into_iter().flatten() {
            if seen.insert(next) {
                todo.push(next);
            }
        }
    }
    seen
}

/// The circles: groups of two or more modules each of which reaches every other.
fn circles<'m>(edges: &BTreeMap<&'m str, BTreeSet<&'m str>>) -> Vec<BTreeSet<&'m str>> {
    let reach: BTreeMap<&str, BTreeSet<&str>> =
        edges.keys().map(|&m| (m, reachable(edges, m))).collect();
    let mut circles: Vec<BTreeSet<&str>> = Vec::new();
    for (&m, from_m) in &reach {
        if circles.iter().any(|c| c.contains(m)) {
            continue;
        }
        let circle: BTreeSet<&str> = from_m
            .iter()
            .copied()
            .filter(|&other| other == m || reach[other].contains(m))
            .collect();
        if circle.len() > 1 {
            circles.push(circle);
        }
    }
    circles
}

#[test]
fn src_has_no_import_circles() {
    let modules = modules();
    assert!(
        modules.contains_key("config") && modules.contains_key("controller::service"),
        "src/ was not read: {:?}",
        modules.keys().collect::<Vec<_>>()
    );
    let edges = edges(&modules);
    let mut report = String::new();
    for circle in circles(&edges) {
        report.push_str(&format!(
            "\ncircle {:?}:\n",
            circle.iter().collect::<Vec<_>>()
        ));
        for m in &circle {
            let inside: Vec<&&str> = edges[m].iter().filter(|t| circle.contains(*t)).collect();
            report.push_str(&format!("  {m} uses {inside:?}\n"));
        }
    }
    assert!(
        report.is_empty(),
        "import circles in src/ (move the shared item down to a module both can use):{report}"
    );
}

#[test]
fn the_circle_check_finds_a_circle_and_ignores_parents() {
    let module = |code: &str| Module {
        path: PathBuf::new(),
        code: code.to_string(),
    };
    let modules: BTreeMap<String, Module> = [
        ("a", "use crate::b::Thing;"),
        ("b", "/// See [`crate::a::f`].\npub struct Thing;"),
        (
            "b::c",
            "use super::Thing; use crate::b::Other; use super::d::X;",
        ),
        ("b::d", "fn f() -> crate::e::Y {}"),
        ("e", "pub struct Y;"),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), module(c)))
    .collect();
    let edges = edges(&modules);
    assert_eq!(edges["b::c"], BTreeSet::from(["b::d"]));
    let found = circles(&edges);
    assert_eq!(found, vec![BTreeSet::from(["a", "b"])]);
}

/// Lines that are neither blank nor a comment.
fn code_lines(code: &str) -> usize {
    code.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .count()
}

#[test]
fn no_src_file_has_more_than_700_lines_of_code() {
    let modules = modules();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let too_long: Vec<String> = modules
        .values()
        .map(|m| (code_lines(&m.code), m))
        .filter(|(n, _)| *n > MAX_CODE_LINES)
        .map(|(n, m)| format!("{} has {n}", m.path.strip_prefix(root).unwrap().display()))
        .collect();
    assert!(
        too_long.is_empty(),
        "files over {MAX_CODE_LINES} lines of code (outside #[cfg(test)], without blank and \
         comment lines); split them by topic: {too_long:?}"
    );
    assert_eq!(
        code_lines("// a\n\n  /// b\nfn f() {}\n  //! c\nlet x = 1; // d\n"),
        2
    );
}
