//! `recon`: the command line. Glue only: parse arguments, install tracing, call a library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_config;
mod cmd_gen;
mod cmd_healthcheck;
mod cmd_match;
mod cmd_serve;
mod cmd_tune;
mod tune_target;

/// Reconcile financial records, and serve that work over HTTP.
#[derive(Debug, Parser)]
#[command(name = "recon", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reconcile two files with a rules file and write the results.
    Match(cmd_match::Args),
    /// Write a synthetic, realistic reconciliation case with its ground truth.
    Gen(cmd_gen::Args),
    /// Recommend server settings for this machine, an instance type or given resources.
    Tune(cmd_tune::Args),
    /// Inspect the effective configuration.
    Config(cmd_config::Args),
    /// Start the HTTP server.
    Serve(Box<cmd_serve::Args>),
    /// Probe a running server's health endpoint (for container health checks).
    Healthcheck(cmd_healthcheck::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Match(args) => cmd_match::run(args),
        Command::Gen(args) => cmd_gen::run(args),
        Command::Tune(args) => cmd_tune::run(args),
        Command::Config(args) => cmd_config::run(args),
        Command::Serve(args) => cmd_serve::run(*args),
        Command::Healthcheck(args) => cmd_healthcheck::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_code(&err)
        }
    }
}

/// The one place errors become exit codes: 2 for a configuration or usage
/// error (the caller must change what they asked for), 1 for everything else.
fn exit_code(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|e| e.is::<tuning::ConfigError>()) {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}
