//! A container's device rules: OCI rules in order over deny-all, as cgroup v1 lines or v2 program.
//! Touches only the cgroup it is given; imports nothing of poc's (tests/devices.rs compiles it in).

use std::collections::{BTreeMap, HashSet};
use std::ffi::CStr;
use std::fmt;
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, MapError};
use aya_obj::generated::bpf_insn;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// bpf/devices.bpf.o, built by build.rs.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/devices.bpf.o"));

/// Access bits, numbered as the kernel hands them to device programs (BPF_DEVCG_ACC_*).
const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;
const ALL_ACCESS: u32 = MKNOD | READ | WRITE;

/// Device types as device programs see them (BPF_DEVCG_DEV_*).
const BLOCK: u32 = 1;
const CHAR: u32 = 2;

/// From bpf/devices.h (the map's size comes from the object file).
const DEV_ANY: u32 = u32::MAX;
const DEV_DEFAULT_TYPE: u32 = 0;

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device rules for {cgroup}: {source}")]
    Rule { cgroup: PathBuf, source: RuleError },
    #[error("failed to write {line:?} to {path} (device rule {rule:?}): {source}")]
    Write {
        path: PathBuf,
        line: String,
        rule: String,
        source: std::io::Error,
    },
    #[error("device rules for {cgroup}: {op}: {detail}")]
    Program {
        cgroup: PathBuf,
        op: &'static str,
        detail: String,
    },
}

/// A rule that cannot be applied, whatever the host.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule {rule:?}: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

/// One rule: allow or deny `access` (some of `rwm`) to devices of `typ`, `major`:`minor` (None: any).
pub fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(Some(typ))
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// Docker's and runc's default: mknod of any node (the container holds CAP_MKNOD), and use of the
/// few devices poc's /dev offers (null, zero, full, random, urandom, tty, console, ptmx, pts/*).
pub fn default_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    vec![
        rule(false, A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"),
        rule(true, C, Some(1), Some(5), "rwm"),
        rule(true, C, Some(1), Some(7), "rwm"),
        rule(true, C, Some(1), Some(8), "rwm"),
        rule(true, C, Some(1), Some(9), "rwm"),
        rule(true, C, Some(5), Some(0), "rwm"),
        rule(true, C, Some(5), Some(1), "rwm"),
        rule(true, C, Some(5), Some(2), "rwm"),
        rule(true, C, Some(136), None, "rwm"),
    ]
}

/// A device or a set of them, as devices.h's `struct dev_key`: type BLOCK or CHAR, DEV_ANY for a
/// wildcard number. The key of the device program's map.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevKey {
    pub kind: u32,
    pub major: u32,
    pub minor: u32,
}

// SAFETY: three u32, no padding; every bit pattern is a valid value.
unsafe impl aya::Pod for DevKey {}

impl fmt::Display for DevKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.kind == BLOCK { 'b' } else { 'c' };
        let number = |n: u32| {
            if n == DEV_ANY {
                "*".to_string()
            } else {
                n.to_string()
            }
        };
        write!(f, "{kind} {}:{}", number(self.major), number(self.minor))
    }
}

/// One OCI rule, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// Type `a`: every device, every access. Allowing it makes the default allow, denying it deny;
    /// either way earlier rules are forgotten, as cgroup v1 does.
    All { allow: bool },
    One {
        allow: bool,
        device: DevKey,
        access: u32,
    },
}

impl Rule {
    fn parse(rule: &LinuxDeviceCgroup) -> Result<Self, RuleError> {
        let bad = |reason: &str| RuleError {
            rule: describe(rule),
            reason: reason.to_string(),
        };
        let access = parse_access(rule.access().as_deref()).map_err(|r| bad(&r))?;
        let kind = match rule.typ().unwrap_or_default() {
            LinuxDeviceType::A => {
                // cgroup v1 reads "a" as every device and access, whatever follows it.
                if rule.major().is_some() || rule.minor().is_some() || access != ALL_ACCESS {
                    return Err(bad(
                        "type a (all devices) takes no numbers and access rwm; name the type, c or b",
                    ));
                }
                return Ok(Rule::All {
                    allow: rule.allow(),
                });
            }
            LinuxDeviceType::B => BLOCK,
            LinuxDeviceType::C | LinuxDeviceType::U => CHAR,
            LinuxDeviceType::P => return Err(bad("FIFOs are not devices a cgroup controls")),
        };
        let number = |n: Option<i64>| match n {
            None | Some(-1) => Ok(DEV_ANY),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n != DEV_ANY)
                .ok_or_else(|| bad(&format!("{n} is not a device number"))),
        };
        Ok(Rule::One {
            allow: rule.allow(),
            device: DevKey {
                kind,
                major: number(rule.major())?,
                minor: number(rule.minor())?,
            },
            access,
        })
    }

    /// The line cgroup v1 takes, and the file it goes to.
    fn v1_line(&self) -> (&'static str, String) {
        let file = |allow| {
            if allow {
                "devices.allow"
            } else {
                "devices.deny"
            }
        };
        match *self {
            Rule::All { allow } => (file(allow), "a".to_string()),
            Rule::One {
                allow,
                device,
                access,
            } => (file(allow), format!("{device} {}", access_text(access))),
        }
    }
}

