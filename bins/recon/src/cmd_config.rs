//! `recon config` (being built).

use std::process::ExitCode;

/// Arguments of `recon config`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `recon config`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recon config is not built yet")
}
