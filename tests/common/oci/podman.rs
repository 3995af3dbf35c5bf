//! podman with private storage, configuration and temporary files, the runtime under test given
//! by path; owns only what is under its OciEnv.

use std::path::Path;
use std::process::{Command, Output};

use super::image::busybox_rootfs_tar;
use super::{ok, output_within, require, runtime_under_test, skipped, OciEnv, IMAGE};

/// podman with private storage (`--root`, `--runroot`), its own containers.conf and temporary
/// directory, the runtime by absolute path, and the busybox image imported as [`IMAGE`].
pub struct Podman {
    pub env: OciEnv,
}

impl Podman {
    /// None when the client tests are skipped.
    pub fn start() -> Option<Self> {
        Podman::start_with_runtime(&runtime_under_test())
    }

    /// podman giving its containers to `runtime` (None when the client tests are skipped).
    pub fn start_with_runtime(runtime: &Path) -> Option<Self> {
        if skipped() {
            return None;
        }
        require("/usr/bin/podman", "podman");
        require("/usr/bin/conmon", "conmon");
        let mut env = OciEnv::new("podman", runtime);
        // podman gives the runtime no --root and a cleaned environment (conmon too), so poc's
        // state root and store are set by a wrapper podman takes as the runtime.
        env.runtime = env.wrapper_with_runtime_vars();
        // The VM has no CAP_SYS_RESOURCE and a hard nofile of 20000 (podman's defaults are higher),
        // no systemd (cgroupfs), and journald is not there for events. lock_type "file" and
        // tmp_dir keep podman's locks and per-boot files in this test's directory, not in
        // /dev/shm and /run/libpod.
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             netns = \"none\"\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n\
             lock_type = \"file\"\n\
             tmp_dir = \"{}\"\n\
             volume_path = \"{}\"\n",
            env.path("tmp").display(),
            env.path("volumes").display(),
        );
        std::fs::write(env.path("containers.conf"), conf).unwrap();
        std::fs::create_dir_all(env.path("tmpfiles")).unwrap();
        let podman = Podman { env };
        let rootfs = podman.env.path("rootfs.tar");
        busybox_rootfs_tar(&rootfs);
        ok(
            &podman.podman(&["import", "--quiet", rootfs.to_str().unwrap(), IMAGE]),
            "podman import",
        );
        Some(podman)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/podman");
        cmd.arg("--root")
            .arg(self.env.path("root"))
            .arg("--runroot")
            .arg(self.env.path("runroot"))
            .arg("--runtime")
            .arg(&self.env.runtime)
            .arg("--cgroup-manager=cgroupfs")
            .args(args)
            .env("CONTAINERS_CONF", self.env.path("containers.conf"))
            .env("TMPDIR", self.env.path("tmpfiles"));
        cmd
    }

    pub fn podman(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), None)
    }

    /// `podman run --cgroup-parent PARENT ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["run", "--cgroup-parent", &self.env.cgroup_parent];
        full.extend_from_slice(args);
        self.podman(&full)
    }

    /// `podman run -d ... IMAGE COMMAND...`: the container's id.
    pub fn run_detached(&self, flags: &[&str], command: &[&str]) -> String {
        let mut args = vec!["-d"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(command);
        ok(&self.run(&args), "podman run -d").trim().to_string()
    }

    /// The host PID of the container's first process.
    pub fn pid_of(&self, container: &str) -> i32 {
        let out = self.podman(&["inspect", "--format", "{{.State.Pid}}", container]);
        ok(&out, "podman inspect").trim().parse().unwrap()
    }

    pub fn inspect(&self, container: &str, format: &str) -> String {
        let out = self.podman(&["inspect", "--format", format, container]);
        ok(&out, "podman inspect").trim().to_string()
    }

    /// The ids of every container this podman created, from its event log.
    pub fn container_ids(&self) -> Vec<String> {
        let log =
            std::fs::read_to_string(self.env.path("tmp/events/events.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["Type"] == "container" && e["Status"] == "create")
            .filter_map(|e| e["ID"].as_str().map(String::from))
            .collect()
    }

    /// No container, and nothing of one left by the runtime or conmon.
    pub fn assert_clean(&self) {
        let left = ok(&self.podman(&["ps", "-aq"]), "podman ps");
        assert_eq!(left.trim(), "", "containers left");
        // The storage driver keeps its home bind-mounted on itself while podman's store exists;
        // conmon's cgroup is podman's, made once per parent.
        self.env
            .assert_clean(&["conmon"], &[self.env.path("root/overlay")], &[]);
        // podman passes the runtime no --root (and does not pass --runtime-flag on to the
        // cleanup it runs when a container exits), so the runtime keeps its state in its default
        // root: ask the runtime itself about each container.
        let ids = self.container_ids();
        assert!(!ids.is_empty(), "podman's event log names no container");
        for id in ids {
            let out = output_within(
                Command::new(runtime_under_test())
                    .args(["state", &id])
                    .envs(self.env.runtime_vars()),
                None,
            );
            assert!(
                !out.status.success(),
                "the runtime still knows container {id}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // After a failure: have podman delete what is left, so that the runtime's default root
        // keeps nothing of this test's containers.
        if std::thread::panicking() {
            let _ = output_within(&mut self.command(&["rm", "-a", "-f", "-t", "0"]), None);
        }
    }
}
