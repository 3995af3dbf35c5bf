//! `poc update [--json] CONTAINER... LIMITS`: change running containers' limits by writing their
//! cgroup files directly from this process.

use crate::config::Paths;
use crate::container;

use super::run::LimitFlags;

#[derive(clap::Args)]
pub struct Args {
    /// Print what was written, the previous values and how long each write took, as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    limits: LimitFlags,
    /// OCI: the new resources as runc's LinuxResources JSON, from a file or `-` (stdin).
    #[arg(long, value_name = "FILE")]
    resources: Option<std::path::PathBuf>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    if let Some(file) = &args.resources {
        let [id] = args.containers.as_slice() else {
            return Err(anyhow::anyhow!("update --resources takes one container id").into());
        };
        return super::oci::update(paths, file, id);
    }
    let limits = args.limits.to_limits();
    if limits.is_empty() {
        return Err(anyhow::anyhow!("nothing to update: give at least one of --mem, --mem-soft, --cpus, --cpu, --cpu-shares, --cpu-weight, --pids, --cpuset").into());
    }
    let mut reports = Vec::new();
    let mut code = 0;
    for c in &args.containers {
        match container::update(paths, c, &limits) {
            Ok(report) => {
                if !args.json {
                    println!("{c}");
                    if let Some(kills) = report.oom_kills.filter(|k| *k > 0) {
                        eprintln!("poc: {c}: the new memory limit caused {kills} OOM kill(s)");
                    }
                }
                reports.push(report);
            }
            Err(e) => {
                eprintln!("poc: {e}");
                code = 125;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(code)
}
