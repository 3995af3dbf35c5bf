//! Seccomp for containers: Docker's default profile and Docker-format profiles resolved for a
//! container's capabilities, compiled to BPF with libseccomp and cached, installed before exec.
//! Owns only its cache directory; it never loads a filter into poc's own process.

mod cache;
mod default;
mod docker;
mod enosys;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("seccomp profile: {0}")]
    Profile(String),
    #[error("seccomp profile: {0} is not supported by poc")]
    Unsupported(String),
    #[error("compiling the seccomp filter: {op}: {source}")]
    Compile {
        op: String,
        source: libseccomp::error::SeccompError,
    },
    #[error("compiling the seccomp filter: {op}: {source}")]
    Export {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("seccomp cache: {0}")]
    Cache(#[from] crate::error::PathError),
    #[error("seccomp cache {} is writable by other users (mode {mode:o}); it must be 0700 and owned by the user poc runs as", path.display())]
    UnsafeCache { path: PathBuf, mode: u32 },
}

/// A compiled filter: classic BPF instructions and the flags for seccomp(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

impl Filter {
    /// Installs the filter on the calling thread: one seccomp(SECCOMP_SET_MODE_FILTER) syscall, no
    /// allocation, so it is safe in a forked child right before execve. The caller has set
    /// no_new_privs already (or keeps CAP_SYS_ADMIN), as the kernel requires.
    pub fn install(&self) -> Result<(), nix::Error> {
        let prog = libc::sock_fprog {
            // `from_program` keeps programs within BPF_MAXINSNS (4096), so this cannot truncate.
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points at our instructions, which outlive the call; the kernel copies them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                self.flags,
                &prog as *const libc::sock_fprog,
            )
        };
        nix::errno::Errno::result(rc).map(drop)
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// A program the kernel can take: 1 to BPF_MAXINSNS instructions.
    fn new(program: Vec<libc::sock_filter>, flags: libc::c_ulong) -> Option<Filter> {
        (1..=BPF_MAXINSNS)
            .contains(&program.len())
            .then_some(Filter { program, flags })
    }

    /// From instructions as libseccomp exports them (native-endian `struct sock_filter`s).
    fn from_program(bytes: &[u8], flags: libc::c_ulong) -> Option<Filter> {
        Filter::new(instructions(bytes)?, flags)
    }

    fn program_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.program.len() * 8);
        for i in &self.program {
            bytes.extend_from_slice(&i.code.to_ne_bytes());
            bytes.extend_from_slice(&[i.jt, i.jf]);
            bytes.extend_from_slice(&i.k.to_ne_bytes());
        }
        bytes
    }
}

fn instructions(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if !bytes.len().is_multiple_of(INSN) {
        return None;
    }
    let program = bytes.chunks_exact(INSN).map(|i| libc::sock_filter {
        code: u16::from_ne_bytes([i[0], i[1]]),
        jt: i[2],
        jf: i[3],
        k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
    });
    Some(program.collect())
}

/// The kernel's limit on a classic BPF program.
const BPF_MAXINSNS: usize = 4096;

/// Docker's default profile for a container whose process keeps `caps` (its bounding set), in OCI form.
pub fn default_profile(caps: &[Capability]) -> LinuxSeccomp {
    docker::resolve(default::profile(), caps, &docker::Host::current())
}

/// A profile in Docker's JSON format (`--security-opt seccomp=PROFILE.json`), for a container keeping `caps`.
pub fn docker_profile(json: &str, caps: &[Capability]) -> Result<LinuxSeccomp, SeccompError> {
    Ok(docker::resolve(
        docker::parse(json)?,
        caps,
        &docker::Host::current(),
    ))
}

/// The profile compiled to classic BPF with libseccomp, cached in `cache_dir` (created 0700; files
/// 0600, written atomically) under a key hashing the profile, libseccomp's version and the native
/// arch. A cached file that is short or corrupt is compiled again and replaced.
pub fn compile(profile: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter, SeccompError> {
    let flags = filter_flags(profile)?;
    let x32 = kernel_runs_x32();
    let path = cache::path(cache_dir, profile, x32)?;
    if let Some(filter) = cache::load(&path, flags)? {
        return Ok(filter);
    }
    let filter = compile_uncached(&for_this_kernel(profile, x32), flags)?;
    cache::store(&path, &filter)?;
    Ok(filter)
}

/// The profile as this kernel needs it. Most distributions' kernels refuse x32 system calls
/// (Debian's and Ubuntu's unless booted with `syscall.x32=y`); there the filter's x32 section
/// only guards calls that fail anyway, and costs about 70 us of every install (of some 350).
/// Without it, the ENOSYS prologue answers x32 calls as such a kernel would.
/// Only on a cache miss: the cache key records `kernel_runs_x32` instead.
fn for_this_kernel(
    profile: &LinuxSeccomp,
    kernel_runs_x32: bool,
) -> std::borrow::Cow<'_, LinuxSeccomp> {
    let has_x32 = profile
        .architectures()
        .as_ref()
        .is_some_and(|a| a.contains(&Arch::ScmpArchX32));
    if !has_x32 || kernel_runs_x32 {
        return std::borrow::Cow::Borrowed(profile);
    }
    let mut narrowed = profile.clone();
    let arches = profile
        .architectures()
        .iter()
        .flatten()
        .copied()
        .filter(|a| *a != Arch::ScmpArchX32)
        .collect();
    narrowed.set_architectures(Some(arches));
    std::borrow::Cow::Owned(narrowed)
}

