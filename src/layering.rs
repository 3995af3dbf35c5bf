//! The modules' layers, checked: a module may use (`crate::NAME`) only modules of a lower layer.
//! Reads the source tree as text; owns no code of the runtime.
//!
//! In short: nothing outside `cli/` and `main.rs` uses `crate::cli`; only `cli` uses `container`
//! and `bench`; the low-level modules (cgroups, rootfs, security, network, spec, image, trace...)
//! never reach up into `container`. The layers, highest first, as today's imports order them:
//!
//! | layer | modules              | what they are                                          |
//! |------:|----------------------|--------------------------------------------------------|
//! | 9     | main, cli            | the command line: flags in, calls, output              |
//! | 8     | container, bench     | a container's life; the benches (they run poc itself)  |
//! | 7     | process, trace       | the init sequence and its supervisor; eBPF measuring   |
//! | 6     | config               | poc's paths and settings                               |
//! | 5     | spec                 | requests, limits and the OCI spec built from them      |
//! | 4     | network, image       | bridge, veth, addresses, nftables; the image store     |
//! | 3     | security             | capabilities, seccomp, users                           |
//! | 2     | rootfs               | mounts and pivot_root                                  |
//! | 1     | cgroups              | cgroup v1 and v2 files, device BPF                     |
//! | 0     | private, plot, units, names, id, error | leaf helpers: private files, SVG charts, units, names, ids, the path error |
//!
//! Modules of one layer do not use each other either. An import is a `crate::` path (or group), or a
//! `super::` path that climbs to the crate root; comments and literals are not read. Test code
//! (`tests.rs` files, inline `#[cfg(test)] mod tests { .. }` blocks, this file) is not checked. [`KNOWN`] lists today's exceptions, each
//! with the change that removes it; an exception that no longer occurs fails the test too, so
//! that the list only shrinks.

use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u32)] = &[
    ("main", 9),
    ("cli", 9),
    ("container", 8),
    ("bench", 8),
    ("process", 7),
    ("trace", 7),
    ("config", 6),
    ("spec", 5),
    ("network", 4),
    ("image", 4),
    ("security", 3),
    ("rootfs", 2),
    ("cgroups", 1),
    ("private", 0),
    ("plot", 0),
    ("units", 0),
    ("names", 0),
    ("id", 0),
    ("error", 0),
];

