use super::*;
use LinuxDeviceType::{A, B, C, P, U};

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: Option<&str>,
) -> LinuxDeviceCgroup {
    // As a bundle may have it: no access at all means rwm.
    let mut r = super::rule(allow, typ, major, minor, "");
    r.set_access(access.map(String::from));
    r
}

fn key(kind: u32, major: u32, minor: u32) -> DevKey {
    DevKey { kind, major, minor }
}

fn exceptions(table: &Table) -> Vec<(DevKey, u32)> {
    table.exceptions.iter().map(|(k, v)| (*k, *v)).collect()
}

#[test]
fn default_rules_become_v1_lines_after_a_deny_all() {
    let lines = v1_lines(&default_rules()).unwrap();
    let text: Vec<String> = lines
        .iter()
        .map(|l| format!("{}: {}", l.file, l.line))
        .collect();
    assert_eq!(
        text,
        [
            "devices.deny: a",
            "devices.allow: c *:* m",
            "devices.allow: b *:* m",
            "devices.allow: c 1:3 rwm",
            "devices.allow: c 1:5 rwm",
            "devices.allow: c 1:7 rwm",
            "devices.allow: c 1:8 rwm",
            "devices.allow: c 1:9 rwm",
            "devices.allow: c 5:0 rwm",
            "devices.allow: c 5:1 rwm",
            "devices.allow: c 5:2 rwm",
            "devices.allow: c 136:* rwm",
        ]
    );
}

#[test]
fn rules_are_read_as_runc_reads_them() {
    let line = |r: LinuxDeviceCgroup| Rule::parse(&r).unwrap().v1_line();
    assert_eq!(
        line(rule(true, A, None, None, None)),
        ("devices.allow", "a".into())
    );
    assert_eq!(
        line(rule(true, U, Some(10), Some(-1), Some("mr"))),
        ("devices.allow", "c 10:* rm".into())
    );
    assert_eq!(
        line(rule(false, B, Some(-1), Some(0), Some("w"))),
        ("devices.deny", "b *:0 w".into())
    );
    let mut untyped = LinuxDeviceCgroup::default();
    untyped.set_allow(false);
    assert_eq!(Rule::parse(&untyped).unwrap(), Rule::All { allow: false });
}

#[test]
fn rules_no_host_can_apply_are_refused_by_name() {
    for (bad, needle) in [
        (rule(true, C, Some(1), Some(3), Some("rx")), "'x'"),
        (rule(true, C, Some(1), Some(3), Some("")), "access is empty"),
        (rule(true, P, None, None, None), "FIFO"),
        (rule(true, A, Some(1), None, None), "type a"),
        (rule(false, A, None, None, Some("r")), "type a"),
        (rule(true, C, Some(-2), Some(3), None), "-2 is not"),
        (
            rule(true, C, Some(1), Some(u32::MAX as i64), None),
            "4294967295 is not",
        ),
    ] {
        let err = Table::from_rules(std::slice::from_ref(&bad)).unwrap_err();
        assert_eq!(err.rule, describe(&bad));
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn the_deny_all_is_implicit() {
    let lines = v1_lines(&[rule(true, C, None, None, Some("m"))]).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0].file, lines[0].line.as_str()),
        ("devices.deny", "a")
    );
    assert_eq!(lines[1].rule, "allow c *:* m");
    let none = v1_lines(&[]).unwrap();
    assert_eq!((none[0].file, none[0].line.as_str()), ("devices.deny", "a"));
    assert_eq!(none.len(), 1);
}

#[test]
fn default_rules_become_the_program_exceptions() {
    let table = Table::from_rules(&default_rules()).unwrap();
    assert!(!table.default_allow);
    let rwm = MKNOD | READ | WRITE;
    let mut expected = vec![
        (key(CHAR, DEV_ANY, DEV_ANY), MKNOD),
        (key(BLOCK, DEV_ANY, DEV_ANY), MKNOD),
        (key(CHAR, 136, DEV_ANY), rwm),
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        expected.push((key(CHAR, major, minor), rwm));
    }
    expected.sort();
    assert_eq!(exceptions(&table), expected);
}

#[test]
fn later_rules_change_what_earlier_ones_gave() {
    let table = Table::from_rules(&[
        rule(true, C, Some(1), Some(3), Some("rw")),
        rule(true, C, Some(1), Some(3), Some("m")),
        rule(true, C, Some(1), Some(5), Some("rwm")),
        rule(false, C, Some(1), Some(5), Some("wm")),
        rule(true, C, Some(1), Some(7), Some("r")),
        rule(false, C, Some(1), Some(7), Some("r")),
    ])
    .unwrap();
    assert_eq!(
        exceptions(&table),
        [
            (key(CHAR, 1, 3), MKNOD | READ | WRITE),
            (key(CHAR, 1, 5), READ)
        ]
    );
    // A deny-all forgets everything before it.
    let table = Table::from_rules(&[
        rule(true, C, Some(1), Some(3), None),
        rule(false, A, None, None, None),
    ])
    .unwrap();
    assert_eq!(table, Table::default());
}

