//! `recon match` (being built).

use std::process::ExitCode;

/// Arguments of `recon match`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `recon match`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recon match is not built yet")
}
