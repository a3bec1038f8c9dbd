//! The crate's layering, checked on its source: every `crate::`, `super::` and `self::` path in
//! `src/` (outside `#[cfg(test)]` modules and comments) is resolved to the file it names, and
//! 1. a top-level module may import only modules of lower layers (the list in `src/lib.rs`,
//!    repeated in [`LAYERS`] and compared with it here);
//! 2. no files import each other in a cycle. A module's own children are its parts (it declares
//!    them, and a registry in `mod.rs` lists them), so parent → child paths are not counted; a
//!    child's path to its parent is;
//! 3. no stage kind imports another: stages talk through the cache, their results are typed in
//!    the domain modules, and only the trait (`stages/mod.rs`) and the input readers
//!    (`stages/inputs.rs`) are shared.
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom; a module may import modules of the layers below its own, never above or beside.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["exec"],
    &["plan"],
    &["spec"],
    &["stages"],
    &["report"],
    &["train", "analysis"],
    &["attacks", "data"],
    &["models", "augment"],
    &["cache", "progress", "rng", "torch", "vocab"],
    &["fault", "stop"],
];

fn src() -> PathBuf {
    PathBuf::from(crate::common::ROOT).join("src")
}

/// The module path of a file: `src/a/b.rs` and `src/a/b/mod.rs` are `[a, b]`, `src/lib.rs` `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut m: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if m.last().is_some_and(|l| l == "mod" || l == "lib") {
        m.pop();
    }
    m
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file a path names: the longest prefix of `segments` that is a module file.
fn resolve(segments: &[String]) -> PathBuf {
    for k in (1..=segments.len()).rev() {
        let p = segments[..k].iter().fold(src(), |p, s| p.join(s));
        for f in [p.with_extension("rs"), p.join("mod.rs")] {
            if f.is_file() {
                return f;
            }
        }
    }
    src().join("lib.rs")
}

