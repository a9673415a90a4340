//! `recon tune`: recommend server settings for this machine, an instance type, or given resources,
//! and print them as a table with reasons, env vars, TOML, JSON or a compose `environment:` block.

use std::fmt::Write as _;
use std::process::ExitCode;

use tuning::catalog;
use tuning::units::parse_size;
use tuning::{Engine, LoadOptions, Profile, Recommendation, Resources, ServerSettings, env_names};

/// Output formats of `recon tune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Each value with the reason for it.
    Table,
    /// `NAME=value` lines with the `RECON_*` names, each under a comment
    /// naming the Waitress/Uvicorn names it replaces (and wins over).
    Env,
    /// A `recon.toml` with each reason as a comment.
    Toml,
    /// One JSON object.
    Json,
    /// A docker-compose `environment:` block.
    Compose,
}

/// Arguments of `recon tune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// vCPUs to tune for, e.g. `16` or `1.5` (with --memory).
    #[arg(long, requires = "memory", conflicts_with = "instance", value_parser = parse_cpus)]
    vcpus: Option<u32>,
    /// Memory to tune for, e.g. `32GiB`, `32G`, `512MiB` (with --vcpus).
    #[arg(long, requires = "vcpus", conflicts_with = "instance", value_parser = parse_memory)]
    memory: Option<u64>,
    /// A cloud instance type, e.g. `c5.4xlarge` (c5, m5 and r5 families).
    #[arg(long, value_parser = parse_instance)]
    instance: Option<&'static catalog::Instance>,
    /// Config file whose `vcpus`, `memory` and `profile` apply, as for `recon
    /// serve` (default: `RECON_CONFIG`, else `./recon.toml` if it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Workload profile: balanced, large-files, high-concurrency,
    /// memory-constrained (default: `RECON_PROFILE`, the config file's, else balanced).
    #[arg(long, value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub(crate) fn parse_cpus(text: &str) -> Result<u32, String> {
    tuning::parse_vcpus(text)
        .ok_or_else(|| "expected a positive number of vCPUs, e.g. 16 or 1.5".to_owned())
}

/// Memory to tune for: the range `RECON_MEMORY` and the file's `memory` take.
pub(crate) fn parse_memory(text: &str) -> Result<u64, String> {
    const MIB: u64 = 1 << 20;
    parse_size(text)
        .ok()
        .filter(|b| (64 * MIB..=64 * MIB * MIB).contains(b))
        .ok_or_else(|| {
            "expected a size from 64MiB to 64TiB, such as 32GiB, 32G or 512MiB".to_owned()
        })
}

/// A count as the environment writes it: whole, `_` allowed (`1_000`).
pub(crate) fn parse_count<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("expected a whole number, not {text:?}"))
}

fn parse_instance(text: &str) -> Result<&'static catalog::Instance, String> {
    catalog::find(text).ok_or_else(|| {
        let families: Vec<_> = catalog::INSTANCES.iter().map(|i| i.name).collect();
        format!("unknown instance type; known: {}", families.join(", "))
    })
}

pub(crate) fn parse_profile(text: &str) -> Result<Profile, String> {
    text.parse::<Profile>().map_err(|e| e.to_string())
}

/// Runs `recon tune`.
///
/// # Errors
/// Detection failing when neither `--vcpus`/`--memory` nor `--instance` is given.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let given = match (args.instance, args.vcpus, args.memory) {
        (Some(instance), _, _) => Some((instance.resources(), instance.name.to_owned())),
        (None, Some(cpu), Some(mem)) => {
            Some((Resources::from_millis(cpu, mem), "given".to_owned()))
        }
        _ => None,
    };
    // The resources and profile `recon serve` would tune for: the flags,
    // then RECON_VCPUS / RECON_MEMORY / RECON_PROFILE and the config file,
    // then detection.
    let loaded = tuning::load(&LoadOptions {
        config_file: args.config,
        resources: given.as_ref().map(|(r, _)| *r),
        profile: args.profile,
        ..LoadOptions::default()
    })?;
    // On stderr, as `config show` says them (a detected memory limit below
    // what recon tunes for, a misspelt variable...): stdout stays loadable.
    for warning in &loaded.warnings {
        crate::warn(warning);
    }
    let label = match given {
        Some((_, label)) => label,
        None => {
            let from = |key: &str| {
                loaded
                    .provenance
                    .source(key)
                    .map_or_else(|| "detection".to_owned(), ToString::to_string)
            };
            format!(
                "vCPUs from {}, memory from {}",
                from("vcpus"),
                from("memory")
            )
        }
    };
    // The recommendation loading made for these resources and profile.
    let rec = &loaded.recommendation;
    let engine = loaded.config.engine;
    let out = match args.format {
        Format::Table => table(rec, &label),
        Format::Env => env(rec, &label, engine),
        Format::Toml => toml(rec, &label, engine),
        Format::Json => json(rec, &label)?,
        Format::Compose => compose(rec, engine),
    };
    // A closed stdout (`| head`) ends the output, not the command.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

fn heading(rec: &Recommendation, label: &str) -> String {
    format!(
        "recon tune: {} ({label}), profile {}, memory budget {}",
        rec.resources,
        rec.profile,
        tuning::units::format_size_approx(rec.memory_budget)
    )
}

fn table(rec: &Recommendation, label: &str) -> String {
    let rows = rec.rows();
    let kw = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let vw = rows.iter().map(|r| r.value.len()).max().unwrap_or(0);
    let mut out = format!("{}\n\n", heading(rec, label));
    let _ = writeln!(out, "{:kw$}  {:vw$}  reason", "setting", "value");
    for r in rows {
        let _ = writeln!(out, "{:kw$}  {:vw$}  {}", r.key, r.value, r.reason);
    }
    out
}

