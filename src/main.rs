//! poc: a container runtime small enough to read, built to measure what containers cost.
//! This file only parses the command line and dispatches; every command lives in `cli/`.

mod bench;
mod cgroups;
mod cli;
mod config;
mod container;
mod error;
mod id;
mod image;
#[cfg(test)]
mod layering;
mod names;
mod network;
mod plot;
mod private;
mod process;
mod rootfs;
mod security;
mod spec;
#[cfg(feature = "trace")]
mod trace;
mod units;

fn main() {
    std::process::exit(cli::main());
}