/// "rwm" in any order and any subset but empty; absent means all three, as in runc.
fn parse_access(access: Option<&str>) -> Result<u32, String> {
    let Some(text) = access else {
        return Ok(ALL_ACCESS);
    };
    let mut bits = 0;
    for c in text.chars() {
        bits |= match c {
            'r' => READ,
            'w' => WRITE,
            'm' => MKNOD,
            other => return Err(format!("access {other:?} is not one of r, w, m")),
        };
    }
    if bits == 0 {
        return Err("the access is empty; give some of r, w, m".to_string());
    }
    Ok(bits)
}

fn access_text(bits: u32) -> String {
    [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, c)| c)
        .collect()
}

/// "allow c 1:3 rwm", for messages.
pub fn describe(rule: &LinuxDeviceCgroup) -> String {
    let verb = if rule.allow() { "allow" } else { "deny" };
    let number = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    format!(
        "{verb} {} {}:{} {}",
        rule.typ().unwrap_or_default().as_str(),
        number(rule.major()),
        number(rule.minor()),
        rule.access().as_deref().unwrap_or("rwm")
    )
}

/// The effect of the rules, as cgroup v1 keeps it: a default and exceptions to it. With default
/// deny an exception is what a device may do; with default allow, what it may not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub default_allow: bool,
    pub exceptions: BTreeMap<DevKey, u32>,
}

impl Table {
    /// Applies `rules` in order over deny-all. A rule that cgroup v1 would silently ignore is
    /// refused instead, so that the same rules mean the same on v1 and v2 hosts.
    pub fn from_rules(rules: &[LinuxDeviceCgroup]) -> Result<Self, RuleError> {
        let mut table = Table::default();
        for rule in rules {
            let parsed = Rule::parse(rule)?;
            table.apply(parsed).map_err(|reason| RuleError {
                rule: describe(rule),
                reason,
            })?;
        }
        Ok(table)
    }

    fn apply(&mut self, rule: Rule) -> Result<(), String> {
        let (allow, device, access) = match rule {
            Rule::All { allow } => {
                *self = Table {
                    default_allow: allow,
                    exceptions: BTreeMap::new(),
                };
                return Ok(());
            }
            Rule::One {
                allow,
                device,
                access,
            } => (allow, device, access),
        };
        if allow != self.default_allow {
            *self.exceptions.entry(device).or_insert(0) |= access;
            return Ok(());
        }
        // Back towards the default: cgroup v1 takes access away only from the exception with
        // exactly these numbers, and silently leaves any other that shares a device with it.
        if let Some((other, bits)) = self.overlapping(device, access) {
            let verb = if allow { "allow" } else { "deny" };
            let earlier = if allow { "deny" } else { "allow" };
            return Err(format!(
                "cannot {verb} a part of the earlier {earlier} {other} {}: cgroup v1 changes \
                 only a rule with the same numbers",
                access_text(bits)
            ));
        }
        if let Some(bits) = self.exceptions.get_mut(&device) {
            *bits &= !access;
            if *bits == 0 {
                self.exceptions.remove(&device);
            }
        }
        Ok(())
    }

    /// Another exception (wider, narrower or crossing) that names a device `device` names too
    /// and shares some of `access`.
    fn overlapping(&self, device: DevKey, access: u32) -> Option<(DevKey, u32)> {
        let same = |a: u32, b: u32| a == b || a == DEV_ANY || b == DEV_ANY;
        self.exceptions
            .iter()
            .find(|(key, bits)| {
                **key != device
                    && key.kind == device.kind
                    && same(key.major, device.major)
                    && same(key.minor, device.minor)
                    && *bits & access != 0
            })
            .map(|(key, bits)| (*key, *bits))
    }

    /// The device program's map: every exception, and the default when it is allow.
    pub fn map_entries(&self) -> Vec<(DevKey, u32)> {
        let mut entries: Vec<(DevKey, u32)> =
            self.exceptions.iter().map(|(k, v)| (*k, *v)).collect();
        if self.default_allow {
            let default = DevKey {
                kind: DEV_DEFAULT_TYPE,
                major: 0,
                minor: 0,
            };
            entries.push((default, 1));
        }
        entries
    }
}

