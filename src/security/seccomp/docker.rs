//! Docker's seccomp profile format (`--security-opt seccomp=PROFILE.json`) and its resolution for one
//! container: arch map, includes and excludes by capability, arch and kernel. Pure data, no syscalls.

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use super::SeccompError;

/// A profile before resolution: rules still carry their conditions.
#[derive(Debug, Default)]
pub(super) struct Profile {
    pub default_action: LinuxSeccompAction,
    pub default_errno_ret: Option<u32>,
    pub architectures: Vec<Arch>,
    /// Native architecture → the compat ones its processes can also use.
    pub arch_map: Vec<(Arch, Vec<Arch>)>,
    pub flags: Vec<LinuxSeccompFilterFlag>,
    pub listener_path: Option<String>,
    pub listener_metadata: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Default)]
pub(super) struct Rule {
    pub names: Vec<String>,
    pub action: LinuxSeccompAction,
    pub errno_ret: Option<u32>,
    pub args: Vec<LinuxSeccompArg>,
    pub includes: Condition,
    pub excludes: Condition,
}

/// Docker's filter on a rule. In `includes` all of it must hold; in `excludes` any part excludes.
#[derive(Debug, Default)]
pub(super) struct Condition {
    /// Capability names as Docker writes them (`CAP_SYS_ADMIN`).
    pub caps: Vec<String>,
    /// Docker's names of the native architecture (`amd64`, `arm64`, `x86`, `s390x`, ...).
    pub arches: Vec<String>,
    pub min_kernel: Option<KernelVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

/// What a profile is resolved against: the machine poc runs on.
pub(super) struct Host {
    /// Docker's name of the native architecture.
    pub arch_name: &'static str,
    pub arch: Option<Arch>,
    /// None when the release string cannot be read: rules needing a minimum kernel are then left out.
    pub kernel: Option<KernelVersion>,
}

impl Host {
    pub fn current() -> Host {
        let (arch_name, arch) = native_arch();
        Host {
            arch_name,
            arch,
            kernel: running_kernel(),
        }
    }
}

/// Docker's name and the seccomp token of the architecture poc was built for.
pub(super) fn native_arch() -> (&'static str, Option<Arch>) {
    let little = cfg!(target_endian = "little");
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
        "x86" => ("x86", Some(Arch::ScmpArchX86)),
        "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
        "arm" => ("arm", Some(Arch::ScmpArchArm)),
        "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
        "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
        "loongarch64" => ("loongarch64", Some(Arch::ScmpArchLoongarch64)),
        "powerpc64" if little => ("ppc64le", Some(Arch::ScmpArchPpc64le)),
        "powerpc64" => ("ppc64", Some(Arch::ScmpArchPpc64)),
        "mips64" if little => ("mipsel64", Some(Arch::ScmpArchMipsel64)),
        "mips64" => ("mips64", Some(Arch::ScmpArchMips64)),
        other => (other, None),
    }
}

fn running_kernel() -> Option<KernelVersion> {
    // SAFETY: uname fills the struct we own; all-zero bytes are a valid utsname.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let release: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    parse_release(&String::from_utf8_lossy(&release))
}

/// "6.18.0-1-amd64" → 6.18
fn parse_release(release: &str) -> Option<KernelVersion> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some(KernelVersion { major, minor })
}

/// Keeps the rules that apply to a container whose bounding set is `caps` on `host`, as Docker does.
pub(super) fn resolve(profile: Profile, caps: &[Capability], host: &Host) -> LinuxSeccomp {
    let cap_names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
    let mut architectures = profile.architectures;
    if let Some((native, compat)) = profile
        .arch_map
        .into_iter()
        .find(|(arch, _)| Some(*arch) == host.arch)
    {
        architectures.push(native);
        architectures.extend(compat);
    }
    let syscalls: Vec<LinuxSyscall> = profile
        .rules
        .into_iter()
        .filter(|rule| applies(rule, &cap_names, host))
        .map(to_oci)
        .collect();

    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures((!architectures.is_empty()).then_some(architectures));
    out.set_flags((!profile.flags.is_empty()).then_some(profile.flags));
    out.set_listener_path(profile.listener_path.map(Into::into));
    out.set_listener_metadata(profile.listener_metadata);
    out.set_syscalls((!syscalls.is_empty()).then_some(syscalls));
    out
}

