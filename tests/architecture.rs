//! The module plan, checked: no import cycle between any two files of `src/` (so every
//! folder is one part and imports only point down). Reads the `use crate::…` paths of every
//! file and resolves each to the file that declares it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, as module paths (`proxy::route`, `lib` for the root).
fn modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<Vec<String>, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(name);
            modules(&path, &inner, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if name == "main" {
                continue; // the binary sits on top of everything
            }
            let mut module = prefix.to_vec();
            if name != "mod" && name != "lib" {
                module.push(name);
            }
            out.insert(module, path);
        }
    }
}

/// The crate paths a file imports, with `use crate::a::{b, c::d}` groups expanded one level;
/// `super::` paths are made absolute from `module`.
fn imports(text: &str, module: &[String]) -> Vec<Vec<String>> {
    // `super` of `a::b` (a/b.rs) and of `a::b` (a/b/mod.rs) is `a` alike.
    let parent = &module[..module.len().saturating_sub(1)];
    let code = text.replace(
        "super::",
        &format!(
            "crate::{}",
            parent.iter().map(|p| format!("{p}::")).collect::<String>()
        ),
    );
    let text = code.as_str();
    let mut found = Vec::new();
    // Ignore the test modules: tests may import anything.
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    // Comments may name any module; only code imports.
    let code: String = code
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| {
                !(c.is_alphanumeric()
                    || c == '_'
                    || c == ':'
                    || c == '{'
                    || c == ','
                    || c == ' '
                    || c == '\n')
            })
            .unwrap_or(rest.len());
        let path = &rest[..end];
        let (base, group) = match path.find('{') {
            Some(open) => (&path[..open], Some(&path[open + 1..])),
            None => (path, None),
        };
        let base: Vec<String> = base
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        match group {
            Some(group) => {
                for item in group.split(',') {
                    let mut full = base.clone();
                    full.extend(
                        item.split("::")
                            .map(str::trim)
                            .filter(|s| !s.is_empty() && *s != "self")
                            .map(String::from),
                    );
                    found.push(full);
                }
            }
            None => found.push(base),
        }
    }
    found
}

/// The file a path names: its longest prefix that is a module.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

#[test]
fn no_import_cycle_between_files_of_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&root, &[], &mut mods);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        for import in imports(&text, module) {
            if let Some(target) = resolve(&import, &mods) {
                // A module importing its own children (`pub mod` re-exports) points down.
                if &target != module && !target.starts_with(module) {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    // Depth-first search for a back edge; report the cycle found.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        stack: &mut Vec<Vec<String>>,
        done: &mut BTreeSet<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|m| m.join("::")).collect();
            cycle.push(node.join("::"));
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.clone());
        None
    }
    let mut done = BTreeSet::new();
    let mut cycles = Vec::new();
    for module in mods.keys() {
        if let Some(cycle) = visit(module, &edges, &mut Vec::new(), &mut done) {
            cycles.push(cycle.join(" → "));
            // Drop the back edge and look again, so every cycle is listed at once.
            let n = cycle.len();
            let from: Vec<String> = cycle[n - 2].split("::").map(String::from).collect();
            let to: Vec<String> = cycle[n - 1].split("::").map(String::from).collect();
            if let Some(set) = edges.get_mut(&from) {
                set.remove(&to);
            }
            done.clear();
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    // Sanity: the scan sees the imports it must see.
    assert!(edges
        .get(&vec!["proxy".to_string(), "pipeline".to_string()])
        .is_some_and(|e| e.contains(&vec!["proxy".to_string(), "route".to_string()])));
}
