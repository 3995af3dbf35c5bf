//! containerd started by the test (and stopped by its PID), `ctr` talking to it, the runtime under
//! test given to each `ctr run`; owns only what is under its OciEnv.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::image::{busybox_rootfs_tar, oci_archive};
use super::{
    ok, output_within, require, runtime_under_test, skipped, wait_for, Daemon, OciEnv, IMAGE,
};

/// containerd started by the test with its own root, state, sockets and config (no CRI plugin),
/// and `ctr` talking to it; the runtime is given to each `ctr run` with `--runc-binary`.
pub struct Containerd {
    daemon: Option<Daemon>,
    pub env: OciEnv,
}

impl Containerd {
    /// containerd with the busybox image imported (None when the client tests are skipped).
    pub fn start() -> Option<Self> {
        Containerd::start_with_runtime(&runtime_under_test())
    }

    /// containerd whose `ctr run`s give their tasks to `runtime`, with the image imported.
    pub fn start_with_runtime(runtime: &Path) -> Option<Self> {
        if skipped() {
            return None;
        }
        let containerd = Containerd::start_in(OciEnv::new("containerd", runtime));
        let rootfs = containerd.env.path("rootfs.tar");
        let archive = containerd.env.path("image.oci.tar");
        busybox_rootfs_tar(&rootfs);
        oci_archive(&rootfs, IMAGE, &archive);
        ok(
            &containerd.ctr(&["image", "import", archive.to_str().unwrap()]),
            "ctr image import",
        );
        Some(containerd)
    }

    /// containerd alone, in `env` (dockerd's uses this).
    pub fn start_in(env: OciEnv) -> Self {
        require("/usr/bin/containerd", "containerd");
        require("/usr/bin/ctr", "containerd");
        require("/usr/bin/containerd-shim-runc-v2", "containerd");
        let config = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             temp = \"{tmp}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.snapshotter.v1.btrfs\", \
             \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
             \"io.containerd.snapshotter.v1.aufs\", \"io.containerd.tracing.processor.v1.otlp\", \
             \"io.containerd.internal.v1.tracing\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = env.path("containerd/root").display(),
            state = env.path("containerd/state").display(),
            tmp = env.path("containerd/tmp").display(),
            sock = env.path("containerd.sock").display(),
            opt = env.path("containerd/opt").display(),
        );
        std::fs::create_dir_all(env.path("containerd/tmp")).unwrap();
        std::fs::write(env.path("containerd.toml"), config).unwrap();
        let mut cmd = Command::new("/usr/bin/containerd");
        // The shims it starts, and the runtime they call, inherit its environment.
        cmd.arg("--config")
            .arg(env.path("containerd.toml"))
            .envs(env.runtime_vars());
        let socket = env.path("containerd.sock");
        let daemon = Daemon::start("containerd", cmd, env.path("containerd.log"), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        Containerd {
            daemon: Some(daemon),
            env,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.env.path("containerd.sock")
    }

    pub fn pid(&self) -> i32 {
        self.daemon.as_ref().unwrap().pid()
    }

    /// The runtime's state directory, given to each `ctr run` with `--runc-root`.
    pub fn runtime_root(&self) -> PathBuf {
        self.env.path("runtime-root")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/ctr");
        cmd.arg("--address").arg(self.socket()).args(args);
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), None)
    }

    /// `ctr run FLAGS IMAGE ID COMMAND...` through the fixture's runtime, in the cgroup
    /// PARENT/ID, with its state and fifos in this test's directory.
    pub fn run(&self, flags: &[&str], id: &str, command: &[&str]) -> Output {
        output_within(&mut self.run_command(flags, id, command), None)
    }

    pub fn run_command(&self, flags: &[&str], id: &str, command: &[&str]) -> Command {
        let mut cmd = self.command(&["run", "--runc-binary"]);
        cmd.arg(&self.env.runtime)
            .arg("--runc-root")
            .arg(self.runtime_root())
            .arg("--fifo-dir")
            .arg(self.env.path("fifo"))
            .arg("--cgroup")
            .arg(format!("{}/{id}", self.env.cgroup_parent))
            .args(flags)
            .arg(IMAGE)
            .arg(id)
            .args(command);
        cmd
    }

    /// `ctr task exec --exec-id EXEC ID COMMAND...`.
    pub fn exec(&self, id: &str, exec_id: &str, command: &[&str]) -> Output {
        let fifos = self.env.path("fifo").display().to_string();
        let mut args = vec![
            "task",
            "exec",
            "--fifo-dir",
            &fifos,
            "--exec-id",
            exec_id,
            id,
        ];
        args.extend_from_slice(command);
        self.ctr(&args)
    }

    /// The task's host PID and status, from `ctr task ls`.
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let out = self.ctr(&["task", "ls"]);
        ok(&out, "ctr task ls").lines().skip(1).find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            (fields.first() == Some(&id)).then(|| (fields[1].parse().unwrap(), fields[2].into()))
        })
    }

    /// The shims' task directories (a shim lives as long as its task's directory).
    fn task_dirs(&self) -> Vec<PathBuf> {
        let tasks = self
            .env
            .path("containerd/state/io.containerd.runtime.v2.task");
        std::fs::read_dir(tasks)
            .map(|namespaces| {
                namespaces
                    .flatten()
                    .filter_map(|ns| std::fs::read_dir(ns.path()).ok())
                    .flat_map(|t| t.flatten().map(|e| e.path()).collect::<Vec<_>>())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// No container, task or shim left, and nothing left by the runtime.
    pub fn assert_clean(&self) {
        let left = ok(&self.ctr(&["container", "ls", "-q"]), "ctr container ls");
        assert_eq!(left.trim(), "", "containers left");
        self.assert_runtime_clean(&self.runtime_root(), &[], &[self.pid()]);
    }

    pub fn assert_runtime_clean(
        &self,
        runtime_root: &Path,
        mounts_kept: &[PathBuf],
        daemons: &[i32],
    ) {
        wait_for("the shims' task directories to go", || {
            self.task_dirs().is_empty().then_some(())
        });
        self.env.assert_clean(&[], mounts_kept, daemons);
        // The shim gives the runtime `--root RUNTIME_ROOT/<namespace>`: files at the top of that
        // (poc's events journal, a lock) may stay, per-container state may not.
        for namespace in std::fs::read_dir(runtime_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            self.env.assert_no_runtime_state(&namespace.path());
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // After a failure: the containers first, then their shims, by the PIDs they recorded
        // (each checked to be a shim of this containerd: its command line names the socket).
        self.env.kill_cgroup_processes();
        let socket = self.socket().display().to_string();
        for task in self.task_dirs() {
            let pid = std::fs::read_to_string(task.join("shim.pid")).unwrap_or_default();
            let Ok(pid) = pid.trim().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&socket) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        self.daemon.take();
    }
}
