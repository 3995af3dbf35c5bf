//! Builds the exec stub (src/process/exec-stub.c), a tiny static program without libc that
//! container processes exec from a sealed memfd right before their command: needs only cc.
//! With the `trace` feature (the default), also `poc trace`'s BPF programs (bpf/trace.bpf.c): C,
//! compiled by clang for the bpf target with BTF (CO-RE), against a vmlinux.h dumped from the
//! build machine's kernel BTF (or POC_VMLINUX_BTF's file). The object is embedded in the binary;
//! CO-RE relocations fit it to the running kernel at load time. Needs clang, llvm-strip, bpftool
//! and libbpf's headers: `scripts/setup.sh --deps` installs them.
//! A missing tool fails the build with one line that names its Debian package.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=src/process/exec-stub.c");
    build_exec_stub(&out);
    if std::env::var_os("CARGO_FEATURE_TRACE").is_some() {
        build_trace(&out);
    }
}

/// No libc, no start files, no unwind tables or build id: a few hundred bytes of code.
fn build_exec_stub(out: &Path) {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let package = "gcc";
    run(
        Command::new(&cc)
            .args(["-static", "-no-pie", "-nostdlib", "-Os", "-Wall"])
            .args(["-fno-stack-protector", "-fno-asynchronous-unwind-tables"])
            .args(["-Wl,--build-id=none", "-s", "-o"])
            .arg(out.join("exec-stub"))
            .arg("src/process/exec-stub.c"),
        Tool { name: &cc, package },
        "building src/process/exec-stub.c",
    );
}

fn build_trace(out: &Path) {
    println!("cargo:rerun-if-env-changed=POC_VMLINUX_BTF");
    println!("cargo:rerun-if-changed=bpf/trace.bpf.c");
    println!("cargo:rerun-if-changed=bpf/trace.h");
    let arch = target_arch_define();
    let btf = std::env::var("POC_VMLINUX_BTF").unwrap_or_else(|_| "/sys/kernel/btf/vmlinux".into());
    if !Path::new(&btf).exists() {
        fail(&format!(
            "{btf} is missing: poc trace is built against a kernel's BTF; set POC_VMLINUX_BTF to \
             a vmlinux with BTF, or build without it (cargo build --no-default-features)"
        ));
    }
    let bpftool = Tool::new("bpftool", "bpftool");
    let dump = run(
        Command::new(bpftool.path()).args(["btf", "dump", "file", &btf, "format", "c"]),
        bpftool,
        "dumping the kernel's BTF",
    );
    if let Err(e) = std::fs::write(out.join("vmlinux.h"), dump) {
        fail(&format!("writing {}: {e}", out.join("vmlinux.h").display()));
    }
    let object = out.join("trace.bpf.o");
    let clang = Tool::new("clang", "clang");
    let compiled = Command::new(clang.path())
        .args(["-target", "bpf", "-g", "-O2", &arch, "-Wall"])
        .arg("-I")
        .arg(out)
        .args(["-I", "bpf", "-c", "bpf/trace.bpf.c", "-o"])
        .arg(&object)
        .output();
    if let Ok(output) = &compiled {
        if String::from_utf8_lossy(&output.stderr).contains("bpf/bpf_helpers.h' file not found") {
            fail("libbpf's headers (bpf/bpf_helpers.h) are missing: install the Debian package libbpf-dev");
        }
    }
    checked(compiled, clang, "compiling bpf/trace.bpf.c");
    // Debug info out, BTF (which CO-RE and BTF-defined maps need) kept.
    let strip = Tool::new("llvm-strip", "llvm");
    run(
        Command::new(strip.path()).arg("-g").arg(&object),
        strip,
        "stripping trace.bpf.o",
    );
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
        other => fail(&format!(
            "poc trace: no libbpf architecture name known for target {other}; build with \
             --no-default-features"
        )),
    };
    format!("-D__TARGET_ARCH_{libbpf}")
}

/// A build tool and the Debian package that has it.
#[derive(Clone, Copy)]
struct Tool<'a> {
    name: &'a str,
    package: &'a str,
}

impl<'a> Tool<'a> {
    fn new(name: &'a str, package: &'a str) -> Self {
        Tool { name, package }
    }

    /// By name, also from /usr/sbin (bpftool lives there, and PATH may not have it).
    fn path(&self) -> PathBuf {
        let sbin = Path::new("/usr/sbin").join(self.name);
        if Command::new(self.name).arg("--version").output().is_err() && sbin.exists() {
            sbin
        } else {
            PathBuf::from(self.name)
        }
    }
}

fn run(cmd: &mut Command, tool: Tool, what: &str) -> Vec<u8> {
    checked(cmd.output(), tool, what)
}

fn checked(output: std::io::Result<std::process::Output>, tool: Tool, what: &str) -> Vec<u8> {
    let output = match output {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(&format!(
            "{} is missing ({what}): install the Debian package {} (scripts/setup.sh --deps){}",
            tool.name,
            tool.package,
            if tool.package == "gcc" {
                ""
            } else {
                ", or build without poc trace: cargo build --no-default-features"
            }
        )),
        Err(e) => fail(&format!("{} ({what}): {e}", tool.name)),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        fail(&format!("{} failed {what}:\n{stderr}", tool.name));
    }
    output.stdout
}

/// Ends the build with `message` and no backtrace: cargo shows its first line as a warning above
/// the failure, and the rest (a tool's own errors) under the build script's stderr.
fn fail(message: &str) -> ! {
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    println!("cargo:warning={first}");
    if !rest.is_empty() {
        eprintln!("{message}");
    }
    std::process::exit(1);
}
