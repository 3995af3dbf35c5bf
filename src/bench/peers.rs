//! The peers a suite runs the same command under: the host itself, poc, runc and crun (on an OCI
//! bundle whose config.json is the Spec poc builds for the same image, so all three apply the same
//! capabilities, seccomp profile, masked paths and mounts), and docker and podman with private
//! roots (clients.rs: a dockerd started here and stopped by its PID, podman with its own storage).
//! Owns: the peers' bundles, roots and daemons, all under the bench's work directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::clients::{Daemon, Podman};
use super::measure::{self, version_of};
use super::{fail, Bench, Result};
use crate::image::ImageDefaults;
use crate::network::NetworkMode;
use crate::spec::{RunRequest, Security, Volume};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    Host,
    Poc,
    Runc,
    Crun,
    Docker,
    Podman,
}

impl Peer {
    pub const ALL: [Peer; 6] = [
        Peer::Host,
        Peer::Poc,
        Peer::Runc,
        Peer::Crun,
        Peer::Docker,
        Peer::Podman,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Host => "host",
            Peer::Poc => "poc",
            Peer::Runc => "runc",
            Peer::Crun => "crun",
            Peer::Docker => "docker",
            Peer::Podman => "podman",
        }
    }

    pub fn parse(text: &str) -> std::result::Result<Peer, String> {
        Peer::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| {
                format!("unknown peer {text:?}: use host, poc, runc, crun, docker or podman")
            })
    }

    /// Why this peer cannot run on this machine (None: it can).
    pub fn missing(self) -> Option<&'static str> {
        let need: &[(&str, &'static str)] = match self {
            Peer::Host | Peer::Poc => &[],
            Peer::Runc => &[("runc", "runc is not installed")],
            Peer::Crun => &[("crun", "crun is not installed")],
            Peer::Docker => &[
                ("dockerd", "dockerd is not installed (docker.io)"),
                ("docker", "the docker client is not installed"),
            ],
            Peer::Podman => &[
                ("podman", "podman is not installed"),
                ("conmon", "conmon is not installed"),
                ("runc", "podman's runtime here, runc, is not installed"),
            ],
        };
        need.iter()
            .find(|(program, _)| find_program(program).is_none())
            .map(|(_, why)| *why)
    }
}

/// `program`'s path in PATH (the docker client is taken from /usr/bin: a different static client
/// may come first in PATH).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program == "docker" {
        return Some(PathBuf::from("/usr/bin/docker")).filter(|p| p.exists());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One command to run under a peer.
#[derive(Debug, Clone, Default)]
pub struct Job {
    pub image: String,
    pub argv: Vec<String>,
    /// The working directory in the container (on the host: `host_dir`).
    pub workdir: Option<String>,
    /// A host directory bound at /bench in the container.
    pub volume: Option<PathBuf>,
    /// On the host: where the command runs.
    pub host_dir: Option<PathBuf>,
    /// poc's bridge network instead of none (poc only).
    pub bridge: bool,
}

/// Where the volume appears in containers.
pub const VOLUME_TARGET: &str = "/bench";

/// The peers of one bench run, prepared on first use.
pub struct Peers {
    oci: HashMap<Peer, OciRuntime>,
    docker: Option<Daemon>,
    podman: Option<Podman>,
    /// Images imported into docker or podman.
    imported: Vec<(Peer, String)>,
}

impl Peers {
    pub fn new() -> Self {
        Peers {
            oci: HashMap::new(),
            docker: None,
            podman: None,
            imported: Vec::new(),
        }
    }

    /// The version line of a peer, for the report.
    pub fn version(bench: &Bench, peer: Peer) -> String {
        let v = match peer {
            Peer::Host => nix::sys::utsname::uname()
                .ok()
                .map(|u| format!("Linux {}", u.release().to_string_lossy())),
            Peer::Poc => version_of(&bench.poc.to_string_lossy(), &["--version"]),
            Peer::Runc => version_of("runc", &["--version"]),
            Peer::Crun => version_of("crun", &["--version"]),
            Peer::Docker => version_of("dockerd", &["--version"]),
            Peer::Podman => version_of("podman", &["--version"]),
        };
        v.unwrap_or_else(|| "unknown".into())
    }