/// A setting's value as environment variables spell it: whole seconds, plain bytes.
fn plain(key: &str, s: &ServerSettings) -> String {
    match key {
        "threads" => s.threads.to_string(),
        "workers" => s.workers.to_string(),
        "connection_limit" => s.connection_limit.to_string(),
        "cleanup_interval" => s.cleanup_interval.as_secs().to_string(),
        "channel_timeout" => s.channel_timeout.as_secs().to_string(),
        "recv_bytes" => s.recv_bytes.to_string(),
        "send_bytes" => s.send_bytes.to_string(),
        "max_request_body_size" => s.max_request_body_size.to_string(),
        "max_request_header_size" => s.max_request_header_size.to_string(),
        "backlog" => s.backlog.to_string(),
        _ => String::new(),
    }
}

/// `backlog` follows `connection_limit` while nothing sets it, so the
/// loadable formats leave it out (env, compose) or commented out (toml).
const DERIVED: &str = "backlog";

/// Why a loadable format leaves `key` out (compose) or commented out (env,
/// toml) for `engine`: `backlog` follows `connection_limit`, and the
/// threaded engine does not read `workers` (set, it would warn at every
/// start).
fn left_out(key: &str, engine: Engine) -> Option<&'static str> {
    match key {
        DERIVED => Some("unset, it follows connection_limit; uncomment to pin it"),
        "workers" if engine == Engine::Threaded => {
            Some("the async engine's; the threaded engine does not read it")
        }
        _ => None,
    }
}

/// One recommended setting as an environment variable.
#[derive(Debug)]
struct EnvVar {
    /// The setting key.
    key: &'static str,
    /// The `RECON_*` name.
    name: &'static str,
    /// The setting's other names (Waitress, Uvicorn, the old deployment's),
    /// which `name` wins over.
    replaces: &'static [&'static str],
    /// The value as the environment spells it.
    value: String,
}

/// Every recommended setting under its `RECON_*` name, the profile first.
fn env_vars(rec: &Recommendation) -> Vec<EnvVar> {
    let s = rec.settings();
    let mut vars = vec![EnvVar {
        key: "profile",
        name: "RECON_PROFILE",
        replaces: &[],
        value: rec.profile.to_string(),
    }];
    for row in rec.rows() {
        if let Some((name, replaces)) = env_names(row.key).split_first() {
            vars.push(EnvVar {
                key: row.key,
                name,
                replaces,
                value: plain(row.key, &s),
            });
        }
    }
    vars
}

/// `NAME=value` lines, the `RECON_*` names only: writing the Waitress or
/// Uvicorn name too would leave a `.env` whose old names, edited later, lose
/// to the `RECON_*` ones. Each line's comment names what it replaces.
fn env(rec: &Recommendation, label: &str, engine: Engine) -> String {
    let mut out = format!(
        "# {}\n# RECON_* names only: each wins over the names it replaces, so delete those.\n",
        heading(rec, label)
    );
    for var in env_vars(rec) {
        let mut notes = Vec::new();
        if !var.replaces.is_empty() {
            notes.push(format!("replaces {}", var.replaces.join(", ")));
        }
        let left = left_out(var.key, engine);
        notes.extend(left.map(str::to_owned));
        if !notes.is_empty() {
            let _ = writeln!(out, "# {}", notes.join("; "));
        }
        let comment = if left.is_some() { "# " } else { "" };
        let _ = writeln!(out, "{comment}{}={}", var.name, var.value);
    }
    out
}

fn compose(rec: &Recommendation, engine: Engine) -> String {
    let mut out = String::from("    environment:\n");
    for var in env_vars(rec)
        .iter()
        .filter(|v| left_out(v.key, engine).is_none())
    {
        let _ = writeln!(out, "      {}: \"{}\"", var.name, var.value);
    }
    out
}

fn toml(rec: &Recommendation, label: &str, engine: Engine) -> String {
    let mut out = format!("# {}\nprofile = \"{}\"\n", heading(rec, label), rec.profile);
    let s = rec.settings();
    for row in rec.rows() {
        let value = match row.key {
            "cleanup_interval"
            | "channel_timeout"
            | "max_request_body_size"
            | "max_request_header_size" => format!("\"{}\"", row.value),
            key => plain(key, &s),
        };
        if let Some(why) = left_out(row.key, engine) {
            let _ = write!(
                out,
                "\n# {}\n# Left out: {why}.\n# {} = {value}\n",
                row.reason, row.key
            );
        } else {
            let _ = write!(out, "\n# {}\n{} = {value}\n", row.reason, row.key);
        }
    }
    out
}

fn json(rec: &Recommendation, label: &str) -> anyhow::Result<String> {
    let s = rec.settings();
    let settings: serde_json::Map<String, serde_json::Value> = rec
        .rows()
        .into_iter()
        .map(|row| {
            let number: u64 = plain(row.key, &s).parse().unwrap_or_default();
            let entry =
                serde_json::json!({ "value": number, "text": row.value, "reason": row.reason });
            (row.key.to_owned(), entry)
        })
        .collect();
    let doc = serde_json::json!({
        "resources": {
            "vcpus": rec.resources.cpu_millis as f64 / 1000.0,
            "memory_bytes": rec.resources.memory_bytes,
            "source": label,
        },
        "profile": rec.profile.as_str(),
        "memory_budget_bytes": rec.memory_budget,
        "settings": settings,
    });
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    Ok(text)
}
