//! The peers that are clients of a manager: a dockerd of the bench's own, and podman with private
//! storage and configuration. Both keep everything under the bench's work directory (and say which
//! directories outside it their tools make, so the bench removes them if they were absent).
//! Owns: the bench's dockerd process (stopped by its PID) and podman's files.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::measure;
use super::peers::find_program;
use super::{fail, Bench, Result};

/// A dockerd of the bench's own (data, exec root, socket, cgroup parent under the bench's), with
/// no bridge and no iptables; stopped by its PID.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    config: PathBuf,
}

impl Daemon {
    pub fn start(bench: &mut Bench) -> Result<Self> {
        let dir = bench.dir("docker")?;
        // dockerd and its containerd make these wherever their roots are.
        bench.note_foreign_dir("/run/docker", false);
        bench.note_foreign_dir("/run/containerd", false);
        bench.note_foreign_dir("/etc/docker", false);
        let socket = dir.join("docker.sock");
        let daemon_json = dir.join("daemon.json");
        let key = dir.join("key.json");
        std::fs::write(
            &daemon_json,
            serde_json::json!({ "deprecated-key-path": key }).to_string(),
        )
        .map_err(|e| fail(format!("daemon.json: {e}")))?;
        let log = std::fs::File::create(dir.join("dockerd.log"))
            .map_err(|e| fail(format!("dockerd.log: {e}")))?;
        let child = Command::new(find_program("dockerd").unwrap_or_else(|| "dockerd".into()))
            .arg("--config-file")
            .arg(&daemon_json)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent={}/docker", bench.cgroup_parent))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| fail(format!("cannot start dockerd: {e}")))?;
        let mut daemon = Daemon {
            child,
            socket,
            config: dir.join("client"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            super::check_interrupted().inspect_err(|_| daemon.stop())?;
            if measure::quiet(daemon.client().arg("version")).is_ok_and(|s| s.success()) {
                return Ok(daemon);
            }
            if Instant::now() > deadline || daemon.child.try_wait().ok().flatten().is_some() {
                daemon.stop();
                return Err(fail(format!(
                    "dockerd did not start; its log: {}",
                    dir.join("dockerd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn client(&self) -> Command {
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", &self.config);
        cmd
    }

    pub fn stop(&mut self) {
        if let Ok(out) = self.client().args(["ps", "-aq"]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(String::from)
                .collect();
            if !ids.is_empty() {
                let _ = measure::quiet(self.client().args(["rm", "-f"]).args(&ids));
            }
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// podman with the bench's own storage, run root, temporary files and containers.conf, runc as
/// its runtime (its default, crun, refuses hybrid hosts).
pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    pub fn new(bench: &mut Bench) -> Result<Self> {
        let dir = bench.dir("podman")?;
        bench.dir("podman/tmpfiles")?;
        bench.note_foreign_dir("/run/containers", false);
        bench.note_foreign_dir("/run/libpod", false);
        // runc, podman's runtime here, keeps its state in its default root; podman keeps a
        // cache of image blobs in /var/lib/containers whatever its --root.
        bench.note_foreign_dir("/run/runc", false);
        bench.note_foreign_dir("/var/lib/containers", true);
        // Limits a machine without CAP_SYS_RESOURCE can set, no systemd or journald needed, and
        // podman's locks and per-boot files in the bench's directory.
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
            dir.join("tmp").display(),
            dir.join("volumes").display(),
        );
        std::fs::write(dir.join("containers.conf"), conf)
            .map_err(|e| fail(format!("containers.conf: {e}")))?;
        Ok(Podman { dir })
    }

    pub fn client(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args(["--runtime", "runc", "--cgroup-manager=cgroupfs"])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("TMPDIR", self.dir.join("tmpfiles"));
        cmd
    }
}
