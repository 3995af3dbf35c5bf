//! The exec stub (src/process/exec-stub.c, built by build.rs) in a sealed memfd: container processes
//! exec it just before their command, so none ever executes from poc's own binary (CVE-2019-5736).

use std::os::fd::{FromRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};

use super::ProcessError;

const STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/exec-stub"));

/// memfd_create's MFD_EXEC (Linux 6.3): where `vm.memfd_noexec` is set, memfds must ask to be
/// executable. Older kernels refuse the unknown flag; they need no asking.
const MFD_EXEC: libc::c_uint = 0x10;

/// A fresh sealed copy of the stub: nobody, not even poc, can write to it any more.
pub fn memfd() -> Result<OwnedFd, ProcessError> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let fd = create(flags | MFD_EXEC)
        .or_else(|e| match e {
            nix::Error::EINVAL => create(flags),
            other => Err(other),
        })
        .map_err(ProcessError::Stub)?;
    super::write_all(std::os::fd::AsFd::as_fd(&fd), STUB);
    let len = nix::sys::stat::fstat(&fd)
        .map_err(ProcessError::Stub)?
        .st_size;
    if len != STUB.len() as i64 {
        return Err(ProcessError::Stub(nix::Error::EIO));
    }
    // Execute-only: a process that cannot read what it executes runs undumpable (the kernel's
    // would_dump), so nothing in the container can open its descriptors while the stub runs.
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(0o111))
        .map_err(ProcessError::Stub)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(ProcessError::Stub)?;
    Ok(fd)
}

fn create(flags: libc::c_uint) -> nix::Result<OwnedFd> {
    // SAFETY: memfd_create with a NUL-terminated name; the result is checked and owned below.
    let fd = unsafe { libc::memfd_create(c"poc-exec".as_ptr(), flags) };
    nix::Error::result(fd)?;
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