fn applies(rule: &Rule, caps: &[String], host: &Host) -> bool {
    let kernel_at_least = |min: KernelVersion| host.kernel.is_some_and(|k| k >= min);
    let ex = &rule.excludes;
    if ex.arches.iter().any(|a| a == host.arch_name)
        || ex.caps.iter().any(|c| caps.contains(c))
        || ex.min_kernel.is_some_and(kernel_at_least)
    {
        return false;
    }
    let inc = &rule.includes;
    (inc.arches.is_empty() || inc.arches.iter().any(|a| a == host.arch_name))
        && inc.caps.iter().all(|c| caps.contains(c))
        && inc.min_kernel.is_none_or(kernel_at_least)
}

/// An OCI argument condition.
pub(super) fn oci_arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    let builder = match value_two {
        Some(v) => builder.value_two(v),
        None => builder,
    };
    builder
        .build()
        // derive_builder only fails on a field without a value; this one defaults every field.
        .expect("LinuxSeccompArgBuilder defaults every field")
}

fn to_oci(rule: Rule) -> LinuxSyscall {
    let mut call = LinuxSyscall::default();
    call.set_names(rule.names);
    call.set_action(rule.action);
    call.set_errno_ret(rule.errno_ret);
    call.set_args((!rule.args.is_empty()).then_some(rule.args));
    call
}

// Docker's JSON, field for field. Enumerations stay strings here so that a bad value is reported
// with where it is, rather than as serde's "unknown variant" at a column.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonProfile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<JsonArchMap>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<JsonSyscall>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonSyscall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<JsonArg>>,
    #[serde(default)]
    includes: Option<JsonCondition>,
    #[serde(default)]
    excludes: Option<JsonCondition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonArg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonCondition {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Parses a profile in Docker's JSON format. Errors are one line naming the bad field.
pub(super) fn parse(json: &str) -> Result<Profile, SeccompError> {
    let raw: JsonProfile = serde_json::from_str(json).map_err(SeccompError::Json)?;
    if raw.default_action.is_empty() {
        return Err(bad("defaultAction is missing".into()));
    }
    let architectures = raw.architectures.unwrap_or_default();
    let arch_map = raw.arch_map.unwrap_or_default();
    if !architectures.is_empty() && !arch_map.is_empty() {
        return Err(bad(
            "both 'architectures' and 'archMap' are given; use one".into()
        ));
    }
    let rules = raw
        .syscalls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, call)| parse_rule(call).map_err(|e| bad(format!("syscalls[{i}]: {e}"))))
        .collect::<Result<_, _>>()?;
    Ok(Profile {
        default_action: parse_action(&raw.default_action).map_err(bad)?,
        default_errno_ret: raw.default_errno_ret,
        architectures: architectures
            .iter()
            .map(|a| parse_arch(a))
            .collect::<Result<_, _>>()
            .map_err(bad)?,
        arch_map: arch_map
            .iter()
            .map(|m| {
                let subs = m.sub_architectures.iter().flatten();
                Ok((
                    parse_arch(&m.architecture)?,
                    subs.map(|a| parse_arch(a)).collect::<Result<_, _>>()?,
                ))
            })
            .collect::<Result<_, String>>()
            .map_err(bad)?,
        flags: raw
            .flags
            .unwrap_or_default()
            .iter()
            .map(|f| {
                f.parse()
                    .map_err(|_| bad(format!("unknown seccomp flag {f:?}")))
            })
            .collect::<Result<_, _>>()?,
        listener_path: raw.listener_path,
        listener_metadata: raw.listener_metadata,
        rules,
    })
}

fn bad(message: String) -> SeccompError {
    SeccompError::Profile(message)
}

fn parse_rule(call: JsonSyscall) -> Result<Rule, String> {
    let names = match (call.name.is_empty(), call.names) {
        (true, Some(names)) => names,
        (true, None) => return Err("no 'names'".into()),
        (false, None) => vec![call.name],
        (false, Some(names)) if names.is_empty() => vec![call.name],
        (false, Some(_)) => return Err("both 'name' and 'names' are given; use one".into()),
    };
    let args = call
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            let value_two = (a.value_two != 0).then_some(a.value_two);
            Ok(oci_arg(a.index, parse_op(&a.op)?, a.value, value_two))
        })
        .collect::<Result<_, String>>()?;
    Ok(Rule {
        names,
        action: parse_action(&call.action)?,
        errno_ret: call.errno_ret,
        args,
        includes: parse_condition(call.includes)?,
        excludes: parse_condition(call.excludes)?,
    })
}

