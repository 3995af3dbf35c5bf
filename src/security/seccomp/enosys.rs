//! A few BPF instructions put before libseccomp's program: a syscall numbered above every syscall
//! the profile names (on its architecture) fails with ENOSYS instead of the default action.
//! Programs probe new syscalls and fall back on ENOSYS, never on EPERM: with a libseccomp older
//! than the kernel and libc (Debian 12's does not know mseal, statmount, listmount...), the
//! default EPERM would break them. runc adds the same stub to Docker's profile.

use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction};

use libseccomp::ScmpSyscall;

/// x32 syscalls come with the x86_64 audit arch and this bit in their number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGT_K: u16 = 0x25;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
/// Offsets in struct seccomp_data.
const NR: u32 = 0;
const ARCH: u32 = 4;
const RET_ERRNO: u32 = 0x0005_0000;

/// The highest syscall number the profile names, per architecture of the filter (`arches` holds
/// the native one too). None when no stub is wanted: with a default action that lets syscalls
/// through, new syscalls pass anyway.
pub(super) fn newest_named(profile: &LinuxSeccomp, arches: &[Arch]) -> Option<Vec<(Arch, u32)>> {
    if matches!(
        profile.default_action(),
        LinuxSeccompAction::ScmpActAllow | LinuxSeccompAction::ScmpActLog
    ) {
        return None;
    }
    let names: Vec<&str> = profile
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|s| s.names().iter().map(String::as_str))
        .collect();
    let newest = arches
        .iter()
        .filter_map(|&arch| {
            let numbers = names.iter().filter_map(|name| {
                let nr = ScmpSyscall::from_name_by_arch(name, super::scmp_arch(arch)).ok()?;
                // Negative numbers are libseccomp's names for syscalls this arch does not have.
                u32::try_from(nr.as_raw_syscall()).ok()
            });
            Some((arch, numbers.max()?))
        })
        .collect();
    Some(newest)
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: usize, jf: usize) -> libc::sock_filter {
    libc::sock_filter {
        code,
        // Blocks are a handful of instructions; the prologue stays far below 255.
        jt: jt as u8,
        jf: jf as u8,
        k,
    }
}

/// The stub, ending where libseccomp's program starts (which loads the arch again).
pub(super) fn prologue(newest: &[(Arch, u32)]) -> Vec<libc::sock_filter> {
    // x32 shares x86_64's audit arch: one block checks both ranges.
    let mut blocks: Vec<(u32, Option<u32>, Option<u32>)> = Vec::new();
    for &(arch, nr) in newest {
        let (audit, x32) = match arch {
            Arch::ScmpArchX32 => (Arch::ScmpArchX86_64 as u32, true),
            other => (other as u32, false),
        };
        let pos = blocks.iter().position(|b| b.0 == audit).unwrap_or_else(|| {
            blocks.push((audit, None, None));
            blocks.len() - 1
        });
        if x32 {
            blocks[pos].2 = Some(nr);
        } else {
            blocks[pos].1 = Some(nr);
        }
    }
    let mut code: Vec<libc::sock_filter> = Vec::new();
    // Jump targets are fixed up once the length is known: (index, ENOSYS on true?).
    let mut checks = Vec::new();
    for (audit, native, x32) in blocks {
        code.push(stmt(LD_W_ABS, ARCH));
        let size = if x32.is_some() { 4 } else { 2 };
        code.push(jump(JMP_JEQ_K, audit, 0, size));
        code.push(stmt(LD_W_ABS, NR));
        if let Some(x32_newest) = x32 {
            code.push(jump(JMP_JGE_K, X32_SYSCALL_BIT, 1, 0));
            checks.push(code.len());
            code.push(jump(JMP_JGT_K, native.unwrap_or(X32_SYSCALL_BIT - 1), 0, 0));
            checks.push(code.len());
            code.push(jump(JMP_JGT_K, x32_newest, 0, 0));
        } else {
            checks.push(code.len());
            code.push(jump(JMP_JGT_K, native.unwrap_or(u32::MAX), 0, 0));
        }
    }
    // No block matched: skip the ENOSYS return.
    code.push(stmt(JMP_JA, 1));
    let enosys = code.len();
    code.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    let main = code.len();
    for i in checks {
        code[i].jt = (enosys - i - 1) as u8;
        code[i].jf = (main - i - 1) as u8;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prologue_jumps_stay_inside_it() {
        let code = prologue(&[
            (Arch::ScmpArchX86_64, 456),
            (Arch::ScmpArchX86, 456),
            (Arch::ScmpArchX32, X32_SYSCALL_BIT + 456),
        ]);
        // Two blocks (x86_64 with x32, i386), the skip and the return.
        assert_eq!(code.len(), 6 + 4 + 2);
        for (i, insn) in code.iter().enumerate() {
            if insn.code & 0x07 == 0x05 && insn.code != JMP_JA {
                assert!(i + 1 + usize::from(insn.jt) <= code.len());
                assert!(i + 1 + usize::from(insn.jf) <= code.len());
            }
        }
        assert_eq!(code[code.len() - 1].k, RET_ERRNO | 38);
    }
}
