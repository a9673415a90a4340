//! `recon config show`: print the effective configuration and where each value came from,
//! with API keys redacted, as a table, JSON or a TOML file that loads back.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use tuning::{LoadOptions, Loaded};

use crate::tune_target::TuneTarget;

/// Arguments of `recon config`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the effective configuration and the source of each value.
    Show(ShowArgs),
}

/// Output formats of `recon config show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Setting, value and source in columns.
    Table,
    /// `{"key": {"value": ..., "source": ...}}`.
    Json,
    /// A `recon.toml` with each source as a comment (API keys left out).
    Toml,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// A TOML config file (otherwise `RECON_CONFIG`, then `./recon.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    target: TuneTarget,
}

/// Runs `recon config`.
///
/// # Errors
/// A [`tuning::ConfigError`] (wrapped) when the configuration does not load.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Show(show) => {
            let mut opts = LoadOptions {
                config_file: show.config,
                ..LoadOptions::default()
            };
            show.target.apply(&mut opts);
            let mut loaded = tuning::load(&opts)?;
            // As `recon serve` would: a log_level it cannot use stops it, and
            // RUST_LOG is shown as it is read.
            let (_, rust_log) = crate::cmd_serve::log_filter(&mut loaded)?;
            if let Some(warning) = rust_log {
                crate::warn(warning);
            }
            // On stderr: the table, JSON or TOML on stdout stays loadable.
            for warning in &loaded.warnings {
                crate::warn(warning);
            }
            let out = match show.format {
                Format::Table => table(&loaded),
                Format::Json => json(&loaded)?,
                Format::Toml => toml(&loaded),
            };
            // A closed stdout (`| head`) ends the output, not the command.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn table(loaded: &Loaded) -> String {
    let entries = loaded.provenance.entries();
    let kw = entries.iter().map(|e| e.0.len()).max().unwrap_or(0);
    let vw = entries.iter().map(|e| e.1.len()).max().unwrap_or(0);
    let mut out = format!(
        "tuned for {}, profile {}\n",
        loaded.resources, loaded.profile
    );
    if let Some(path) = &loaded.config_file {
        let _ = writeln!(out, "config file: {}", path.display());
    }
    out.push('\n');
    let _ = writeln!(out, "{:kw$}  {:vw$}  source", "setting", "value");
    for (key, value, source) in entries {
        let _ = writeln!(out, "{key:kw$}  {value:vw$}  {source}");
    }
    out
}

fn json(loaded: &Loaded) -> anyhow::Result<String> {
    let map: serde_json::Map<String, serde_json::Value> = loaded
        .provenance
        .entries()
        .into_iter()
        .map(|(key, value, source)| {
            (
                key.to_owned(),
                serde_json::json!({ "value": value, "source": source }),
            )
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&map)?;
    text.push('\n');
    Ok(text)
}

fn toml(loaded: &Loaded) -> String {
    let mut out = String::from("# recon config show: the effective configuration\n");
    for (key, value, source) in loaded.provenance.entries() {
        let _ = write!(out, "\n# from {source}\n");
        if matches!(key, "api_keys" | "api_keys_file") {
            let _ = writeln!(out, "# {key}: {value}");
            continue;
        }
        let literal = if value.parse::<u64>().is_ok() || value == "true" || value == "false" {
            value
        } else {
            format!("{value:?}")
        };
        let _ = writeln!(out, "{key} = {literal}");
    }
    out
}
