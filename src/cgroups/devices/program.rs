//! The cgroup v2 device program of one container: its rules compiled into BPF instructions, as
//! runc's devicefilter does, then loaded and attached with bpf(2). No compiler, map or object file.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{DevKey, Table, DEV_ANY};

/// At most this many exceptions. An exception is at most 10 instructions, so the largest program
/// (about 5100) is far below the verifier's limit since kernel 5.2 (a million); before 5.2 the limit
/// was 4096, and such a program would be refused at load, and the container with it.
pub const MAX_EXCEPTIONS: usize = 512;

/// One BPF instruction, as `struct bpf_insn` (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Insn {
    pub code: u8,
    /// dst_reg and src_reg, four bits each, in the order C lays out the bitfields.
    regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        let regs = if cfg!(target_endian = "little") {
            dst | src << 4
        } else {
            dst << 4 | src
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    #[cfg(test)]
    pub fn dst(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    #[cfg(test)]
    pub fn src(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }
}

/// The opcodes the program uses: class | operation | source (BPF_K an immediate, BPF_X a register).
pub mod op {
    /// `wDST = *(u32 *)(rSRC + off)`
    pub const LOAD_U32: u8 = 0x61;
    /// `wDST = imm` (32-bit: the upper half is zeroed)
    pub const MOV32_IMM: u8 = 0xb4;
    /// `wDST = wSRC`
    pub const MOV32_REG: u8 = 0xbc;
    /// `wDST &= imm`
    pub const AND32_IMM: u8 = 0x54;
    /// `wDST >>= imm`
    pub const RSH32_IMM: u8 = 0x74;
    /// `rDST = imm`
    pub const MOV64_IMM: u8 = 0xb7;
    /// `if rDST == imm goto +off`
    pub const JEQ_IMM: u8 = 0x15;
    /// `if rDST != imm goto +off`
    pub const JNE_IMM: u8 = 0x55;
    /// `if rDST != rSRC goto +off`
    pub const JNE_REG: u8 = 0x5d;
    /// return r0
    pub const EXIT: u8 = 0x95;
}

/// Registers: r1 holds the context (struct bpf_cgroup_dev_ctx) on entry, r0 the verdict on exit.
const R0: u8 = 0;
const CTX: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 6;

/// A jump to the end of the current block, its offset filled in when the block is complete.
const TO_NEXT: i16 = i16::MIN;

/// The program for `table`. Each exception is a block that falls through to the next unless it
/// names the device asked for; then, with a default of deny, it allows if it grants every access
/// asked for (O_RDWR asks for two at once), and with a default of allow, it refuses if it refuses
/// any of them. No block deciding, the default does. As cgroup v1 decides.
pub fn instructions(table: &Table) -> Vec<Insn> {
    let i = Insn::new;
    // bpf_cgroup_dev_ctx: access_type (access << 16 | device type), major, minor.
    let mut program = vec![
        i(op::LOAD_U32, TYPE, CTX, 0, 0),
        i(op::MOV32_REG, ACCESS, TYPE, 0, 0),
        i(op::AND32_IMM, TYPE, 0, 0, 0xffff),
        i(op::RSH32_IMM, ACCESS, 0, 0, 16),
        i(op::LOAD_U32, MAJOR, CTX, 4, 0),
        i(op::LOAD_U32, MINOR, CTX, 8, 0),
    ];
    for (device, bits) in &table.exceptions {
        program.extend(exception(*device, *bits, table.default_allow));
    }
    program.push(i(op::MOV64_IMM, R0, 0, 0, table.default_allow.into()));
    program.push(i(op::EXIT, 0, 0, 0, 0));
    program
}

fn exception(device: DevKey, bits: u32, default_allow: bool) -> Vec<Insn> {
    let i = Insn::new;
    // The kind is 1 or 2; the numbers are compared as the u32 they are, through a register.
    let mut block = vec![i(op::JNE_IMM, TYPE, 0, TO_NEXT, device.kind as i32)];
    for (register, number) in [(MAJOR, device.major), (MINOR, device.minor)] {
        if number != DEV_ANY {
            block.push(i(op::MOV32_IMM, SCRATCH, 0, 0, number as i32));
            block.push(i(op::JNE_REG, register, SCRATCH, TO_NEXT, 0));
        }
    }
    block.push(i(op::MOV32_REG, SCRATCH, ACCESS, 0, 0));
    if default_allow {
        // Refused if the access asked for shares a bit with the refused ones.
        block.push(i(op::AND32_IMM, SCRATCH, 0, 0, bits as i32));
        block.push(i(op::JEQ_IMM, SCRATCH, 0, TO_NEXT, 0));
        block.push(i(op::MOV64_IMM, R0, 0, 0, 0));
    } else {
        // Allowed if no bit of the access asked for is outside the allowed ones.
        block.push(i(op::AND32_IMM, SCRATCH, 0, 0, !bits as i32));
        block.push(i(op::JNE_IMM, SCRATCH, 0, TO_NEXT, 0));
        block.push(i(op::MOV64_IMM, R0, 0, 0, 1));
    }
    block.push(i(op::EXIT, 0, 0, 0, 0));
    let len = block.len();
    for (at, insn) in block.iter_mut().enumerate() {
        if insn.off == TO_NEXT {
            // Offsets count from the instruction after the jump.
            insn.off = (len - at - 1) as i16;
        }
    }
    block
}

/// What failed while loading, and how.
pub type LoadError = (&'static str, String);

/// Its name in `bpftool prog` and the kernel's messages.
const PROGRAM_NAME: &str = "poc_devices";

/// BPF_PROG_LOAD of a device program; if that fails, again with the verifier's log, which says why.
pub fn load(instructions: &[Insn], license: &CStr) -> Result<OwnedFd, LoadError> {
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

/// bpf(BPF_PROG_ATTACH) of a device program to a cgroup: the attachment stays with the cgroup
/// after poc exits. Not a bpf_link (BPF_LINK_CREATE, what aya attaches with from kernel 5.7),
/// which detaches when its last descriptor closes, i.e. when poc exits. BPF_F_ALLOW_MULTI lets the
/// programs of the cgroups above (systemd's) still run; the kernel allows an access only if every
/// one of them allows it.
pub fn attach(program: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> std::io::Result<()> {
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
