//! A container's device rules: OCI rules in order over deny-all, as cgroup v1 lines or v2 program.
//! Touches only the cgroup it is given; imports nothing of poc's (tests/devices.rs compiles it in).

// Paths spelled out: tests/devices.rs includes this file by path, and the files beside it must be
// found from there too.
#[path = "devices/program.rs"]
mod program;
#[cfg(test)]
#[path = "devices/tests.rs"]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Access bits, numbered as the kernel hands them to device programs (BPF_DEVCG_ACC_*).
const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;
const ALL_ACCESS: u32 = MKNOD | READ | WRITE;

/// Device types as device programs see them (BPF_DEVCG_DEV_*).
const BLOCK: u32 = 1;
const CHAR: u32 = 2;

/// A major or minor number that matches any (the kernel's own wildcard, ~0).
const DEV_ANY: u32 = u32::MAX;

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

/// A device or a set of them: type BLOCK or CHAR, DEV_ANY for a wildcard number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DevKey {
    pub kind: u32,
    pub major: u32,
    pub minor: u32,
}

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

/// cgroup v2: compiles `rules` into a device program and attaches it to the cgroup2 directory
/// `cgroup`, so that it stays after poc exits and goes when the cgroup is removed: the cgroup
/// holds the program, and poc keeps no descriptor.
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
    if table.exceptions.len() > program::MAX_EXCEPTIONS {
        let detail = format!(
            "{} exceptions, at most {}",
            table.exceptions.len(),
            program::MAX_EXCEPTIONS
        );
        return Err(failed(("build the program", detail)));
    }
    let dir = std::fs::File::open(cgroup).map_err(|e| failed(("open", e.to_string())))?;
    let program = program::load(&program::instructions(&table), c"Apache-2.0").map_err(failed)?;
    program::attach(program.as_fd(), dir.as_fd()).map_err(|e| failed(("attach", e.to_string())))
}
