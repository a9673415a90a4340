//! `recon`: the command line. Glue only: parse arguments, install tracing, call a library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_config;
mod cmd_gen;
mod cmd_healthcheck;
mod cmd_match;
mod cmd_serve;
mod cmd_tune;
mod open_files;
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
            report(&err);
            exit_code(&err)
        }
    }
}

/// Prints `err` and its causes on one line, as `error: outer: inner`.
pub(crate) fn report(err: &anyhow::Error) {
    say(format_args!("error: {}", message(err)));
}

/// Prints `warning: {text}` on stderr.
pub(crate) fn warn(text: impl std::fmt::Display) {
    say(format_args!("warning: {text}"));
}

/// Writes a line to stderr, ignoring a closed or broken stderr (a log
/// collector gone): `eprintln!` would panic there, and a server whose
/// signal thread panics on a log line never stops.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `err` and its causes joined by `: `, leaving out a cause the message
/// already says: the libraries' errors name their source in their own text
/// and also return it as their source, which `{:#}` would print twice
/// ("x.csv: No such file or directory (os error 2): No such file or
/// directory (os error 2)").
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error that names its source in its text and returns it.
    #[derive(Debug)]
    struct Named {
        file: &'static str,
        source: std::io::Error,
    }

    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.file, self.source)
        }
    }

    impl std::error::Error for Named {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let named = anyhow::Error::new(Named {
            file: "x.csv",
            source: io(),
        });
        assert_eq!(message(&named), "x.csv: gone");
        // A context's cause that it does not repeat is kept.
        let wrapped = anyhow::Error::new(io()).context("creating out");
        assert_eq!(message(&wrapped), "creating out: gone");
        let both = anyhow::Error::new(Named {
            file: "x.csv",
            source: io(),
        })
        .context("loading");
        assert_eq!(message(&both), "loading: x.csv: gone");
    }
}