/// Imports against the layers that are known and due to go: (file, module it uses, why and
/// what removes it).
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a file under src/ belongs to ("cli/trace/mod.rs": cli; "main.rs": main).
fn module_of(relative: &str) -> &str {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The file's code without comments, string and character literals, and inline
/// `#[cfg(test)] mod tests { ... }` blocks (a `mod tests;` declaration names a tests.rs file, which
/// is skipped as a whole).
fn code(text: &str) -> String {
    let plain = without_comments_and_literals(text);
    let mut out = String::with_capacity(plain.len());
    let mut rest = plain.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let block = after
            .trim_start()
            .strip_prefix("mod tests")
            .map(str::trim_start);
        match block.filter(|b| b.starts_with('{')) {
            Some(body) => {
                out.push_str(&rest[..at]);
                rest = &body[closing_brace(body)..];
            }
            None => {
                out.push_str(&rest[..at + 1]);
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The offset just past the brace that closes the block `body` opens.
fn closing_brace(body: &str) -> usize {
    let mut depth = 0;
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return i + 1,
            '}' => depth -= 1,
            _ => {}
        }
    }
    body.len()
}

/// `text` with comments (line, nested block) and the contents of string, raw string and character
/// literals blanked out, so that neither `"http://x"` nor `"crate::cli"` is read as code.
fn without_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let next = |k: usize| chars.get(i + k).copied();
        match chars[i] {
            '/' if next(1) == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next(1) == Some('*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            'r' if matches!(next(1), Some('"' | '#'))
                && !chars[..i]
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_') =>
            {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                i += 2 + hashes;
                while i < chars.len() {
                    if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#') {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push_str("\"\"");
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A character literal ('x', '\n', '\u{1F600}'); a lifetime ('a) stays.
            '\'' if next(1) == Some('\\') || next(2) == Some('\'') => {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// How deep the module a file holds sits below the crate root: main.rs 0, units/mod.rs 1,
/// network/hosts.rs 2, process/init/stdio.rs 3.
fn depth_of(relative: &str) -> usize {
    let parts: Vec<&str> = relative.split('/').collect();
    match parts.last() {
        Some(&"main.rs") if parts.len() == 1 => 0,
        Some(&"mod.rs") => parts.len() - 1,
        _ => parts.len(),
    }
}

/// The top-level modules that `code` names as `crate::NAME`, in `crate::{A, B::c}`, or through
/// enough `super::` to reach the crate root from a module `depth` below it.
fn used_modules(code: &str, depth: usize) -> Vec<String> {
    let mut used = Vec::new();
    let mut roots: Vec<&str> = code
        .match_indices("crate::")
        .map(|(at, _)| &code[at + "crate::".len()..])
        .collect();
    for (at, _) in code.match_indices("super::") {
        let starts_path = !code[..at].ends_with("::")
            && !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if !starts_path || depth == 0 {
            continue;
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(after) = rest.strip_prefix("super::") {
            rest = after;
            ups += 1;
        }
        if ups >= depth {
            roots.push(rest);
        }
    }
    for rest in roots {
        let names = match rest.strip_prefix('{') {
            Some(group) => top_level_items(group),
            None => vec![rest],
        };
        for name in names {
            let name: String = name
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !used.contains(&name) {
                used.push(name);
            }
        }
    }
    used
}

/// The items of a `{...}` group at its top level, from after its `{` ("a, b::{c, d}, e}" gives
/// a, b::{c, d}, e).
fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut start, mut depth) = (Vec::new(), 0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("the source tree is readable")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every (file, used module) that breaks the layers, as a line each.
fn violations(src: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        if relative.ends_with("/tests.rs") || relative == "layering.rs" {
            continue;
        }
        let module = module_of(&relative);
        let own = layer(module).unwrap_or_else(|| panic!("{relative}: add {module} to LAYERS"));
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        for used in used_modules(&code(&text), depth_of(&relative)) {
            if used == module {
                continue;
            }
            let theirs = layer(&used).unwrap_or_else(|| panic!("{relative}: add {used} to LAYERS"));
            if theirs >= own {
                found.push((relative.clone(), used));
            }
        }
    }
    found
}

#[test]
fn no_module_uses_a_module_of_its_own_layer_or_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    let unknown: Vec<String> = found
        .iter()
        .filter(|(file, used)| !KNOWN.iter().any(|(f, u, _)| f == file && u == used))
        .map(|(file, used)| format!("src/{file} uses crate::{used}"))
        .collect();
    assert!(
        unknown.is_empty(),
        "imports against the layers (see src/layering.rs):\n{}",
        unknown.join("\n")
    );
    let gone: Vec<String> = KNOWN
        .iter()
        .filter(|(f, u, _)| !found.iter().any(|(file, used)| file == f && used == u))
        .map(|(f, u, why)| format!("src/{f} no longer uses crate::{u} ({why})"))
        .collect();
    assert!(
        gone.is_empty(),
        "remove these from KNOWN in src/layering.rs:\n{}",
        gone.join("\n")
    );
}

#[test]
fn imports_are_found_in_paths_and_groups_but_not_in_comments() {
    let text = "use crate::cgroups::Manager;\nuse crate::{spec, network::{Mode, X}, rootfs};\n\
                // crate::cli in a comment\nlet x = crate::plot::bars(); // crate::bench\n";
    assert_eq!(
        used_modules(&code(text), 1),
        ["cgroups", "spec", "network", "rootfs", "plot"]
    );
    let with_tests = "use crate::spec;\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n";
    assert_eq!(used_modules(&code(with_tests), 1), ["spec"]);
    assert_eq!(module_of("cli/trace/mod.rs"), "cli");
    assert_eq!(module_of("main.rs"), "main");
}

#[test]
fn a_test_module_declared_early_hides_nothing_after_it() {
    // cgroups/mod.rs declares `#[cfg(test)] mod tests;` among its modules, code follows.
    let text = "mod plan;\n#[cfg(test)]\nmod tests;\n\npub fn f() { crate::container::x(); }\n";
    assert_eq!(used_modules(&code(text), 1), ["container"]);
    let inline = "#[cfg(test)]\nmod tests { use crate::cli; }\nfn g() { crate::spec::y(); }\n";
    assert_eq!(used_modules(&code(inline), 1), ["spec"]);
}

#[test]
fn strings_and_block_comments_neither_hide_nor_make_imports() {
    let text = "const U: &str = \"http://x\"; use crate::container::state;\n\
                let s = \"crate::cli\"; let r = r#\"crate::bench \" //\"#;\n\
                /* crate::trace /* nested */ crate::image */ let c = '\"'; use crate::units;\n\
                fn f<'a>(x: &'a str) -> &'a str { crate::id::short(x) }\n";
    assert_eq!(used_modules(&code(text), 1), ["container", "units", "id"]);
}

#[test]
fn super_paths_that_reach_the_crate_root_are_imports() {
    assert_eq!(depth_of("main.rs"), 0);
    assert_eq!(depth_of("units/mod.rs"), 1);
    assert_eq!(depth_of("network/hosts.rs"), 2);
    assert_eq!(depth_of("process/init/stdio.rs"), 3);
    let text =
        "use super::super::container::state;\nuse super::ipam;\nuse super::super::{cli, units};\n";
    assert_eq!(used_modules(&code(text), 2), ["container", "cli", "units"]);
    assert!(used_modules(&code(text), 3).is_empty());
    assert_eq!(used_modules(&code("use super::spec;"), 1), ["spec"]);
}
