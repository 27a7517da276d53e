//! The workspace's module layout: within a crate, no top-level module uses another that uses
//! it back (`use crate::a` in `b` and `use crate::b` in `a`), so each can be read on its own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named after `crate::` in `text`, comments left out.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cycles = Vec::new();
    let mut crate_count = 0;
    for entry in std::fs::read_dir(&crates).expect("crates/") {
        let src = entry.expect("crate").path().join("src");
        if !src.is_dir() {
            continue;
        }
        crate_count += 1;
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src");
            let top = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("source");
            let deps = graph.entry(top.clone()).or_default();
            deps.extend(uses(&text).into_iter().filter(|d| *d != top));
        }
        for (a, deps) in &graph {
            for b in deps {
                if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                    cycles.push(format!("{}: {a} <-> {b}", src.display()));
                }
            }
        }
    }
    assert!(
        crate_count >= 8,
        "found only {crate_count} crates under {}",
        crates.display()
    );
    assert!(
        cycles.is_empty(),
        "modules that use each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_scan_sees_uses_and_skips_comments() {
    let found = uses("use crate::apply::{a, b};\n// crate::certs is only mentioned\nlet x = crate::cluster::kind();");
    assert_eq!(
        found,
        BTreeSet::from(["apply".to_string(), "cluster".to_string()])
    );
}