    /// The command that runs `job` under `peer`, ready to spawn (daemons started, images imported
    /// and bundles made on first use).
    pub fn command(&mut self, bench: &mut Bench, peer: Peer, job: &Job) -> Result<Command> {
        match peer {
            Peer::Host => {
                let mut cmd = Command::new(&job.argv[0]);
                cmd.args(&job.argv[1..]);
                if let Some(dir) = &job.host_dir {
                    cmd.current_dir(dir);
                }
                Ok(cmd)
            }
            Peer::Poc => {
                let mut cmd = bench.poc(["run", "--rm"]);
                if !job.bridge {
                    cmd.args(["--network", "none"]);
                }
                if let Some(volume) = &job.volume {
                    cmd.arg("-v")
                        .arg(format!("{}:{VOLUME_TARGET}", volume.display()));
                }
                if let Some(dir) = &job.workdir {
                    cmd.args(["-w", dir]);
                }
                cmd.arg(&job.image).args(&job.argv);
                Ok(cmd)
            }
            Peer::Runc | Peer::Crun => {
                let runtime = match self.oci.entry(peer) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(OciRuntime::new(bench, peer)?)
                    }
                };
                runtime.command(bench, job)
            }
            Peer::Docker => {
                if self.docker.is_none() {
                    self.docker = Some(Daemon::start(bench)?);
                }
                let image = self.import(bench, peer, &job.image)?;
                let docker = self.docker.as_ref().expect("just started");
                let mut cmd = docker.client();
                cmd.args(["run", "--rm", "--network", "none"]);
                add_container_flags(&mut cmd, job);
                cmd.arg(image).args(&job.argv);
                Ok(cmd)
            }
            Peer::Podman => {
                if self.podman.is_none() {
                    self.podman = Some(Podman::new(bench)?);
                }
                let image = self.import(bench, peer, &job.image)?;
                let podman = self.podman.as_ref().expect("just made");
                let mut cmd = podman.client();
                cmd.args(["run", "--rm", "--network", "none", "--cgroup-parent"])
                    .arg(format!("{}/podman", bench.cgroup_parent));
                add_container_flags(&mut cmd, job);
                cmd.arg(image).args(&job.argv);
                Ok(cmd)
            }
        }
    }

    /// The client of the bench's dockerd (started on first use) and the name the poc image `image`
    /// has there (imported on first use): for suites that drive docker themselves (update: a
    /// detached container updated again and again).
    pub fn docker_client(&mut self, bench: &mut Bench, image: &str) -> Result<(Command, String)> {
        if self.docker.is_none() {
            self.docker = Some(Daemon::start(bench)?);
        }
        let tag = self.import(bench, Peer::Docker, image)?;
        let docker = self.docker.as_ref().expect("just started");
        Ok((docker.client(), tag))
    }

    /// Imports the poc image `name` into docker or podman once; the name to run it by.
    fn import(&mut self, bench: &Bench, peer: Peer, name: &str) -> Result<String> {
        let tag = format!("pocbench/{name}");
        if self.imported.contains(&(peer, name.to_string())) {
            return Ok(tag);
        }
        let rootfs = bench.paths.images_dir().join(name).join("rootfs");
        let tarball = bench.work.join(format!("{name}.tar"));
        if !tarball.exists() {
            measure::output(
                Command::new("tar")
                    .arg("-C")
                    .arg(&rootfs)
                    .arg("-cf")
                    .arg(&tarball)
                    .arg("."),
            )?;
        }
        let mut cmd = match peer {
            Peer::Docker => self.docker.as_ref().expect("started").client(),
            _ => self.podman.as_ref().expect("made").client(),
        };
        cmd.arg("import");
        if peer == Peer::Podman {
            cmd.arg("--quiet");
        }
        cmd.arg(&tarball).arg(&tag);
        measure::output(&mut cmd)?;
        self.imported.push((peer, name.to_string()));
        Ok(tag)
    }

    /// Stops the daemons and removes every container the peers still have.
    pub fn stop(&mut self, bench: &Bench) {
        if let Some(podman) = self.podman.take() {
            let _ = measure::quiet(podman.client().args(["rm", "-af"]));
            let _ = measure::quiet(podman.client().args(["system", "reset", "--force"]));
        }
        if let Some(mut docker) = self.docker.take() {
            docker.stop();
        }
        for runtime in self.oci.values() {
            runtime.remove_all();
        }
        self.oci.clear();
        // Not the state root's tmpfs: Bench::drop reads it to remove poc's containers.
        for entry in std::fs::read_dir(&bench.work)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.path() != bench.state_root {
                super::unmount_under(&entry.path());
            }
        }
    }
}

impl Default for Peers {
    fn default() -> Self {
        Self::new()
    }
}

