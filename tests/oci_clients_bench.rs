//! What a container start costs through each real client with the runtime under test and with
//! runc, side by side in one run: the wall time of `CLIENT run --rm IMAGE true`, median of
//! POC_OCI_BENCH_RUNS (default 10) after two warm-up runs, the two runtimes alternating. Ignored:
//! a measurement for the closing note, not a check; scripts/bench-oci-clients.sh runs it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::oci::containerd::Containerd;
use common::oci::docker::{Docker, DOCKER_RUNTIME};
use common::oci::podman::Podman;
use common::oci::{runtime_under_test, IMAGE};

const RUNC: &str = "/usr/sbin/runc";

fn runs() -> usize {
    std::env::var("POC_OCI_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
}

/// Times `run(i)` for the runtime under test and runc, alternating: the two medians.
fn alternate(mut run: impl FnMut(usize, usize) -> Command) -> [Duration; 2] {
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs() + 2 {
        for (which, samples) in times.iter_mut().enumerate() {
            let mut cmd = run(which, i);
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
            let started = Instant::now();
            let out = cmd
                .stderr(Stdio::piped())
                .output()
                .expect("the client runs");
            let took = started.elapsed();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if i >= 2 {
                samples.push(took);
            }
        }
    }
    times.map(|mut t| {
        t.sort();
        t[t.len() / 2]
    })
}

#[test]
#[ignore = "a measurement: scripts/bench-oci-clients.sh"]
fn run_rm_true_through_each_client_with_the_runtime_under_test_and_with_runc() {
    let under_test = runtime_under_test();
    let runc = Path::new(RUNC);
    common::oci::require(RUNC, "runc");
    let mut rows = Vec::new();

    let (Some(a), Some(b)) = (
        Podman::start_with_runtime(&under_test),
        Podman::start_with_runtime(runc),
    ) else {
        return;
    };
    let podman = [&a, &b];
    rows.push((
        "podman run --rm",
        alternate(|which, _| {
            let p = podman[which];
            p.command(&[
                "run",
                "--rm",
                "--cgroup-parent",
                &p.env.cgroup_parent,
                IMAGE,
                "true",
            ])
        }),
    ));
    drop((a, b));

    let (Some(a), Some(b)) = (
        Containerd::start_with_runtime(&under_test),
        Containerd::start_with_runtime(runc),
    ) else {
        return;
    };
    let ctr = [&a, &b];
    rows.push((
        "ctr run --rm",
        alternate(|which, i| ctr[which].run_command(&["--rm"], &format!("bench{i}"), &["true"])),
    ));
    drop((a, b));

    let (Some(a), Some(b)) = (
        Docker::start_with_runtime(&under_test),
        Docker::start_with_runtime(runc),
    ) else {
        return;
    };
    let docker = [&a, &b];
    rows.push((
        "docker run --rm",
        alternate(|which, _| {
            docker[which].command(&[
                "run",
                "--rm",
                "--runtime",
                DOCKER_RUNTIME,
                "--network",
                "none",
                IMAGE,
                "true",
            ])
        }),
    ));
    drop((a, b));

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "\nmedian of {} runs of `CLIENT run --rm {IMAGE} true`, wall time in ms",
        runs()
    );
    println!("runtime under test: {}", under_test.display());
    println!(
        "{:<18} {:>12} {:>10} {:>8}",
        "client", "under test", "runc", "ratio"
    );
    for (client, [mine, theirs]) in rows {
        println!(
            "{client:<18} {:>12.1} {:>10.1} {:>8.2}",
            ms(mine),
            ms(theirs),
            ms(mine) / ms(theirs)
        );
    }
}
