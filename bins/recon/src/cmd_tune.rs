//! `recon tune` (being built).

use std::process::ExitCode;

/// Arguments of `recon tune`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `recon tune`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recon tune is not built yet")
}