fn add_container_flags(cmd: &mut Command, job: &Job) {
    if let Some(volume) = &job.volume {
        cmd.arg("-v")
            .arg(format!("{}:{VOLUME_TARGET}", volume.display()));
    }
    if let Some(dir) = &job.workdir {
        cmd.args(["-w", dir]);
    }
}

/// runc or crun on bundles made here: one per (image, workdir, volume), its root an overlay of the
/// image (as poc's, docker's and podman's are), its config.json the Spec poc builds.
struct OciRuntime {
    peer: Peer,
    program: PathBuf,
    root: PathBuf,
    bundles: HashMap<String, PathBuf>,
    /// On a hybrid host crun (1.8) refuses the cgroup2 mount beside v1 controllers: it runs from a
    /// thread in a mount namespace of its own, where that mount is detached.
    private_ns: Option<NsThread>,
    count: usize,
}

impl OciRuntime {
    fn new(bench: &Bench, peer: Peer) -> Result<Self> {
        let program = find_program(peer.name())
            .ok_or_else(|| fail(format!("{} is not installed", peer.name())))?;
        let root = bench.dir(&format!("{}-root", peer.name()))?;
        let private_ns = if peer == Peer::Crun
            && !bench.hierarchies.v1.is_empty()
            && bench.hierarchies.unified.is_some()
        {
            Some(NsThread::without(
                bench.hierarchies.unified.clone().expect("checked"),
            )?)
        } else {
            None
        };
        Ok(OciRuntime {
            peer,
            program,
            root,
            bundles: HashMap::new(),
            private_ns,
            count: 0,
        })
    }

    fn command(&mut self, bench: &Bench, job: &Job) -> Result<Command> {
        // The command is in config.json: one bundle per distinct job.
        let key = format!(
            "{}|{:?}|{:?}|{:?}",
            job.image, job.argv, job.workdir, job.volume
        );
        let bundle = match self.bundles.get(&key) {
            Some(b) => b.clone(),
            None => {
                let name = format!("{}-bundle-{}", self.peer.name(), self.bundles.len());
                let b = make_bundle(bench, &name, job, self.private_ns.as_ref())?;
                self.bundles.insert(key, b.clone());
                b
            }
        };
        self.count += 1;
        let mut cmd = Command::new(&self.program);
        cmd.arg("--root")
            .arg(&self.root)
            .args(["run", "-b"])
            .arg(&bundle)
            .arg(format!("bench-{}-{}", self.peer.name(), self.count));
        Ok(cmd)
    }

    /// Deletes every container this runtime still has under its root.
    fn remove_all(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name();
            let _ = measure::quiet(
                Command::new(&self.program)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["delete", "--force"])
                    .arg(&id),
            );
        }
    }
}

/// `cmd` as a reader would type it; for runc and crun with the command their config.json runs.
pub fn command_line(peer: Peer, cmd: &Command, job: &Job) -> String {
    let line = measure::command_line(cmd);
    match peer {
        Peer::Runc | Peer::Crun => {
            let argv: Vec<String> = job.argv.iter().map(|a| measure::quote(a)).collect();
            format!("{line}  # config.json runs: {}", argv.join(" "))
        }
        _ => line,
    }
}

