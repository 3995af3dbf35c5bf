//! Builds `poc trace`'s BPF program in bpf/: C, compiled by clang for the bpf target with BTF
//! (CO-RE), against a vmlinux.h dumped from the build machine's kernel BTF. The object is embedded
//! in the binary; CO-RE relocations fit it to the running kernel at load time.
//! Needs clang, llvm-strip, bpftool and libbpf's headers: `scripts/setup.sh --deps` installs them.
//! Also builds the exec stub (src/process/exec-stub.c), a tiny static program without libc that
//! container processes exec from a sealed memfd right before their command.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each program and the header it shares with Rust.
const PROGRAMS: [(&str, &str); 1] = [("trace", "trace.h")];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=POC_VMLINUX_BTF");
    println!("cargo:rerun-if-changed=src/process/exec-stub.c");
    build_exec_stub(&out);
    let btf = std::env::var("POC_VMLINUX_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    let dump = run(
        Command::new(tool("bpftool")).args(["btf", "dump", "file", &btf, "format", "c"]),
        "bpftool (package bpftool) dumping the kernel's BTF",
    );
    std::fs::write(out.join("vmlinux.h"), dump).expect("write vmlinux.h");
    let arch = target_arch_define();
    for (name, header) in PROGRAMS {
        compile(&out, name, header, &arch);
    }
}

/// bpf_tracing.h reads registers by architecture: the target's, in libbpf's spelling.
fn target_arch_define() -> String {
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let libbpf = match arch.as_str() {
        "x86_64" | "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv",
        "s390x" => "s390",
        "powerpc64" => "powerpc",
        "loongarch64" => "loongarch",
        "mips" | "mips64" => "mips",
        other => panic!("no libbpf architecture name known for target {other}"),
    };
    format!("-D__TARGET_ARCH_{libbpf}")
}

fn compile(out: &Path, name: &str, header: &str, arch: &str) {
    let source = format!("bpf/{name}.bpf.c");
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-changed=bpf/{header}");
    let object = out.join(format!("{name}.bpf.o"));
    run(
        Command::new(tool("clang"))
            .args(["-target", "bpf", "-g", "-O2", arch, "-Wall"])
            .arg("-I")
            .arg(out)
            .args(["-I", "bpf", "-c", &source, "-o"])
            .arg(&object),
        &format!("clang (packages clang, libbpf-dev) compiling {source}"),
    );
    // Debug info out, BTF (which CO-RE and BTF-defined maps need) kept.
    run(
        Command::new(tool("llvm-strip")).arg("-g").arg(&object),
        "llvm-strip (package llvm)",
    );
}

/// No libc, no start files, no unwind tables or build id: a few hundred bytes of code.
fn build_exec_stub(out: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    run(
        Command::new(cc)
            .args(["-static", "-no-pie", "-nostdlib", "-Os", "-Wall"])
            .args(["-fno-stack-protector", "-fno-asynchronous-unwind-tables"])
            .args(["-Wl,--build-id=none", "-s", "-o"])
            .arg(out.join("exec-stub"))
            .arg("src/process/exec-stub.c"),
        "cc (package gcc) building src/process/exec-stub.c",
    );
}

/// A tool by name, also from /usr/sbin (bpftool lives there, and PATH may not have it).
fn tool(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if Command::new(name).arg("--version").output().is_err() && sbin.exists() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}; run scripts/setup.sh --deps"));
    if !out.status.success() {
        panic!("{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    out.stdout
}