/// Whether the kernel runs an x32 getpid (x32 numbers carry bit 30).
fn kernel_runs_x32() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: getpid takes no arguments and changes nothing.
        unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) > 0 }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn compile_uncached(profile: &LinuxSeccomp, flags: libc::c_ulong) -> Result<Filter, SeccompError> {
    let exported = export(&build_context(profile)?)?;
    let mut program = match enosys::newest_named(profile, &filter_arches(profile)) {
        Some(newest) => enosys::prologue(&newest),
        None => Vec::new(),
    };
    let bad = |what: String| SeccompError::Export {
        op: "exported program",
        source: std::io::Error::other(what),
    };
    program.extend(instructions(&exported).ok_or_else(|| {
        bad(format!(
            "{} bytes is not whole instructions",
            exported.len()
        ))
    })?);
    let count = program.len();
    Filter::new(program, flags).ok_or_else(|| {
        bad(format!(
            "{count} instructions: the kernel takes 1 to {BPF_MAXINSNS}"
        ))
    })
}

/// libseccomp's program, through a memfd (`seccomp_export_bpf_mem` is libseccomp 2.6's).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let err = |op| move |source| SeccompError::Export { op, source };
    let memfd =
        nix::sys::memfd::memfd_create(c"poc-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| err("memfd_create")(e.into()))?;
    ctx.export_bpf(memfd.as_fd())
        .map_err(compile_err("exporting BPF"))?;
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    std::io::Seek::rewind(&mut file)
        .and_then(|_| std::io::Read::read_to_end(&mut file, &mut bytes))
        .map_err(err("reading the exported program"))?;
    Ok(bytes)
}

/// The architectures in the filter: the profile's and the native one libseccomp always adds.
fn filter_arches(profile: &LinuxSeccomp) -> Vec<Arch> {
    let mut arches = profile.architectures().clone().unwrap_or_default();
    if let (_, Some(native)) = docker::native_arch() {
        if !arches.contains(&native) {
            arches.push(native);
        }
    }
    arches
}

fn compile_err(op: &str) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError + '_ {
    move |source| SeccompError::Compile {
        op: op.to_string(),
        source,
    }
}

/// libseccomp's view of the profile. Rules whose action is the default are left out (libseccomp
/// refuses them) and so are syscalls this libseccomp does not know, as runc does.
fn build_context(profile: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(compile_err("creating the filter"))?;
    for &arch in profile.architectures().iter().flatten() {
        let arch = scmp_arch(arch);
        let present = ctx
            .is_arch_present(arch)
            .map_err(compile_err("architectures"))?;
        if !present {
            ctx.add_arch(arch)
                .map_err(compile_err("adding an architecture"))?;
        }
    }
    // A binary tree of syscall numbers: a syscall walks log(n) comparisons instead of the whole
    // allowlist. seccomp(2) gains most: to cache which syscalls are always allowed, the kernel runs
    // the filter for every syscall number when installing it (0.3 ms here instead of 1.1 ms).
    ctx.set_ctl_optimize(2)
        .map_err(compile_err("optimization level"))?;
    for call in profile.syscalls().iter().flatten() {
        let act = action(call.action(), call.errno_ret())?;
        if act == default {
            continue;
        }
        for name in call.names() {
            if let Ok(syscall) = ScmpSyscall::from_name(name) {
                add_rule(&mut ctx, act, syscall, call)
                    .map_err(compile_err(&format!("rule for {name}")))?;
            }
        }
    }
    Ok(ctx)
}

/// Conditions on distinct arguments must all hold (one rule); several on the same argument are
/// alternatives (one rule each), the way runc reads the OCI spec.
fn add_rule(
    ctx: &mut ScmpFilterContext,
    act: ScmpAction,
    syscall: ScmpSyscall,
    call: &LinuxSyscall,
) -> Result<(), libseccomp::error::SeccompError> {
    let args = call.args().as_deref().unwrap_or_default();
    if args.is_empty() {
        ctx.add_rule(act, syscall)?;
        return Ok(());
    }
    let conditions: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
    let mut indexes: Vec<usize> = args.iter().map(|a| a.index()).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() == args.len() {
        ctx.add_rule_conditional(act, syscall, &conditions)?;
    } else {
        for condition in conditions {
            ctx.add_rule_conditional(act, syscall, &[condition])?;
        }
    }
    Ok(())
}

fn compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI's value is the mask and valueTwo the value the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                arg.index() as u32,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            )
        }
    };
    ScmpArgCompare::new(arg.index() as u32, op, arg.value())
}

fn action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let errno = errno_ret.unwrap_or(libc::EPERM as u32);
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno as i32),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported(
                "SCMP_ACT_NOTIFY (a seccomp agent)".into(),
            ))
        }
    })
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// The OCI flags as seccomp(2) takes them. Flags that need a listener are refused with NOTIFY.
fn filter_flags(profile: &LinuxSeccomp) -> Result<libc::c_ulong, SeccompError> {
    let mut flags = 0;
    for flag in profile.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::Unsupported(
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (a seccomp agent)".into(),
                ))
            }
        };
    }
    Ok(flags)
}

#[cfg(test)]
mod tests;
