//! `poc exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] CONTAINER CMD...`: run a command in a running container.

use std::path::PathBuf;

use crate::config::Paths;
use crate::container::ExecRequest;

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    #[command(flatten)]
    flags: super::run::ProcessFlags,
    /// User: name, uid, uid:gid or name:group (looked up in the container).
    #[arg(short, long)]
    user: Option<String>,
    /// OCI: the process to run, as a JSON file (runc's form: no command arguments then).
    #[arg(long = "process", value_name = "FILE")]
    process_file: Option<PathBuf>,
    /// OCI: return once the process runs (it is the caller's child).
    #[arg(short, long, requires = "process_file")]
    detach: bool,
    /// OCI: write the process's pid to this file.
    #[arg(long, requires = "process_file")]
    pid_file: Option<PathBuf>,
    /// OCI: a unix socket that receives the pty master (with --tty).
    #[arg(long, requires = "process_file")]
    console_socket: Option<PathBuf>,
    /// OCI: pass descriptors 3 .. 3+N on to the process.
    #[arg(long, default_value_t = 0, requires = "process_file")]
    preserve_fds: u32,
    container: String,
    /// Command and arguments.
    #[arg(required_unless_present = "process_file")]
    command: Vec<String>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32, super::Exit> {
    if let Some(process) = args.process_file {
        if !args.command.is_empty() {
            return Err(anyhow::anyhow!("exec --process takes no command arguments").into());
        }
        return super::oci::exec(
            paths,
            crate::container::oci::ExecRequest {
                id: args.container,
                process,
                detach: args.detach,
                pid_file: args.pid_file,
                console_socket: args.console_socket,
                tty: args.flags.tty,
                preserve_fds: args.preserve_fds,
            },
        );
    }
    let request = ExecRequest {
        container: args.container,
        interactive: args.flags.interactive,
        tty: args.flags.tty,
        env: args.flags.env,
        workdir: args.flags.workdir,
        user: args.user,
        command: args.command,
    };
    crate::container::exec(paths, request).map_err(|e| super::Exit {
        code: e.exit_code(),
        error: e.into(),
    })
}
