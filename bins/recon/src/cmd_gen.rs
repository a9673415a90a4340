//! `recon gen` (being built).

use std::process::ExitCode;

/// Arguments of `recon gen`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `recon gen`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recon gen is not built yet")
}
