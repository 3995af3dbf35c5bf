//! dockerd started by the test on a containerd of its own (both stopped by their PIDs), the
//! runtime under test added by name; owns only what is under its OciEnv.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::containerd::Containerd;
use super::image::busybox_rootfs_tar;
use super::{ok, output_within, require, runtime_under_test, skipped, Daemon, OciEnv, IMAGE};

/// dockerd started by the test on a containerd of its own (as Debian's docker.service runs it on
/// the system's), with private data and exec roots, socket, pidfile and config; no bridge, no
/// iptables, cgroupfs under the test's parent, and the runtime added as [`DOCKER_RUNTIME`].
pub struct Docker {
    dockerd: Option<Daemon>,
    pub containerd: Containerd,
}

/// The name the fixture's runtime is registered with (`--add-runtime NAME=PATH`).
pub const DOCKER_RUNTIME: &str = "test-runtime";

impl Docker {
    /// dockerd with the busybox image imported (None when the client tests are skipped).
    pub fn start() -> Option<Self> {
        Docker::start_with_runtime(&runtime_under_test())
    }

    /// dockerd with `runtime` added as [`DOCKER_RUNTIME`] (None when the tests are skipped).
    pub fn start_with_runtime(runtime: &Path) -> Option<Self> {
        if skipped() {
            return None;
        }
        require("/usr/sbin/dockerd", "docker.io");
        require("/usr/bin/docker", "docker.io");
        let containerd = Containerd::start_in(OciEnv::new("docker", runtime));
        let env = &containerd.env;
        // Without a key path dockerd 20.10 writes /etc/docker/key.json.
        let config = serde_json::json!({ "deprecated-key-path": env.path("docker-key.json") });
        std::fs::write(env.path("daemon.json"), config.to_string()).unwrap();
        let mut cmd = Command::new("/usr/sbin/dockerd");
        cmd.arg("--config-file")
            .arg(env.path("daemon.json"))
            .arg("--containerd")
            .arg(containerd.socket())
            .arg("--data-root")
            .arg(env.path("docker/data"))
            .arg("--exec-root")
            .arg(env.path("docker/exec"))
            .arg("-H")
            .arg(format!("unix://{}", env.path("docker.sock").display()))
            .arg("--pidfile")
            .arg(env.path("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent={}", env.cgroup_parent))
            .arg("--add-runtime")
            .arg(format!("{DOCKER_RUNTIME}={}", env.runtime.display()));
        let ping = {
            let socket = env.path("docker.sock");
            let config = env.path("docker-cli");
            move || {
                Command::new("/usr/bin/docker")
                    .arg("-H")
                    .arg(format!("unix://{}", socket.display()))
                    .arg("version")
                    .env("DOCKER_CONFIG", &config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }
        };
        let dockerd = Daemon::start("dockerd", cmd, env.path("dockerd.log"), ping);
        let docker = Docker {
            dockerd: Some(dockerd),
            containerd,
        };
        let rootfs = docker.containerd.env.path("rootfs.tar");
        busybox_rootfs_tar(&rootfs);
        ok(
            &docker.docker(&["import", rootfs.to_str().unwrap(), IMAGE]),
            "docker import",
        );
        Some(docker)
    }

    pub fn env(&self) -> &OciEnv {
        &self.containerd.env
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let env = self.env();
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", env.path("docker.sock").display()))
            .args(args)
            .env("DOCKER_CONFIG", env.path("docker-cli"));
        cmd
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        output_within(&mut self.command(args), None)
    }

    /// `docker run --runtime test-runtime --network none ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut full = vec!["run", "--runtime", DOCKER_RUNTIME, "--network", "none"];
        full.extend_from_slice(args);
        self.docker(&full)
    }

    /// `docker run -d ... IMAGE COMMAND...`: the container's id.
    pub fn run_detached(&self, flags: &[&str], command: &[&str]) -> String {
        let mut args = vec!["-d"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(command);
        ok(&self.run(&args), "docker run -d").trim().to_string()
    }

    pub fn inspect(&self, container: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "--format", format, container]);
        ok(&out, "docker inspect").trim().to_string()
    }

    /// Where the shim has the runtime keep its state: dockerd 20.10 passes every runtime
    /// `--root EXEC_ROOT/runtime-runc/moby`, whatever its name.
    pub fn runtime_root(&self) -> PathBuf {
        self.env().path("docker/exec/runtime-runc")
    }

    /// No container, and nothing left by the runtime or the shims.
    pub fn assert_clean(&self) {
        let left = ok(&self.docker(&["ps", "-aq"]), "docker ps");
        assert_eq!(left.trim(), "", "containers left");
        let daemons = [self.containerd.pid(), self.dockerd.as_ref().unwrap().pid()];
        // dockerd keeps its data root bind-mounted on itself while it runs.
        self.containerd.assert_runtime_clean(
            &self.runtime_root(),
            &[self.env().path("docker/data")],
            &daemons,
        );
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        // Killed first, the containers do not hold dockerd's shutdown for their stop timeouts.
        self.containerd.env.kill_cgroup_processes();
        self.dockerd.take();
    }
}
