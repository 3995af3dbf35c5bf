//! `poc exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD...`: run a command in a running container.

use crate::config::Paths;
use crate::container::ExecRequest;

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    #[command(flatten)]
    process: super::run::ProcessFlags,
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
        interactive: args.process.interactive,
        tty: args.process.tty,
        env: args.process.env,
        workdir: args.process.workdir,
        user: args.user,
        command: args.command,
    };
    crate::container::exec(paths, request).map_err(|e| super::Exit {
        code: e.exit_code(),
        error: e.into(),
    })
}
