//! The manager's unit tests: hierarchies read from mountinfo, paths, updates rolled back, weights.

use super::*;

const HYBRID: &str = "\
25 30 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime shared:2 - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/memory rw,relatime shared:3 - cgroup cgroup rw,memory
28 25 0:26 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
29 25 0:27 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
30 25 0:28 /nested /mnt/other rw,relatime - cgroup cgroup rw,pids
";

#[test]
fn mountinfo_finds_v1_controllers_and_unified() {
    let h = Hierarchies::parse_mountinfo(HYBRID);
    assert_eq!(
        h.v1,
        vec![
            (PathBuf::from("/sys/fs/cgroup/cpu"), vec!["cpu".to_string()]),
            (
                PathBuf::from("/sys/fs/cgroup/memory"),
                vec!["memory".to_string()]
            ),
            (
                PathBuf::from("/sys/fs/cgroup/systemd"),
                vec!["name=systemd".to_string()]
            ),
        ]
    );
    assert_eq!(h.unified, Some(PathBuf::from("/sys/fs/cgroup/unified")));
    let m = Manager::for_path(&h, "/poc/abc").unwrap();
    assert!(matches!(m, Manager::V1(_)));
    assert!(m
        .leaf_dirs()
        .contains(&PathBuf::from("/sys/fs/cgroup/unified/poc/abc")));
}

#[test]
fn pure_v2_is_detected() {
    let h = Hierarchies::parse_mountinfo(
        "29 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
    );
    let m = Manager::for_path(&h, "/poc/abc").unwrap();
    assert_eq!(m.leaf_dirs(), vec![PathBuf::from("/sys/fs/cgroup/poc/abc")]);
}

#[test]
fn cgroup_paths_cannot_escape() {
    for bad in ["poc/x", "/", "/poc/../x", "/poc//x", ""] {
        assert!(relative_path(bad).is_err(), "{bad}");
    }
    assert_eq!(relative_path("/poc/x").unwrap(), PathBuf::from("poc/x"));
}

/// A v2 manager for `/poc/x` over a temporary directory, and the leaf's directory.
fn fake_v2_leaf() -> (tempfile::TempDir, Manager, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let h = Hierarchies::parse_mountinfo(&format!(
        "1 0 0:1 / {} rw - cgroup2 cgroup2 rw\n",
        tmp.path().display()
    ));
    let m = Manager::for_path(&h, "/poc/x").unwrap();
    let leaf = tmp.path().join("poc/x");
    std::fs::create_dir_all(&leaf).unwrap();
    (tmp, m, leaf)
}

#[test]
fn an_update_refused_midway_puts_the_earlier_values_back() {
    use oci_spec::runtime::{LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};
    let (_tmp, m, leaf) = fake_v2_leaf();
    std::fs::write(leaf.join("memory.max"), "max").unwrap();
    // pids.max is missing: its write fails after memory.max was written.
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(9i64).build().unwrap())
        .build()
        .unwrap();
    let err = m.update(&resources).unwrap_err().to_string();
    assert!(err.contains("pids.max"), "{err}");
    assert_eq!(
        std::fs::read_to_string(leaf.join("memory.max")).unwrap(),
        "max"
    );
    std::fs::write(leaf.join("pids.max"), "max").unwrap();
    let changes = m.update(&resources).unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].previous, "max");
    assert_eq!(std::fs::read_to_string(leaf.join("pids.max")).unwrap(), "9");
    assert_eq!(counter("low 0\nhigh 2\noom_kill 3\n", "oom_kill"), 3);
}

#[test]
fn device_rules_are_applied_at_creation_and_never_by_an_update() {
    use oci_spec::runtime::LinuxResourcesBuilder;
    let (_tmp, m, leaf) = fake_v2_leaf();
    let resources = LinuxResourcesBuilder::default()
        .devices(devices::default_rules())
        .build()
        .unwrap();
    assert_eq!(m.update(&resources).unwrap(), Vec::new());
    // A temp dir is no cgroup: the program cannot be attached, and the error says where.
    let err = m.apply(&resources).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("device rules for {}: ", leaf.display())),
        "{err}"
    );
}

#[test]
fn shares_map_to_weight() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1024), 39);
    for weight in 1..=10_000 {
        assert_eq!(shares_to_weight(weight_to_shares(weight)), weight);
    }
}