/// The code of a file without comments, string contents and its trailing `#[cfg(test)]` module
/// (whose `super::` means the file itself).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push('"');
            }
            // A char literal such as '"' or '{' must not open a string or a group.
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') || rest.chars().nth(1) == Some('\'') {
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                    }
                    out.push_str("' '");
                } else {
                    out.push('\'');
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn ident(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The paths `rest` continues `prefix` with: `a::b`, or a group `{a, b::{c, d}}`.
fn paths(prefix: &[String], rest: &str, out: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let (mut depth, mut start) = (0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    paths(prefix, &group[start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    paths(prefix, &group[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let mut path = prefix.to_vec();
    let mut rest = rest;
    loop {
        let n = ident(rest);
        if n == 0 {
            break;
        }
        path.push(rest[..n].to_string());
        rest = &rest[n..];
        match rest.strip_prefix("::") {
            Some(r) if r.trim_start().starts_with('{') => return paths(&path, r, out),
            Some(r) => rest = r,
            None => break,
        }
    }
    out.push(path);
}

/// Every (importing file, imported file) pair of the crate.
fn imports() -> BTreeSet<(PathBuf, PathBuf)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges = BTreeSet::new();
    for file in &files {
        let module = module_of(file);
        let text = code(&std::fs::read_to_string(file).unwrap());
        let mut rest = text.as_str();
        while let Some(i) = rest.find("::") {
            let before = &rest[..i];
            let word = &before[before
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |j| j + 1)..];
            let mut after = &rest[i + 2..];
            let base: Option<Vec<String>> = match word {
                "crate" => Some(vec![]),
                "self" => Some(module.clone()),
                "super" => {
                    let mut up = 1;
                    while let Some(r) = after.strip_prefix("super::") {
                        up += 1;
                        after = r;
                    }
                    Some(module[..module.len().saturating_sub(up)].to_vec())
                }
                _ => None,
            };
            if let Some(base) = base {
                let mut found = Vec::new();
                paths(&base, after, &mut found);
                for p in found {
                    let target = resolve(&p);
                    if &target != file {
                        edges.insert((file.clone(), target));
                    }
                }
            }
            rest = &rest[i + 2..];
        }
    }
    edges
}

fn rel(p: &Path) -> String {
    p.strip_prefix(src().parent().unwrap())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let rank: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect();
    let mut wrong = Vec::new();
    for (from, to) in imports() {
        let (a, b) = (module_of(&from), module_of(&to));
        let (Some(a), Some(b)) = (a.first(), b.first()) else {
            continue; // lib.rs declares the modules; main.rs is the binary
        };
        if a == "main" || a == b {
            continue;
        }
        let (Some(ra), Some(rb)) = (rank.get(a.as_str()), rank.get(b.as_str())) else {
            panic!("module `{a}` or `{b}` is in no layer: add it to LAYERS and to src/lib.rs");
        };
        if ra >= rb {
            wrong.push(format!(
                "{} imports {} ({a} is not above {b})",
                rel(&from),
                rel(&to)
            ));
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
    // Every module of the crate has a layer.
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let layered: BTreeSet<&str> = rank.keys().copied().collect();
    assert_eq!(declared, layered, "src/lib.rs's modules and LAYERS differ");
    // src/lib.rs writes the same layers down, top to bottom, one line each: "N. a, b — …".
    let written: Vec<Vec<&str>> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter_map(|l| {
            let (n, rest) = l.split_once(". ")?;
            n.trim().parse::<usize>().ok()?;
            let names = rest.split(" — ").next()?;
            Some(names.split(", ").map(|m| m.trim_matches('`')).collect())
        })
        .collect();
    let listed: Vec<Vec<&str>> = LAYERS.iter().map(|l| l.to_vec()).collect();
    assert_eq!(written, listed, "src/lib.rs's layer list and LAYERS differ");
}

#[test]
fn no_files_import_each_other_in_a_cycle() {
    let edges = imports();
    assert!(
        edges.len() > 150,
        "the import scan found only {} edges",
        edges.len()
    );
    let names: Vec<String> = edges
        .iter()
        .flat_map(|(a, b)| [rel(a), rel(b)])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let id = |p: &Path| names.binary_search(&rel(p)).unwrap();
    let mut g = DiGraph::<(), ()>::new();
    let nodes: Vec<_> = names.iter().map(|_| g.add_node(())).collect();
    for (from, to) in &edges {
        let (a, b) = (module_of(from), module_of(to));
        if b.len() > a.len() && b.starts_with(&a) {
            continue; // a module's own part
        }
        g.add_edge(nodes[id(from)], nodes[id(to)], ());
    }
    let cycles: Vec<Vec<&str>> = tarjan_scc(&g)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|i| names[i.index()].as_str()).collect())
        .collect();
    assert!(cycles.is_empty(), "files importing each other: {cycles:?}");
}

#[test]
fn no_stage_imports_another_stage() {
    let stages = src().join("stages");
    // The files of stages/ that are no stage: the trait, what the report and correlation read of
    // their inputs, and what a compute estimate asks of a stage.
    let is_stage = |p: &Path| {
        p.parent() == Some(stages.as_path())
            && !["mod.rs", "inputs.rs", "cost.rs"]
                .contains(&p.file_name().unwrap().to_str().unwrap())
    };
    let wrong: Vec<String> = imports()
        .into_iter()
        .filter(|(from, to)| is_stage(from) && is_stage(to))
        .map(|(from, to)| format!("{} imports {}", rel(&from), rel(&to)))
        .collect();
    assert!(
        wrong.is_empty(),
        "stages importing stages:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_groups_relative_paths_and_skips_comments() {
    let mut found = Vec::new();
    paths(
        &[],
        "{attacks, data::{loader, prepared::X}, models}",
        &mut found,
    );
    assert_eq!(
        found,
        [
            vec!["attacks"],
            vec!["data", "loader"],
            vec!["data", "prepared", "X"],
            vec!["models"]
        ]
    );
    let c = code("use a; // crate::spec\nlet s = \"crate::cli\"; let q = '\"'; crate::x");
    assert!(
        !c.contains("spec") && !c.contains("cli") && c.contains("crate::x"),
        "{c}"
    );
    assert_eq!(module_of(&src().join("attacks/mod.rs")), ["attacks"]);
    assert_eq!(module_of(&src().join("attacks/pgd.rs")), ["attacks", "pgd"]);
    assert_eq!(
        resolve(&["attacks".into(), "pgd".into(), "pgd".into()]),
        src().join("attacks/pgd.rs")
    );
}

/// The most lines of one file under `src/` that may name `feature = "torch"` (see the test below).
const TORCH_GATES_PER_FILE: usize = 4;

/// No file under `src/` has more than 4 lines containing `feature = "torch"`. Tensor code sits
/// behind one gated module per file (its `net` half, or the whole file gated once where its parent
/// declares it), so a file needs at most a gated `mod` line and its `pub use`, plus a gated import
/// pair; more means item-by-item `cfg`s weaving the control plane and the worker together again.
#[test]
fn no_file_has_more_than_a_few_torch_gates() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut counts: Vec<(String, usize)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let n = text
                .lines()
                .filter(|l| l.contains("feature = \"torch\""))
                .count();
            (rel(f), n)
        })
        .collect();
    assert!(
        counts.iter().any(|(_, n)| *n > 0),
        "no `feature = \"torch\"` line found under src/: the scan is broken"
    );
    counts.retain(|(_, n)| *n > TORCH_GATES_PER_FILE);
    counts.sort();
    assert!(
        counts.is_empty(),
        "more than {TORCH_GATES_PER_FILE} `feature = \"torch\"` lines (put the file's tensor code \
         behind one gated module): {counts:?}"
    );
}

/// `text` with comments and the contents of strings, raw strings and char literals blanked
/// (newlines kept, so line numbers hold).
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        let ident_before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'r' && !ident_before && matches!(b.get(i + 1), Some(b'"' | b'#')) {
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let start = i + 2 + hashes;
            let end = text[start..]
                .find(&close)
                .map_or(b.len(), |e| start + e + close.len());
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            wipe(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            let lit = text[i..]
                .char_indices()
                .skip(1)
                .take(12)
                .find(|&(_, c)| c == '\'')
                .map(|(e, _)| e)
                .filter(|&e| {
                    e == 2 || b[i + 1] == b'\\' || text[i + 1..i + e].chars().count() == 1
                });
            match lit {
                Some(e) => {
                    wipe(&mut out, i, i + e + 1);
                    i += e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII was replaced")
}

/// The index of the brace closing the one at `open`.
fn closing(s: &[u8], open: usize) -> usize {
    let mut depth = 0i64;
    for (i, &c) in s.iter().enumerate().skip(open) {
        match c {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len() - 1
}

/// Every function over `limit` lines (from its `fn` line to its closing brace) outside test
/// modules, as (file, line, name, lines, whether a comment above it says why it is long).
fn long_functions(limit: usize) -> Vec<(String, usize, String, usize, bool)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut s = blank(&text).into_bytes();
        // Test modules (`#[cfg(test)] mod …`, wherever they sit) are left out.
        let mut from = 0;
        while let Some(at) = String::from_utf8_lossy(&s[from..]).find("#[cfg(test)]") {
            let at = from + at;
            let rest = String::from_utf8_lossy(&s[at + 12..]).to_string();
            let head = rest.trim_start();
            if head.starts_with("mod ")
                || head.starts_with("pub mod ")
                || head.starts_with("pub(crate) mod ")
            {
                if let Some(open) = rest.find('{') {
                    let open = at + 12 + open;
                    let close = closing(&s, open);
                    for c in &mut s[at..=close] {
                        if *c != b'\n' {
                            *c = b' ';
                        }
                    }
                }
            }
            from = at + 12;
        }
        let code = String::from_utf8(s).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut search = 0;
        while let Some(at) = code[search..].find("fn ") {
            let at = search + at;
            search = at + 3;
            if at > 0
                && (code.as_bytes()[at - 1].is_ascii_alphanumeric()
                    || code.as_bytes()[at - 1] == b'_')
            {
                continue;
            }
            let name: String = code[at + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let (Some(open), semi) = (code[at..].find('{'), code[at..].find(';')) else {
                continue;
            };
            if semi.is_some_and(|s| s < open) || name.is_empty() {
                continue;
            }
            let close = closing(code.as_bytes(), at + open);
            let first = code[..at].matches('\n').count();
            let last = code[..close].matches('\n').count();
            let len = last - first + 1;
            if len > limit {
                let reason = lines[..first]
                    .iter()
                    .rev()
                    .take_while(|l| {
                        let l = l.trim_start();
                        l.starts_with("//") || l.starts_with("#[")
                    })
                    .any(|l| l.to_lowercase().contains("long because"));
                out.push((rel(&f), first + 1, name, len, reason));
            }
        }
    }
    out
}

/// A function over 120 lines says why beside it (a comment above it with "Long because"): most
/// long functions are composition code that grew and should be split by concern; the few that
/// follow a reference step by step, or are one match over kinds, say so.
#[test]
fn long_functions_say_why() {
    let long = long_functions(120);
    let unexplained: Vec<String> = long
        .iter()
        .filter(|l| !l.4)
        .map(|(f, line, name, len, _)| format!("{f}:{line}: fn {name} is {len} lines"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "split these, or say above each why it is long (\"Long because …\"):\n{}",
        unexplained.join("\n")
    );
    // The scan sees functions: the explained ones are there.
    assert!(long.iter().any(|l| l.2 == "single_run"), "{long:?}");
}