/// One line for cgroup v1: the file, the line, and the rule it comes from (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct V1Line {
    pub file: &'static str,
    pub line: String,
    pub rule: String,
}

/// cgroup v1: the writes that set `rules` on a devices leaf, in order: `a` to devices.deny (the
/// implicit deny-all, unless the rules begin with it), then one line per rule. Checked first, so
/// a rule v1 would ignore is refused.
pub fn v1_lines(rules: &[LinuxDeviceCgroup]) -> Result<Vec<V1Line>, RuleError> {
    Table::from_rules(rules)?;
    let parsed = rules
        .iter()
        .map(Rule::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let mut lines = Vec::with_capacity(rules.len() + 1);
    if parsed.first() != Some(&Rule::All { allow: false }) {
        lines.push(V1Line {
            file: "devices.deny",
            line: "a".to_string(),
            rule: "deny a *:* rwm (the implicit default)".to_string(),
        });
    }
    for (rule, parsed) in rules.iter().zip(parsed) {
        let (file, line) = parsed.v1_line();
        lines.push(V1Line {
            file,
            line,
            rule: describe(rule),
        });
    }
    Ok(lines)
}

/// cgroup v1: writes `rules` to the devices leaf `dir`, one write(2) per line, as the kernel
/// reads them; each file is opened once.
pub fn write_v1(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceError> {
    let lines = v1_lines(rules).map_err(|source| DeviceError::Rule {
        cgroup: dir.to_path_buf(),
        source,
    })?;
    let mut files: BTreeMap<&str, std::fs::File> = BTreeMap::new();
    for V1Line { file, line, rule } in lines {
        let path = dir.join(file);
        let failed = |source| DeviceError::Write {
            path: path.clone(),
            line: line.clone(),
            rule: rule.clone(),
            source,
        };
        let handle = match files.entry(file) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(failed)?,
            ),
        };
        handle
            .write_all(format!("{line}\n").as_bytes())
            .map_err(failed)?;
    }
    Ok(())
}

/// cgroup v2: loads bpf/devices.bpf.c with a map made from `rules` and attaches it to the cgroup2
/// directory `cgroup`, so that it stays after poc exits and goes when the cgroup is removed: the
/// cgroup holds the program and the program its map, and poc keeps no descriptor.
pub fn attach_program(cgroup: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), DeviceError> {
    let table = Table::from_rules(rules).map_err(|source| DeviceError::Rule {
        cgroup: cgroup.to_path_buf(),
        source,
    })?;
    let failed = |(op, detail): (&'static str, String)| DeviceError::Program {
        cgroup: cgroup.to_path_buf(),
        op,
        detail,
    };
    let dir = std::fs::File::open(cgroup).map_err(|e| failed(("open", e.to_string())))?;
    let program = load_program(&table.map_entries()).map_err(failed)?;
    prog_attach(program.as_fd(), dir.as_fd()).map_err(|e| failed(("attach", e.to_string())))
}

