//! The request types and `build_spec` against Docker's defaults.

use std::path::Path;

use oci_spec::runtime::{Capability, LinuxNamespaceType};

use super::*;
use crate::image::ImageDefaults;

#[test]
fn cpus_become_a_quota_over_the_default_period() {
    assert_eq!(
        CpuQuota::from_cpus(1.5),
        CpuQuota {
            quota: 150_000,
            period: 100_000
        }
    );
}

fn request() -> RunRequest {
    RunRequest {
        name: None,
        detach: false,
        remove: true,
        interactive: false,
        tty: false,
        env: vec!["PATH=/bin".into(), "FOO=bar".into()],
        workdir: Some("/tmp".into()),
        volumes: vec![Volume {
            host: "/tmp".into(),
            container: "/data".into(),
            read_only: true,
        }],
        hostname: None,
        limits: Limits {
            memory: Some(64 << 20),
            memory_soft: Some(32 << 20),
            cpu: Some(CpuQuota {
                quota: 50_000,
                period: 100_000,
            }),
            cpu_shares: None,
            pids: Some(50),
            cpuset: Some("0".into()),
        },
        nice: Some(5),
        network: NetworkMode::None,
        ports: vec![],
        dns: vec![],
        user: None,
        security: Security::default(),
        image: "busybox".into(),
        command: vec![],
    }
}

#[test]
fn spec_carries_flags_and_image_defaults() {
    let id = "0123456789abcdef".repeat(4);
    let spec = build_spec(
        &request(),
        &ImageDefaults::default(),
        &id,
        Path::new("/r"),
        Path::new("/etc-dir"),
        "/poc/x",
    )
    .unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(
        process.args().as_ref().unwrap(),
        &vec!["/bin/sh".to_string()]
    );
    let env = process.env().as_ref().unwrap();
    assert!(
        env.contains(&"PATH=/bin".to_string()),
        "user env replaces the image's: {env:?}"
    );
    assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    assert!(env.contains(&"FOO=bar".to_string()));
    assert!(env.contains(&"HOSTNAME=0123456789ab".to_string()));
    assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
    assert_eq!(process.cwd(), Path::new("/tmp"));
    assert_eq!(process.scheduler().as_ref().unwrap().nice(), &Some(5));
    assert_eq!(process.no_new_privileges(), Some(true));
    let linux = spec.linux().as_ref().unwrap();
    let resources = linux.resources().as_ref().unwrap();
    assert_eq!(resources.memory().as_ref().unwrap().limit(), Some(64 << 20));
    assert_eq!(
        resources.memory().as_ref().unwrap().reservation(),
        Some(32 << 20)
    );
    assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
    assert_eq!(resources.pids().as_ref().unwrap().limit(), 50);
    let ns: Vec<_> = linux
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(ns.contains(&LinuxNamespaceType::Network));
    assert!(ns.contains(&LinuxNamespaceType::Cgroup));
    let mounts = spec.mounts().as_ref().unwrap();
    let volume = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/data"))
        .unwrap();
    assert!(volume
        .options()
        .as_ref()
        .unwrap()
        .contains(&"ro".to_string()));
    assert!(mounts
        .iter()
        .any(|m| m.destination() == Path::new("/etc/resolv.conf")
            && m.source().as_deref() == Some(Path::new("/etc-dir/resolv.conf"))));
    let caps = process.capabilities().as_ref().unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert!(!caps
        .bounding()
        .as_ref()
        .unwrap()
        .contains(&Capability::SysAdmin));
}

#[test]
fn host_network_keeps_the_host_netns_and_soft_above_hard_fails() {
    let mut req = request();
    req.network = NetworkMode::Host;
    req.command = vec!["true".into()];
    let id = "f".repeat(64);
    let spec = build_spec(
        &req,
        &ImageDefaults::default(),
        &id,
        Path::new("/r"),
        Path::new("/e"),
        "/p/x",
    )
    .unwrap();
    let ns = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap();
    assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    req.limits.memory_soft = Some(128 << 20);
    assert!(matches!(
        build_spec(
            &req,
            &ImageDefaults::default(),
            &id,
            Path::new("/r"),
            Path::new("/e"),
            "/p/x"
        ),
        Err(SpecError::SoftAboveHard { .. })
    ));
}
