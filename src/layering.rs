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
//! Modules of one layer do not use each other either. Test modules (`tests.rs` files, a trailing
//! `#[cfg(test)] mod tests`, this file) are not checked. [`KNOWN`] lists today's exceptions, each
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
    ("image", 4),
    ("config", 6),
    ("spec", 5),
    ("network", 4),
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

/// The file's code without its trailing test module and without comments.
fn code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| w[0].trim() == "#[cfg(test)]" && w[1].trim_start().starts_with("mod tests"))
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules that `code` names as `crate::NAME` or in `crate::{A, B::c}`.
fn used_modules(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
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
        for used in used_modules(&code(&text)) {
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
        used_modules(&code(text)),
        ["cgroups", "spec", "network", "rootfs", "plot"]
    );
    let with_tests = "use crate::spec;\n#[cfg(test)]\nmod tests {\n    use crate::cli;\n}\n";
    assert_eq!(used_modules(&code(with_tests)), ["spec"]);
    assert_eq!(module_of("cli/trace/mod.rs"), "cli");
    assert_eq!(module_of("main.rs"), "main");
}
