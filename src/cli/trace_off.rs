//! `poc trace` in a build without the `trace` feature: the command is still there, takes any
//! arguments, and says in one line why it cannot run (exit 125). See src/cli/trace/mod.rs.

use crate::config::Paths;

#[derive(clap::Args)]
pub struct Args {
    /// The arguments of poc trace, which this build cannot run.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

pub fn run(_: &Paths, _: Args) -> Result<i32, super::Exit> {
    Err(anyhow::anyhow!(
        "this poc was built without the `trace` feature: rebuild it with default features, which \
         needs clang, llvm, bpftool and libbpf-dev (scripts/setup.sh --deps)"
    )
    .into())
}
