//! `recon serve` (being built).

use std::process::ExitCode;

/// Arguments of `recon serve`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `recon serve`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recon serve is not built yet")
}