/// Runs `cmd` the way `peer` needs (crun on a hybrid host: from its private mount namespace),
/// returning its wall time and stdout.
pub fn run_timed(peers: &Peers, peer: Peer, mut cmd: Command) -> Result<(Duration, String)> {
    in_place(private_ns(peers, peer), move || {
        let started = Instant::now();
        let out = measure::output(&mut cmd)?;
        Ok((
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    })
}

/// Like [`run_timed`], output discarded (a start's time: spawn to reaped exit).
pub fn time(peers: &Peers, peer: Peer, mut cmd: Command) -> Result<Duration> {
    in_place(private_ns(peers, peer), move || measure::time(&mut cmd))
}

fn private_ns(peers: &Peers, peer: Peer) -> Option<&NsThread> {
    peers.oci.get(&peer).and_then(|r| r.private_ns.as_ref())
}

/// Runs `job` in the private mount namespace when there is one, else here.
fn in_place<R: Send + 'static>(
    ns: Option<&NsThread>,
    job: impl FnOnce() -> R + Send + 'static,
) -> R {
    match ns {
        Some(ns) => ns.run(job),
        None => job(),
    }
}

/// An OCI bundle for `job`: the rootfs an overlay of the image, config.json the Spec poc builds
/// for the same request, with the bench's cgroup parent.
fn make_bundle(bench: &Bench, name: &str, job: &Job, ns: Option<&NsThread>) -> Result<PathBuf> {
    let bundle = bench.dir(name)?;
    let image = crate::image::Store::new(bench.paths.images_dir())
        .get(&job.image)
        .map_err(|e| fail(e.to_string()))?;
    let (rootfs, etc) = (bundle.join("rootfs"), bundle.join("etc"));
    mount_overlay(&bundle, name, &image.rootfs, ns)?;
    std::fs::create_dir_all(&etc).map_err(|e| fail(format!("{}: {e}", etc.display())))?;
    for (file, text) in [
        ("hostname", "bench\n"),
        ("hosts", "127.0.0.1 localhost bench\n"),
        ("resolv.conf", ""),
    ] {
        std::fs::write(etc.join(file), text).map_err(|e| fail(format!("{file}: {e}")))?;
    }
    let defaults: &ImageDefaults = &image.meta.defaults;
    let cgroups_path = format!("{}/{name}", bench.cgroup_parent);
    let id = format!("{name:0<12}");
    let request = bundle_request(job);
    let mut spec = crate::spec::build_spec(&request, defaults, &id, &rootfs, &etc, &cgroups_path)
        .map_err(|e| fail(e.to_string()))?;
    if let Some(root) = spec.root_mut() {
        root.set_path(PathBuf::from("rootfs"));
        root.set_readonly(Some(false));
    }
    let json = serde_json::to_string_pretty(&spec).map_err(|e| fail(e.to_string()))?;
    std::fs::write(bundle.join("config.json"), json)
        .map_err(|e| fail(format!("config.json: {e}")))?;
    Ok(bundle)
}

/// The bundle's rootfs: an overlay of `lower` with its upper and work directories beside it,
/// mounted where the runtime runs (a mount made in the host's namespace would not show in a
/// private one unless / is shared).
fn mount_overlay(bundle: &Path, name: &str, lower: &Path, ns: Option<&NsThread>) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let (rootfs, upper, work) = (
        bundle.join("rootfs"),
        bundle.join("upper"),
        bundle.join("work"),
    );
    for dir in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    in_place(ns, move || {
        mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
    })
    .map_err(|e| fail(format!("overlay for the {name} bundle: {e}")))
}

/// The request `poc run --rm --network none` would make for `job`.
fn bundle_request(job: &Job) -> RunRequest {
    RunRequest {
        name: None,
        detach: false,
        remove: true,
        interactive: false,
        tty: false,
        env: Vec::new(),
        workdir: job.workdir.as_ref().map(PathBuf::from),
        volumes: job
            .volume
            .iter()
            .map(|v| Volume {
                host: v.clone(),
                container: PathBuf::from(VOLUME_TARGET),
                read_only: false,
            })
            .collect(),
        hostname: Some("bench".into()),
        limits: Default::default(),
        nice: None,
        network: NetworkMode::None,
        ports: Vec::new(),
        dns: Vec::new(),
        user: None,
        security: Security::default(),
        image: job.image.clone(),
        command: job.argv.clone(),
    }
}

/// A thread in a mount namespace of its own (a slave of the host's, so later mounts still
/// appear), with one mount detached; jobs given to it run (and spawn) from there.
struct NsThread {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl NsThread {
    fn without(detached: PathBuf) -> Result<Self> {
        let (jobs, incoming) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (ready_tx, ready) = mpsc::channel::<std::result::Result<(), String>>();
        std::thread::spawn(move || {
            use nix::mount::{mount, umount2, MntFlags, MsFlags};
            let setup = (|| -> std::result::Result<(), String> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| format!("unshare a mount namespace: {e}"))?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_SLAVE,
                    None::<&str>,
                )
                .map_err(|e| format!("make / a slave: {e}"))?;
                umount2(&detached, MntFlags::MNT_DETACH)
                    .map_err(|e| format!("detach {}: {e}", detached.display()))
            })();
            let ok = setup.is_ok();
            let _ = ready_tx.send(setup);
            if ok {
                for job in incoming {
                    job();
                }
            }
        });
        ready
            .recv()
            .map_err(|_| fail("the private mount namespace's thread died"))?
            .map_err(fail)?;
        Ok(NsThread { jobs })
    }

    fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .expect("the namespace thread runs as long as the bench");
        rx.recv().expect("the namespace thread answers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_by_name() {
        for peer in Peer::ALL {
            assert_eq!(Peer::parse(peer.name()), Ok(peer));
        }
        assert!(Peer::parse("lxc").unwrap_err().contains("unknown peer"));
        assert_eq!(Peer::Host.missing(), None);
    }
}