fn parse_condition(cond: Option<JsonCondition>) -> Result<Condition, String> {
    let Some(cond) = cond else {
        return Ok(Condition::default());
    };
    let min_kernel = match cond.min_kernel.as_deref() {
        None | Some("") => None,
        Some(text) => Some(parse_min_kernel(text)?),
    };
    Ok(Condition {
        caps: cond.caps.unwrap_or_default(),
        arches: cond.arches.unwrap_or_default(),
        min_kernel,
    })
}

/// Docker writes kernel versions as "major.minor".
fn parse_min_kernel(text: &str) -> Result<KernelVersion, String> {
    let bad = || format!("minKernel {text:?} is not a version such as \"4.8\"");
    let (major, minor) = text.split_once('.').ok_or_else(bad)?;
    Ok(KernelVersion {
        major: major.parse().map_err(|_| bad())?,
        minor: minor.parse().map_err(|_| bad())?,
    })
}

fn parse_action(text: &str) -> Result<LinuxSeccompAction, String> {
    text.parse().map_err(|_| {
        format!(
            "unknown seccomp action {text:?} (SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, \
             SCMP_ACT_KILL_THREAD, SCMP_ACT_KILL_PROCESS, SCMP_ACT_TRAP, SCMP_ACT_TRACE, \
             SCMP_ACT_LOG, SCMP_ACT_NOTIFY)"
        )
    })
}

fn parse_op(text: &str) -> Result<LinuxSeccompOperator, String> {
    text.parse().map_err(|_| {
        format!(
            "unknown argument operator {text:?} (SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, \
             SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ)"
        )
    })
}

fn parse_arch(text: &str) -> Result<Arch, String> {
    text.parse()
        .map_err(|_| format!("unknown architecture {text:?} (such as SCMP_ARCH_X86_64)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64(kernel: (u32, u32)) -> Host {
        Host {
            arch_name: "amd64",
            arch: Some(Arch::ScmpArchX86_64),
            kernel: Some(KernelVersion {
                major: kernel.0,
                minor: kernel.1,
            }),
        }
    }

    const SMALL: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "ignored"},
            {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["cacheflush"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
        ]
    }"#;

    fn names(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn docker_json_resolves_includes_and_excludes() {
        let profile = resolve(parse(SMALL).unwrap(), &[Capability::Chown], &amd64((6, 1)));
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(1));
        assert_eq!(
            profile.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(
            names(&profile),
            ["read", "write", "ptrace", "clone", "arch_prctl", "clone3"]
        );
        let clone = &profile.syscalls().as_ref().unwrap()[2];
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(arg.value(), 0x7E02_0000);
        let clone3 = &profile.syscalls().as_ref().unwrap()[4];
        assert_eq!(clone3.errno_ret(), Some(38));
    }

    #[test]
    fn capabilities_and_kernel_change_what_applies() {
        let admin = resolve(
            parse(SMALL).unwrap(),
            &[Capability::SysAdmin],
            &amd64((4, 4)),
        );
        assert_eq!(names(&admin), ["read", "write", "mount", "arch_prctl"]);
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let err = |json: &str| parse(json).unwrap_err().to_string();
        assert!(err("{ not json").contains("not valid JSON"), "{}", err("{"));
        let e = err(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#);
        assert!(
            e.contains("unknown seccomp action \"SCMP_ACT_MAYBE\""),
            "{e}"
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_ABOUT"}]}]}"#);
        assert!(
            e.contains("syscalls[1]") && e.contains("SCMP_CMP_ABOUT"),
            "{e}"
        );
        let e = err(r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}"#);
        assert!(e.contains("SCMP_ARCH_Z80"), "{e}");
        let e = err(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read",
                "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(e.contains("both 'name' and 'names'"), "{e}");
        for e in [e, err("[]")] {
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn kernel_release_strings() {
        assert_eq!(
            parse_release("6.18.0-1-amd64"),
            Some(KernelVersion {
                major: 6,
                minor: 18
            })
        );
        assert_eq!(parse_release("garbage"), None);
        assert!(parse_min_kernel("4.8").is_ok());
        assert!(parse_min_kernel("four").is_err());
    }
}
