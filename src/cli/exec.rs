//! `poc exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD...`: run a command in a running container.

use std::path::PathBuf;

use crate::config::Paths;
use crate::container::ExecRequest;
use crate::spec;

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Keep stdin open and connected.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable (KEY=VALUE).
    #[arg(short, long, value_parser = spec::parse_env)]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_parser = spec::parse_workdir)]
    workdir: Option<PathBuf>,
    /// User: name, uid, uid:gid or name:group (looked up in the container).
    #[arg(short, long)]
    user: Option<String>,
    container: String,
    /// Command and arguments.
    #[arg(required = true)]
    command: Vec<String>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    let request = ExecRequest {
        container: args.container,
        interactive: args.interactive,
        tty: args.tty,
        env: args.env,
        workdir: args.workdir,
        user: args.user,
        command: args.command,
    };
    crate::container::exec(paths, request).map_err(|e| super::Exit {
        code: e.exit_code(),
        error: e.into(),
    })
}