/// What failed while loading, and how.
type LoadError = (&'static str, String);

/// The program, its map created and filled first, as the object file describes them.
///
/// Not through aya's `EbpfLoader`: it parses the kernel's BTF whenever it is made (30 ms here,
/// per container), which this program does not need. aya-obj reads the object, aya creates and
/// fills the map, and one BPF_PROG_LOAD loads what the map relocation produced.
fn load_program(entries: &[(DevKey, u32)]) -> Result<OwnedFd, LoadError> {
    let text = |e: &dyn fmt::Display| e.to_string();
    let mut object =
        aya_obj::Object::parse(PROGRAM).map_err(|e| ("parse bpf/devices.bpf.o", text(&e)))?;
    let def = object
        .maps
        .get(MAP_NAME)
        .cloned()
        .ok_or(("parse bpf/devices.bpf.o", format!("no map {MAP_NAME}")))?;
    if entries.len() > def.max_entries() as usize {
        let detail = format!("{} entries, at most {}", entries.len(), def.max_entries());
        return Err(("fill the map", detail));
    }
    // The object's BTF is not loaded, so the map is made from the definition's numbers alone.
    let plain = aya_obj::Map::new_from_params(
        def.map_type(),
        def.key_size(),
        def.value_size(),
        def.max_entries(),
        def.map_flags(),
    );
    let data = MapData::create(plain, MAP_NAME, None).map_err(|e| ("create the map", text(&e)))?;
    let map_fd = data.fd().as_fd().as_raw_fd();
    // Checks that the C key and value are the size of DevKey and u32.
    let mut map: aya::maps::HashMap<MapData, DevKey, u32> = Map::HashMap(data)
        .try_into()
        .map_err(|e: MapError| ("open the map", text(&e)))?;
    for (key, access) in entries {
        map.insert(key, access, 0)
            .map_err(|e| ("fill the map", format!("{key}: {e}")))?;
    }
    let no_text_sections = HashSet::new();
    object
        .relocate_maps(std::iter::once((MAP_NAME, map_fd, &def)), &no_text_sections)
        .and_then(|()| object.relocate_calls(&no_text_sections))
        .map_err(|e| ("relocate the program", text(&e)))?;
    let function = object
        .programs
        .get(PROGRAM_NAME)
        .and_then(|p| object.functions.get(&p.function_key()))
        .ok_or((
            "parse bpf/devices.bpf.o",
            format!("no program {PROGRAM_NAME}"),
        ))?;
    // The program now holds the map: the map's own descriptor closes when `map` drops.
    prog_load(&function.instructions, &object.license)
}

const MAP_NAME: &str = "devices";
const PROGRAM_NAME: &str = "poc_devices";

/// BPF_PROG_LOAD of a device program; if that fails, again with the verifier's log, which says why.
fn prog_load(instructions: &[bpf_insn], license: &CStr) -> Result<OwnedFd, LoadError> {
    // The head of union bpf_attr for BPF_PROG_LOAD (include/uapi/linux/bpf.h); the kernel
    // zeroes what a shorter attr leaves out.
    #[repr(C)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
    }
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: instructions.len() as u32,
        insns: instructions.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: attr is a BPF_PROG_LOAD attr whose pointers (instructions, license) outlive the call.
    if let Ok(fd) = unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // SAFETY: a new descriptor from the kernel, which nothing else owns.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let mut log = vec![0u8; 64 * 1024];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    // SAFETY: as above, and the log buffer outlives the call.
    let error = match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // SAFETY: as above.
        Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => e,
    };
    let log = String::from_utf8_lossy(&log);
    // The log ends with a line of statistics; the reason is the line before.
    let why = log
        .trim_end_matches('\0')
        .lines()
        .rfind(|l| !l.trim().is_empty() && !l.starts_with("processed "));
    Err(match why {
        Some(why) => (
            "load the program",
            format!("{error}; the verifier says: {why}"),
        ),
        None => ("load the program", error.to_string()),
    })
}

/// bpf(BPF_PROG_ATTACH) of a device program to a cgroup. Not aya's `CgroupDevice::attach`: from
/// kernel 5.7 it makes a bpf_link, which detaches when its last descriptor closes, i.e. when poc
/// exits. BPF_F_ALLOW_MULTI lets the programs of the cgroups above (systemd's) still run; the
/// kernel allows an access only if every one of them allows it.
fn prog_attach(program: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> std::io::Result<()> {
    // The head of union bpf_attr for BPF_PROG_ATTACH.
    #[repr(C)]
    struct ProgAttachAttr {
        target_fd: u32,
        attach_bpf_fd: u32,
        attach_type: u32,
        attach_flags: u32,
        replace_bpf_fd: u32,
    }
    const BPF_PROG_ATTACH: libc::c_long = 8;
    const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: attr is a BPF_PROG_ATTACH attr holding two descriptors that live across the call.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

/// The attach type of device programs (enum bpf_attach_type).
const BPF_CGROUP_DEVICE: u32 = 6;

/// The bpf(2) system call with `attr` as the command's attributes.
///
/// # Safety
/// `attr` must be a valid prefix of union bpf_attr for `cmd`, and every pointer in it must be
/// valid for the kernel to read (or write, for a log buffer) during the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<RawFd> {
    // SAFETY: guaranteed by the caller; the size passed is attr's own.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc as RawFd)
}

#[cfg(test)]
mod tests {
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
    fn default_rules_become_the_program_map() {
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
        assert_eq!(table.map_entries(), expected);
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
            table.map_entries(),
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
            table.map_entries(),
            [
                (key(BLOCK, DEV_ANY, DEV_ANY), MKNOD),
                (key(CHAR, 10, 232), READ | WRITE),
                (key(DEV_DEFAULT_TYPE, 0, 0), 1),
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
        // SAFETY: bpf_insn is plain integers; all zeroes is a valid value.
        let mut exit: bpf_insn = unsafe { std::mem::zeroed() };
        // `exit`, with r0 never set.
        exit.code = 0x95;
        let (op, detail) = prog_load(&[exit], c"GPL").unwrap_err();
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
}
