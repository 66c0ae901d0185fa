//! The session's files form no circle of imports: a reader can follow a request through them in
//! one direction (issue "Structure"). The check reads the source: every `super::…` and
//! `crate::session::…` path a file names, and every `child::…` path a file with child modules
//! names, is an edge to the file that defines it; a parent's `mod child;` is not. The test fails
//! naming the files of any cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside `src/session`, e.g. `["algebra", "sets"]`; `[]` is `session/mod.rs`.
type Module = Vec<String>;

fn files(dir: &Path, root: &Path, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/session") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .with_extension("");
            let mut module: Module = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            out.insert(module, path);
        }
    }
}

/// The source without comments and without its `#[cfg(test)] mod tests { … }` tail (unit tests
/// may share helpers across files; they are not part of the request path).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let tests = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(super) mod tests",
    ];
    let text = match tests.iter().filter_map(|t| text.find(t)).min() {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths named after `prefix` (`super::`, `crate::session::`, `child::`): each a list of
/// segments, with `a::{b, c::d}` expanded to `a::b` and `a::c::d`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find(prefix) {
        let start = from + at;
        from = start + prefix.len();
        if code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) || c == ':')
        {
            continue;
        }
        let rest = &code[from..];
        let mut head = Vec::new();
        let mut tail = rest;
        loop {
            let len = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
            if len == 0 {
                break;
            }
            head.push(tail[..len].to_string());
            tail = &tail[len..];
            match tail.strip_prefix("::") {
                Some(next) => tail = next,
                None => break,
            }
        }
        if let Some(group) = tail.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let mut path = head.clone();
                path.extend(
                    item.split("::")
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty() && s != "self"),
                );
                found.push(path);
            }
        } else {
            found.push(head);
        }
    }
    found
}

/// The deepest file that `path` (absolute, from `session`) lies in.
fn file_of(modules: &BTreeMap<Module, PathBuf>, path: &[String]) -> Module {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains_key(m))
        .unwrap_or_default()
}

fn edges(modules: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    for (module, path) in modules {
        let code = code(path);
        let is_mod_file = path.ends_with("mod.rs");
        // `super` of `a/b.rs` is `a`; of `a/mod.rs` (module `a`) it is `a`'s parent.
        let parent: Module = match is_mod_file {
            true => module[..module.len().saturating_sub(1)].to_vec(),
            false => module[..module.len() - 1].to_vec(),
        };
        let mut targets = BTreeSet::new();
        let mut named = Vec::new();
        for path in paths_after(&code, "super::") {
            named.push(parent.iter().cloned().chain(path).collect::<Vec<_>>());
        }
        for path in paths_after(&code, "crate::session::") {
            named.push(path);
        }
        // A file's own child modules, named without `super::`.
        for (child, _) in modules.range(module.clone()..) {
            if child.len() == module.len() + 1 && child.starts_with(module) {
                let name = format!("{}::", child[module.len()]);
                for path in paths_after(&code, &name) {
                    named.push(child.iter().cloned().chain(path).collect());
                }
            }
        }
        for path in named {
            let target = file_of(modules, &path);
            if &target != module {
                targets.insert(target);
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// Files that can reach each other (strongly connected components of more than one file).
fn cycles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let reach = |from: &Module| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&Module, BTreeSet<Module>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for module in graph.keys() {
        if done.contains(module) || !reachable[module].contains(module) {
            continue;
        }
        let component: Vec<Module> = graph
            .keys()
            .filter(|other| {
                reachable[module].contains(*other) && reachable[*other].contains(module)
            })
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        found.push(component);
    }
    found
}

fn name(module: &Module) -> String {
    match module.is_empty() {
        true => "session/mod.rs".to_string(),
        false => format!("session/{}", module.join("/")),
    }
}

#[test]
fn no_file_in_the_session_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/session");
    let mut modules = BTreeMap::new();
    files(&root, &root, &mut modules);
    let graph = edges(&modules);
    // The check sees the imports it must: the session's steps name `Session` in mod.rs, and
    // mod.rs names the reply queue.
    assert!(graph[&vec!["settle".to_string()]].contains(&Vec::new()));
    assert!(graph[&Vec::new()].contains(&vec!["queue".to_string()]));
    let found: Vec<String> = cycles(&graph)
        .iter()
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(found.is_empty(), "import cycles in src/session: {found:#?}");
}

#[test]
fn the_check_finds_a_cycle_through_a_group_import() {
    let code = "use super::{a::B, c};\nuse crate::session::d::E;\nx::y(); super::f::g";
    assert_eq!(
        paths_after(code, "super::"),
        vec![
            vec!["a".to_string(), "B".to_string()],
            vec!["c".to_string()],
            vec!["f".to_string(), "g".to_string()],
        ]
    );
    let module = |m: &str| m.split('/').map(String::from).collect::<Module>();
    let graph = BTreeMap::from([
        (module("a"), BTreeSet::from([module("b")])),
        (module("b"), BTreeSet::from([module("c")])),
        (module("c"), BTreeSet::from([module("a")])),
        (module("d"), BTreeSet::from([module("a")])),
    ]);
    assert_eq!(
        cycles(&graph),
        vec![vec![module("a"), module("b"), module("c")]]
    );
}

/// Most allowed files with `impl Session` in `src/session` (issue "Structure": `impl Session` in
/// one or two files, the others types with their own methods). Lower it as files turn into
/// types; it must not grow back.
const MAX_SESSION_IMPL_FILES: usize = 3;

#[test]
fn the_session_s_methods_stay_in_few_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/session");
    let mut modules = BTreeMap::new();
    files(&root, &root, &mut modules);
    let holding: Vec<String> = modules
        .iter()
        .filter(|(_, path)| {
            code(path)
                .lines()
                .any(|line| line.trim_start().starts_with("impl Session {"))
        })
        .map(|(module, _)| name(module))
        .collect();
    // The check sees what it must: `run` is in mod.rs.
    assert!(holding.contains(&name(&Vec::new())), "{holding:?}");
    assert!(
        holding.len() <= MAX_SESSION_IMPL_FILES,
        "{} files hold `impl Session` (at most {MAX_SESSION_IMPL_FILES}): {holding:#?}; make the \
         new code a type with explicit inputs and call it from one of them",
        holding.len()
    );
}