#[test]
fn allow_all_keeps_its_denials_as_exceptions_and_marks_the_default() {
    let table = Table::from_rules(&[
        rule(true, A, None, None, Some("rwm")),
        rule(false, C, Some(10), Some(232), Some("rw")),
        rule(false, B, None, None, Some("m")),
    ])
    .unwrap();
    assert!(table.default_allow);
    assert_eq!(
        exceptions(&table),
        [
            (key(BLOCK, DEV_ANY, DEV_ANY), MKNOD),
            (key(CHAR, 10, 232), READ | WRITE),
        ]
    );
}

#[test]
fn a_rule_v1_would_silently_ignore_is_refused() {
    let mut rules = default_rules();
    rules.push(rule(false, C, Some(136), Some(3), Some("rw")));
    let err = Table::from_rules(&rules).unwrap_err().to_string();
    assert!(
        err.contains("deny c 136:3 rw") && err.contains("allow c 136:* rwm"),
        "{err}"
    );
    // No overlap in access, no hole: c *:* allows only mknod.
    let mut rules = default_rules();
    rules.push(rule(false, C, Some(10), Some(232), Some("rw")));
    assert!(Table::from_rules(&rules).is_ok());
    let err = Table::from_rules(&[
        rule(true, A, None, None, None),
        rule(false, C, Some(10), None, None),
        rule(true, C, Some(10), Some(200), Some("r")),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("earlier deny c 10:* rwm"), "{err}");
    // Narrower and crossing rules are left by v1 just the same.
    for (earlier, later) in [
        (
            rule(true, C, Some(10), Some(232), None),
            rule(false, C, Some(10), None, None),
        ),
        (
            rule(true, C, Some(10), None, None),
            rule(false, C, None, Some(232), None),
        ),
    ] {
        let err = Table::from_rules(&[earlier.clone(), later]).unwrap_err();
        assert!(
            err.reason.contains(&describe(&earlier)["allow ".len()..]),
            "{err}"
        );
    }
    // A block rule shares no device with a char one.
    assert!(Table::from_rules(&[
        rule(true, C, Some(7), Some(0), None),
        rule(false, B, Some(7), None, None),
    ])
    .is_ok());
}

#[test]
fn a_program_the_verifier_refuses_is_reported_with_its_reason() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: loading BPF programs needs root");
        return;
    }
    // `exit`, with r0 never set.
    let exit = program::Insn::new(program::op::EXIT, 0, 0, 0, 0);
    let (op, detail) = program::load(&[exit], c"GPL").unwrap_err();
    assert_eq!(op, "load the program");
    assert!(
        detail.contains("the verifier says: R0 !read_ok"),
        "{detail}"
    );
}

#[test]
fn v1_rules_are_written_line_by_line_and_a_refusal_names_path_and_rule() {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["devices.allow", "devices.deny"] {
        std::fs::write(tmp.path().join(file), "").unwrap();
    }
    let rules = [
        rule(true, C, Some(1), Some(3), Some("rwm")),
        rule(false, C, Some(1), Some(3), Some("m")),
        rule(true, B, Some(7), None, Some("r")),
    ];
    write_v1(tmp.path(), &rules).unwrap();
    let read = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap();
    assert_eq!(read("devices.deny"), "a\nc 1:3 m\n");
    assert_eq!(read("devices.allow"), "c 1:3 rwm\nb 7:* r\n");

    std::fs::remove_file(tmp.path().join("devices.allow")).unwrap();
    let err = write_v1(tmp.path(), &rules).unwrap_err().to_string();
    assert!(
        err.contains(&tmp.path().join("devices.allow").display().to_string())
            && err.contains("allow c 1:3 rwm"),
        "{err}"
    );
}

