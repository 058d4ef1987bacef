//! The layout section of `src/lib.rs` lists the modules from the command line down, and says
//! that a module uses only those listed after it. This holds the code to that list: every
//! module is listed, and every `crate::` path in a module's code (its unit tests aside)
//! names a module listed after it, so no import cycle can come back unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules of the crate: `src/NAME.rs` and `src/NAME/`, with every file of each.
fn modules() -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path]
        };
        modules.entry(name).or_insert_with(Vec::new).extend(files);
    }
    modules
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The modules in the order the layout section first names them (in backticks).
fn layout_order(known: &BTreeMap<String, Vec<PathBuf>>) -> Vec<String> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let section = lib
        .lines()
        .skip_while(|l| l.trim() != "//! # Layout")
        .take_while(|l| l.starts_with("//!"));
    let mut order: Vec<String> = Vec::new();
    for line in section {
        for (i, quoted) in line.split('`').enumerate() {
            if i % 2 == 1 && known.contains_key(quoted) && !order.iter().any(|m| m == quoted) {
                order.push(quoted.to_string());
            }
        }
    }
    order
}

/// The modules a file's code names as `crate::NAME` (directly or in a `use crate::{...}`
/// group), its `#[cfg(test)]` part left out.
fn used_modules(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut used = Vec::new();
    for part in code.split("crate::").skip(1) {
        if let Some(group) = part.strip_prefix('{') {
            // `use crate::{a, b::{c, d}, e::f}`: the names at the group's top level.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.push(ident(item.trim()));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            used.push(ident(item.trim()));
        } else {
            used.push(ident(part));
        }
    }
    used.retain(|m| !m.is_empty() && m != "self");
    used
}

#[test]
fn every_module_uses_only_modules_listed_after_it_in_the_layout() {
    let modules = modules();
    let order = layout_order(&modules);
    let unlisted: Vec<_> = modules.keys().filter(|m| !order.contains(m)).collect();
    assert!(
        unlisted.is_empty(),
        "modules missing from the layout section of src/lib.rs: {unlisted:?}"
    );
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut upward = Vec::new();
    for (module, files) in &modules {
        for file in files {
            for used in used_modules(file) {
                if used == *module {
                    continue;
                }
                match (rank(module), rank(&used)) {
                    (Some(a), Some(b)) if b > a => {}
                    _ => upward.push(format!(
                        "{} uses `{used}`, listed before `{module}`",
                        file.strip_prefix(src()).unwrap().display()
                    )),
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports against the layout's order (a cycle, or a stale list):\n{}",
        upward.join("\n")
    );
}