/// Runs `program` as the kernel would for one access, for the part of BPF that program.rs emits.
fn run(program: &[program::Insn], kind: u32, major: u32, minor: u32, access: u32) -> u64 {
    use program::op;
    let ctx = [access << 16 | kind, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0;
    loop {
        let insn = program[pc];
        let (dst, src) = (usize::from(insn.dst()), usize::from(insn.src()));
        let imm = insn.imm as u32;
        pc += 1;
        match insn.code {
            op::LOAD_U32 => {
                assert_eq!(src, 1, "loads only from the context");
                r[dst] = u64::from(ctx[insn.off as usize / 4]);
            }
            op::MOV32_IMM => r[dst] = u64::from(imm),
            op::MOV32_REG => r[dst] = r[src] & 0xffff_ffff,
            op::AND32_IMM => r[dst] = u64::from(r[dst] as u32 & imm),
            op::RSH32_IMM => r[dst] = u64::from(r[dst] as u32 >> imm),
            op::MOV64_IMM => r[dst] = i64::from(insn.imm) as u64,
            op::JEQ_IMM | op::JNE_IMM | op::JNE_REG => {
                let other = match insn.code {
                    op::JNE_REG => r[src],
                    _ => i64::from(insn.imm) as u64,
                };
                if (r[dst] == other) == (insn.code == op::JEQ_IMM) {
                    pc += usize::try_from(insn.off).expect("jumps go forward");
                }
            }
            op::EXIT => return r[0],
            other => panic!("opcode {other:#x} at {}", pc - 1),
        }
    }
}

/// What cgroup v1 decides: with default deny, one matching exception must grant every access
/// asked for; with default allow, any matching exception that refuses part of it refuses.
fn v1_allows(table: &Table, kind: u32, major: u32, minor: u32, access: u32) -> bool {
    let any = |n: u32, asked: u32| n == DEV_ANY || n == asked;
    let mut matching = table
        .exceptions
        .iter()
        .filter(|(k, _)| k.kind == kind && any(k.major, major) && any(k.minor, minor))
        .map(|(_, bits)| *bits);
    if table.default_allow {
        !matching.any(|bits| bits & access != 0)
    } else {
        matching.any(|bits| access & !bits == 0)
    }
}

#[test]
fn the_program_decides_every_access_as_cgroup_v1() {
    let tables = [
        default_rules(),
        vec![
            rule(true, A, None, None, None),
            rule(false, C, Some(10), Some(232), Some("rw")),
            rule(false, B, None, None, Some("m")),
            rule(false, C, None, Some(5), Some("w")),
        ],
        vec![
            rule(true, C, Some(1), Some(5), Some("rwm")),
            rule(false, C, Some(1), Some(5), Some("wm")),
            rule(true, C, Some(0x8000_0001), None, Some("r")),
            rule(true, B, Some(8), Some(0x000f_ffff), Some("rw")),
        ],
        vec![],
    ];
    let kinds = [BLOCK, CHAR];
    let majors = [0, 1, 5, 8, 10, 136, 0x8000_0001];
    let minors = [0, 3, 5, 232, 0x000f_ffff];
    for rules in tables {
        let table = Table::from_rules(&rules).unwrap();
        let program = program::instructions(&table);
        let rules: Vec<String> = rules.iter().map(describe).collect();
        for kind in kinds {
            for major in majors {
                for minor in minors {
                    for access in 1..=ALL_ACCESS {
                        let expected = v1_allows(&table, kind, major, minor, access);
                        assert_eq!(
                            run(&program, kind, major, minor, access),
                            u64::from(expected),
                            "{} access {access}, rules {rules:?}",
                            key(kind, major, minor),
                        );
                    }
                }
            }
        }
    }
    // The default rules, spelled out.
    let program = program::instructions(&Table::from_rules(&default_rules()).unwrap());
    assert_eq!(run(&program, CHAR, 1, 3, READ | WRITE), 1, "/dev/null rw");
    assert_eq!(run(&program, CHAR, 136, 7, READ | WRITE), 1, "a pty");
    assert_eq!(run(&program, CHAR, 10, 232, MKNOD), 1, "mknod of kvm");
    assert_eq!(run(&program, CHAR, 10, 232, READ), 0, "opening kvm");
    assert_eq!(run(&program, BLOCK, 8, 0, READ), 0, "opening a disk");
}

/// The interpreter above reads registers back through `Insn`'s own accessors, so it cannot see the
/// two register fields swapped: the bytes the kernel reads are checked here against `struct
/// bpf_insn` (code, dst_reg:4 then src_reg:4 from the low bits on little-endian, off, imm).
#[test]
#[cfg(target_endian = "little")]
fn instructions_have_the_kernels_byte_layout() {
    let insn = program::Insn::new(program::op::LOAD_U32, 2, 1, 4, -2);
    assert_eq!(std::mem::size_of::<program::Insn>(), 8);
    // SAFETY: Insn is repr(C), 8 bytes without padding (checked above).
    let bytes: [u8; 8] = unsafe { std::mem::transmute(insn) };
    assert_eq!(bytes, [0x61, 0x12, 0x04, 0x00, 0xfe, 0xff, 0xff, 0xff]);
}
