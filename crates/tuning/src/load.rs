//! Layered loading with figment: defaults < detected resources < tuning < file < env < flags,
//! and `RUST_LOG` over all of them for `log_level` alone.
//!
//! Every source becomes one figment provider whose metadata names it (`env
//! WAITRESS_THREADS`, `flag --port`, `file recon.toml`), so after merging,
//! figment tells which source each value came from. Values are parsed and
//! range-checked as each layer is built, so an error names its exact source.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Provider};
use serde::{Deserialize, Serialize};

use crate::config::{ApiKey, Config, Engine, Overload, ServerSettings};
use crate::detect::{self, DetectError, Detection, Origin};
use crate::error::ConfigError;
use crate::recommend::{self, Recommendation, recommend};
use crate::resources::{Profile, Resources};
use crate::settings::{self, MIN_MEMORY, RawValue, SPECS, Spec};
use crate::units::{format_duration, format_size};

/// The config file read when neither `--config` nor `RECON_CONFIG` names one, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "recon.toml";

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "RECON_CONFIG";

/// What the caller (a command's flags) brings to loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE`; wins over `RECON_CONFIG` and `./recon.toml`.
    pub config_file: Option<PathBuf>,
    /// Values from command-line flags: the highest layer.
    pub flags: Overrides,
    /// Resources to tune for (`--vcpus`/`--memory`/`--instance`), instead of detecting them.
    pub resources: Option<Resources>,
    /// `--profile`.
    pub profile: Option<Profile>,
}

/// Every setting a command-line flag can set; `None` leaves the lower layers' value.
///
/// Durations and sizes are text so flags accept `30s` and `64KiB` like env vars do.
/// Field names are the setting keys.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--engine threaded|async` (also `waitress`/`uvicorn`).
    pub engine: Option<String>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--threads`.
    pub threads: Option<usize>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--connection-limit`.
    pub connection_limit: Option<usize>,
    /// `--cleanup-interval`, e.g. `30s`.
    pub cleanup_interval: Option<String>,
    /// `--channel-timeout`, e.g. `2m`.
    pub channel_timeout: Option<String>,
    /// `--recv-bytes`, e.g. `64KiB`.
    pub recv_bytes: Option<String>,
    /// `--send-bytes`.
    pub send_bytes: Option<String>,
    /// `--max-request-body-size`, e.g. `1GiB`.
    pub max_request_body_size: Option<String>,
    /// `--max-request-header-size`.
    pub max_request_header_size: Option<String>,
    /// `--backlog`.
    pub backlog: Option<u32>,
    /// `--overload queue|reject`.
    pub overload: Option<String>,
    /// `--server-header`.
    pub server_header: Option<String>,
    /// `--shutdown-timeout`.
    pub shutdown_timeout: Option<String>,
    /// `--drain-delay`.
    pub drain_delay: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--api-key` (repeatable).
    pub api_keys: Option<Vec<String>>,
    /// `--api-keys-file`.
    pub api_keys_file: Option<PathBuf>,
    /// `--protect-ops true|false`.
    pub protect_ops: Option<bool>,
    /// `--job-threads`.
    pub job_threads: Option<usize>,
    /// `--job-timeout`, e.g. `2h`.
    pub job_timeout: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
}

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Built into recon.
    Default,
    /// Detected from cgroups or the host (only `vcpus` and `memory`).
    Detected(Origin),
    /// `memory` only: the least recon tunes for (64 MiB), because the
    /// memory detected (bytes, and where from) is below it. Loading warns.
    RaisedToMinimum {
        /// Where the memory figure came from.
        origin: Origin,
        /// The figure detected, in bytes.
        detected: u64,
    },
    /// The tuning recommendation for the resources and profile.
    Tuning,
    /// The tuning formula applied to the effective value of the setting
    /// named, which a layer above tuning set: a `backlog` nothing set
    /// follows an overridden `connection_limit`.
    TuningFrom(&'static str),
    /// The config file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, by name with dashes.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Detected(origin) => write!(f, "detected ({origin})"),
            Source::RaisedToMinimum { origin, detected } => write!(
                f,
                "minimum (detected {} from {origin} is below it)",
                bytes_text(*detected)
            ),
            Source::Tuning => f.write_str("tuning"),
            Source::TuningFrom(key) => write!(f, "tuning (from {key})"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Env(name) => write!(f, "env {name}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// One setting of the effective configuration: its value as text and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The setting key, as in the config file.
    pub key: &'static str,
    /// The value as text, secrets redacted.
    pub value: String,
    /// Where it came from.
    pub source: Source,
    /// The config file's line that set it, when the source is the file.
    pub line: Option<usize>,
}

/// For each setting, its effective value (redacted) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    entries: Vec<Entry>,
}

impl Provenance {
    /// `(key, value, source)` for every setting in documentation order, secrets redacted;
    /// ready for `/debug/status` and `recon config show`.
    pub fn entries(&self) -> Vec<(&'static str, String, String)> {
        self.entries
            .iter()
            .map(|e| (e.key, e.value.clone(), e.source.to_string()))
            .collect()
    }

    /// Every setting with its typed source.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Where `key`'s value came from.
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.entry(key).map(|e| &e.source)
    }

    /// The entry of `key`.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Where `key`'s value was written, as [`ConfigError::Invalid`] names
    /// it: the variable (`RECON_LOG_LEVEL`), the flag (`--log-level`), or
    /// the file, line and key (`recon.toml:3: log_level`); the bare key for
    /// a value no input wrote (a default, tuning).
    pub fn origin(&self, key: &str) -> String {
        match self.entry(key) {
            Some(Entry {
                source: Source::Env(name) | Source::Flag(name),
                ..
            }) => name.clone(),
            Some(Entry {
                source: Source::File(path),
                line,
                ..
            }) => {
                let line = line.map(|n| format!(":{n}")).unwrap_or_default();
                format!("{}{line}: {key}", path.display())
            }
            _ => key.to_owned(),
        }
    }

    /// Records that `key` is read as `value`, its source unchanged: for a
    /// caller that interprets a setting further than tuning can (the binary
    /// reads `RUST_LOG` leniently, as tracing's own grammar allows), so what
    /// is reported is what runs. No effect for an unknown key.
    pub fn read_as(&mut self, key: &str, value: String) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.value = value;
        }
    }
}

/// The effective configuration and how it came about.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// Where each value came from.
    pub provenance: Provenance,
    /// The resources tuned for (given or detected).
    pub resources: Resources,
    /// The profile tuned for.
    pub profile: Profile,
    /// The tuning layer in full, with reasons.
    pub recommendation: Recommendation,
    /// The config file read, if any.
    pub config_file: Option<PathBuf>,
    /// Things that load but likely do not do what was meant: an environment
    /// variable named like a setting that no setting reads (a typo such as
    /// `WAITRESS_THREAD`, or a Waitress/Uvicorn option recon reads under
    /// another name), a variable a higher-ranked name of the same setting
    /// (or `RUST_LOG`) overrides with a different value, a setting the
    /// chosen engine does not use, a detected memory below the least recon
    /// tunes for (tuned for that least instead). `recon serve` logs each as a warning;
    /// `recon config show` lists them.
    pub warnings: Vec<String>,
}

/// Loads the configuration from the real process environment.
///
/// # Errors
/// See [`load_from`].
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    load_from(opts, &env)
}

/// Loads the configuration with `env` as the environment (tests pass an explicit slice).
///
/// Empty environment values count as unset. Resources not given by options, file
/// or env are detected from this machine; a detected memory below 64 MiB is
/// tuned for as 64 MiB, with a warning. `RUST_LOG`, when set, is the
/// `log_level` over every layer, flags included, and is never refused.
///
/// # Errors
/// [`ConfigError::Invalid`] for a bad value, naming its source and the expected form;
/// [`ConfigError::UnknownKey`], [`ConfigError::Syntax`] or [`ConfigError::Read`] for
/// the config file; [`ConfigError::Read`] or [`ConfigError::NoKeys`] for the API
/// keys file; [`ConfigError::Conflict`] for values that contradict each other;
/// [`ConfigError::Detect`] when resources must be detected and cannot be.
pub fn load_from(opts: &LoadOptions, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    load_with(opts, env, detect::detect)
}

/// [`load_from`] with `detect` telling this machine's resources (tests pass
/// made-up ones).
fn load_with(
    opts: &LoadOptions,
    env: &[(String, String)],
    detect: impl FnOnce() -> Result<Detection, DetectError>,
) -> Result<Loaded, ConfigError> {
    let env: HashMap<&str, &str> = env
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let config_file = match (&opts.config_file, env.get(CONFIG_ENV)) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(path)) => Some(PathBuf::from(path)),
        (None, None) => {
            let default = Path::new(DEFAULT_CONFIG_FILE);
            default.is_file().then(|| default.to_path_buf())
        }
    };

    let mut upper = Vec::new();
    let mut file_lines = HashMap::new();
    if let Some(path) = &config_file {
        let named_by = match (&opts.config_file, env.contains_key(CONFIG_ENV)) {
            (Some(_), _) => "--config".to_owned(),
            (None, true) => format!("env {CONFIG_ENV}"),
            (None, false) => "the default".to_owned(),
        };
        let (layer, lines) = file_layer(path, &named_by)?;
        upper.push(layer);
        file_lines = lines;
    }
    let (env_layers, mut shadowed) = env_layers(&env)?;
    upper.extend(env_layers);
    upper.extend(flag_layers(opts)?);
    if let Some((layer, warning)) = rust_log_layer(&env, &upper)? {
        upper.push(layer);
        shadowed.extend(warning);
    }

    let defaults = Layer {
        source: Source::Default,
        dict: default_values(),
    };

    // First pass: the tuning inputs, as the file, env and flags set them.
    let inputs: Inputs = merge([&defaults].into_iter().chain(&upper))
        .extract()
        .map_err(layering)?;
    let profile = inputs
        .profile
        .parse::<Profile>()
        .map_err(|e| ConfigError::Layering(e.to_string()))?;
    // Detect only what no layer gave; each figure is its own layer so its origin shows.
    let mut detected: Vec<Layer> = Vec::new();
    let mut below_minimum = None;
    let resources = match (inputs.vcpus, inputs.memory) {
        (Some(cpu), Some(mem)) => Resources::from_millis(cpu, mem),
        (cpu, mem) => {
            let found = detect()?;
            if cpu.is_none() {
                let value = Value::from(found.resources.cpu_millis);
                detected.push(keyed("vcpus", value, Source::Detected(found.cpu)));
            }
            let memory = match mem {
                Some(mem) => mem,
                None => {
                    let (memory, source, warning) = planned_memory(&found);
                    detected.push(keyed("memory", Value::from(memory), source));
                    below_minimum = warning;
                    memory
                }
            };
            Resources::from_millis(cpu.unwrap_or(found.resources.cpu_millis), memory)
        }
    };
    let recommendation = recommend(&resources, profile);
    let tuning = Layer {
        source: Source::Tuning,
        dict: server_values(&recommendation.settings()),
    };

    let layers: Vec<&Layer> = [&defaults]
        .into_iter()
        .chain(&detected)
        .chain([&tuning])
        .chain(&upper)
        .collect();
    let figment = merge(layers.iter().copied());
    let raw: RawConfig = figment.extract().map_err(layering)?;
    let keys_file = raw.api_keys_file.clone();
    let mut config = build(raw)?;

    let by_name: HashMap<String, Source> = layers
        .iter()
        .map(|l| (l.source.to_string(), l.source.clone()))
        .collect();
    let mut sources: HashMap<&'static str, Source> = SPECS
        .iter()
        .map(|spec| {
            let source = figment
                .find_metadata(spec.key)
                .and_then(|m| by_name.get(m.name.as_ref()))
                .cloned()
                .unwrap_or(Source::Default);
            (spec.key, source)
        })
        .collect();
    let tuned_or_default =
        |s: Option<&Source>| matches!(s, None | Some(Source::Default | Source::Tuning));
    // The tuned backlog was computed from the tuned connection_limit: when a
    // higher layer set the limit and none set the backlog, the same formula
    // applies to the limit in effect.
    if tuned_or_default(sources.get("backlog"))
        && !tuned_or_default(sources.get("connection_limit"))
    {
        config.server.backlog = recommend::backlog_for(config.server.connection_limit);
        sources.insert("backlog", Source::TuningFrom("connection_limit"));
    }
    // Likewise the sweep period: a channel_timeout set shorter than the tuned
    // (or default) cleanup_interval brings the sweep down to it, rather than
    // refuse a value the user never set (Uvicorn's keep-alive is 5 s).
    if tuned_or_default(sources.get("cleanup_interval"))
        && config.server.channel_timeout < config.server.cleanup_interval
    {
        config.server.cleanup_interval = config.server.channel_timeout;
        sources.insert("cleanup_interval", Source::TuningFrom("channel_timeout"));
    }
    // The keys file's keys join the listed ones; read errors name what set
    // the file, and keys from it alone report the file's source.
    if let Some(path) = &keys_file {
        let named_by = sources
            .get("api_keys_file")
            .cloned()
            .unwrap_or(Source::Default);
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            named_by: named_by.to_string(),
            source,
        })?;
        let before = config.api_keys.len();
        config.api_keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| ApiKey(l.to_owned())),
        );
        // A keys file is named to turn authentication on: one with no key
        // (a secret mounted empty) must not leave /v1 open.
        if config.api_keys.len() == before {
            return Err(ConfigError::NoKeys {
                path: path.clone(),
                named_by: named_by.to_string(),
            });
        }
        if tuned_or_default(sources.get("api_keys")) {
            sources.insert("api_keys", named_by);
        }
    }
    let source_of = |key: &str| sources.get(key).cloned().unwrap_or(Source::Default);

    if config.server.channel_timeout < config.server.cleanup_interval {
        return Err(ConfigError::Conflict {
            message: format!(
                "channel_timeout {} ({}) is shorter than cleanup_interval {} ({}): expected channel_timeout at least cleanup_interval",
                format_duration(config.server.channel_timeout),
                source_of("channel_timeout"),
                format_duration(config.server.cleanup_interval),
                source_of("cleanup_interval"),
            ),
        });
    }

    let entries: Vec<Entry> = SPECS
        .iter()
        .map(|spec| Entry {
            key: spec.key,
            value: match (spec.key, &keys_file) {
                ("api_keys_file", Some(path)) => path.display().to_string(),
                ("api_keys_file", None) => "(none)".to_owned(),
                (key, _) => show_value(key, &config, &resources, profile),
            },
            source: source_of(spec.key),
            line: match source_of(spec.key) {
                Source::File(_) => file_lines.get(spec.key).copied(),
                _ => None,
            },
        })
        .collect();
    let mut warnings = Vec::from_iter(below_minimum);
    warnings.extend(unknown_env(&env));
    warnings.extend(shadowed);
    // WEB_CONCURRENCY is set by platforms, not meant for recon's engine.
    if config.engine == Engine::Threaded
        && let source @ (Source::Env(_) | Source::File(_) | Source::Flag(_)) = source_of("workers")
        && !matches!(&source, Source::Env(name) if is_generic(name))
    {
        warnings.push(format!(
            "workers = {} ({source}) is for the async engine; the threaded engine serves with `threads` handler threads and ignores it",
            config.server.workers
        ));
    }
    Ok(Loaded {
        config,
        provenance: Provenance { entries },
        resources,
        profile,
        recommendation,
        config_file,
        warnings,
    })
}

/// Whether an environment name belongs to no family recon owns (`HOST`,
/// `PORT`, `SERVER_TYPE`, `WEB_CONCURRENCY`): images, platforms and other
/// software set those, so they lose or count without a warning.
fn is_generic(name: &str) -> bool {
    !FAMILIES.iter().any(|f| name.starts_with(f))
}

/// The memory to tune for when it is detected: the figure found, or the
/// least recon tunes for (64 MiB, the smallest `memory` accepted) when the
/// figure is below it, with its source and a warning saying so. Tuning for
/// less would report a `memory` no layer accepts (`config show --format
/// toml` must print a file that loads back), for a box recon's formulas
/// were never meant for; refusing would stop every command, `tune` and
/// `config show` included, on it.
fn planned_memory(found: &Detection) -> (u64, Source, Option<String>) {
    let detected = found.resources.memory_bytes;
    if detected >= MIN_MEMORY {
        return (detected, Source::Detected(found.memory), None);
    }
    let origin = found.memory;
    let what = match origin {
        Origin::Host => "the host's memory",
        Origin::CgroupV1 | Origin::CgroupV2 => "the memory limit",
    };
    let warning = format!(
        "{what} ({origin}) is {}, below the least recon tunes for: tuning for {}, \
         so recon may run out of memory; give it at least that",
        bytes_text(detected),
        format_size(MIN_MEMORY),
    );
    (
        MIN_MEMORY,
        Source::RaisedToMinimum { origin, detected },
        Some(warning),
    )
}

/// A size as text, with its unit: `32MiB`, `1000 bytes`.
fn bytes_text(bytes: u64) -> String {
    let text = format_size(bytes);
    match bytes {
        1 => "1 byte".to_owned(),
        _ if text.bytes().all(|b| b.is_ascii_digit()) => format!("{text} bytes"),
        _ => text,
    }
}

/// Environment variables recon reads that are not settings: the config
/// file's path, and the test and benchmark switches.
const OTHER_ENV: [&str; 4] = [
    CONFIG_ENV,
    "RECON_SLOW_TESTS",
    "RECON_BENCH_LARGE",
    "RECON_BENCH_DATA",
];

/// The prefixes of the names recon reads, each a family of names.
const FAMILIES: [&str; 3] = ["RECON_", "WAITRESS_", "UVICORN_"];

/// A warning for every `RECON_*`, `WAITRESS_*` or `UVICORN_*` variable no
/// setting reads: for a Waitress/Uvicorn option in the [`settings::UNREAD`]
/// table, what to set instead; otherwise the closest name one does read,
/// when there is one.
fn unknown_env(env: &HashMap<&str, &str>) -> Vec<String> {
    let known: Vec<&str> = SPECS
        .iter()
        .flat_map(|s| s.env.iter().copied())
        .chain(OTHER_ENV)
        .collect();
    let mut unknown: Vec<(&str, &str)> = env
        .iter()
        .map(|(k, v)| (*k, *v))
        .filter(|(k, _)| FAMILIES.iter().any(|p| k.starts_with(p)))
        .filter(|(k, _)| !known.contains(k))
        .collect();
    unknown.sort_unstable();
    unknown
        .into_iter()
        .map(|(name, value)| {
            let hint = match settings::unread(name) {
                Some(u) => format!("; {}", u.instead.replace("{value}", value)),
                None => closest(name, &known).map_or_else(
                    || "; docs/configuration.md lists the names recon reads".to_owned(),
                    |k| format!("; did you mean {k}?"),
                ),
            };
            format!("environment variable {name} is not a recon setting and is ignored{hint}")
        })
        .collect()
}

/// The read name closest to `name`, if close enough to be a typo of it.
///
/// Names compare without their family prefix, which would otherwise make
/// any two `WAITRESS_*` names look alike; on a tie the same family wins,
/// then the `RECON_*` name.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let (family, rest) = split(name);
    known
        .iter()
        .map(|k| {
            let (k_family, k_rest) = split(k);
            let score = strsim::jaro_winkler(rest, k_rest);
            (score, k_family == family, k_family == 0, *k)
        })
        .filter(|c| c.0 > 0.9)
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)))
        .map(|c| c.3)
}

/// The index of `name`'s family in [`FAMILIES`] (`FAMILIES.len()` for none)
/// and the name without its prefix.
fn split(name: &str) -> (usize, &str) {
    FAMILIES
        .iter()
        .position(|p| name.starts_with(p))
        .map_or((FAMILIES.len(), name), |i| (i, &name[FAMILIES[i].len()..]))
}

/// One source's values, as a figment provider named after the source.
#[derive(Debug)]
struct Layer {
    source: Source,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.source.to_string())
    }

    fn data(&self) -> Result<Map<figment::Profile, Dict>, figment::Error> {
        Ok(Map::from([(figment::Profile::Default, self.dict.clone())]))
    }
}

fn merge<'a>(layers: impl IntoIterator<Item = &'a Layer>) -> Figment {
    layers.into_iter().fold(Figment::new(), |fig, layer| {
        fig.merge(Layer {
            source: layer.source.clone(),
            dict: layer.dict.clone(),
        })
    })
}

fn layering(err: figment::Error) -> ConfigError {
    ConfigError::Layering(err.to_string())
}

/// The tuning inputs, read in a first pass before the tuning layer exists.
#[derive(Debug, Deserialize)]
struct Inputs {
    profile: String,
    vcpus: Option<u32>,
    memory: Option<u64>,
}

/// The merged values in canonical form: durations in milliseconds, sizes in bytes.
#[derive(Debug, Deserialize)]
struct RawConfig {
    engine: String,
    host: String,
    port: u16,
    threads: usize,
    workers: usize,
    connection_limit: usize,
    cleanup_interval: u64,
    channel_timeout: u64,
    recv_bytes: u64,
    send_bytes: u64,
    max_request_body_size: u64,
    max_request_header_size: u64,
    backlog: u32,
    overload: String,
    server_header: String,
    shutdown_timeout: u64,
    drain_delay: u64,
    data_dir: PathBuf,
    api_keys: Vec<String>,
    api_keys_file: Option<PathBuf>,
    protect_ops: bool,
    job_threads: usize,
    job_timeout: u64,
    log_level: String,
}

fn default_values() -> Dict {
    let c = Config::default();
    let mut dict = server_values(&c.server);
    let mut put = |k: &str, v: Value| {
        dict.insert(k.to_owned(), v);
    };
    put("profile", Value::from(Profile::default().as_str()));
    put("engine", Value::from(c.engine.as_str()));
    put("host", Value::from(c.host.to_string()));
    put("port", Value::from(c.port));
    put(
        "overload",
        Value::from(match c.overload {
            Overload::Queue => "queue",
            Overload::Reject => "reject",
        }),
    );
    put("server_header", Value::from(c.server_header.as_str()));
    put("shutdown_timeout", Value::from(millis(c.shutdown_timeout)));
    put("drain_delay", Value::from(millis(c.drain_delay)));
    put(
        "data_dir",
        Value::from(c.data_dir.to_string_lossy().as_ref()),
    );
    put("api_keys", Value::from(Vec::<String>::new()));
    put("protect_ops", Value::from(c.protect_ops));
    put("job_threads", Value::from(c.job_threads.get()));
    put("job_timeout", Value::from(millis(c.job_timeout)));
    put("log_level", Value::from(c.log_level.as_str()));
    dict
}

fn server_values(s: &ServerSettings) -> Dict {
    let mut dict = Dict::new();
    let mut put = |k: &str, v: Value| {
        dict.insert(k.to_owned(), v);
    };
    put("threads", Value::from(s.threads.get()));
    put("workers", Value::from(s.workers.get()));
    put("connection_limit", Value::from(s.connection_limit.get()));
    put("cleanup_interval", Value::from(millis(s.cleanup_interval)));
    put("channel_timeout", Value::from(millis(s.channel_timeout)));
    put("recv_bytes", Value::from(s.recv_bytes.get()));
    put("send_bytes", Value::from(s.send_bytes.get()));
    put(
        "max_request_body_size",
        Value::from(s.max_request_body_size),
    );
    put(
        "max_request_header_size",
        Value::from(s.max_request_header_size),
    );
    put("backlog", Value::from(s.backlog));
    dict
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn invalid(origin: String, raw: &RawValue, expected: String) -> ConfigError {
    ConfigError::Invalid {
        origin,
        value: raw.shown(),
        expected,
    }
}

/// The config file's layer, and the line each key is set on.
fn file_layer(
    path: &Path,
    named_by: &str,
) -> Result<(Layer, HashMap<&'static str, usize>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        named_by: named_by.to_owned(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_owned(),
        })?;
    let mut dict = Dict::new();
    let mut lines = HashMap::new();
    for (key, value) in &table {
        let Some(spec) = settings::spec(key) else {
            return Err(ConfigError::UnknownKey {
                file: path.to_path_buf(),
                key: key.clone(),
                hint: suggestion(key),
            });
        };
        let line = key_line(&text, key);
        if let Some(line) = line {
            lines.insert(spec.key, line);
        }
        let raw = match value {
            toml::Value::String(s) => RawValue::Text(s.clone()),
            toml::Value::Integer(i) => RawValue::Int(*i),
            toml::Value::Boolean(b) => RawValue::Bool(*b),
            // `vcpus = 1.5`; any other setting rejects the text as it would from env.
            toml::Value::Float(f) => RawValue::Text(f.to_string()),
            toml::Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect();
                strings.map_or_else(|| RawValue::Other(value.to_string()), RawValue::List)
            }
            other => RawValue::Other(other.to_string()),
        };
        let value = settings::parse(spec.kind, &raw).map_err(|expected| {
            let line = line.map(|n| format!(":{n}")).unwrap_or_default();
            invalid(format!("{}{line}: {key}", path.display()), &raw, expected)
        })?;
        dict.insert(key.clone(), value);
    }
    let layer = Layer {
        source: Source::File(path.to_path_buf()),
        dict,
    };
    Ok((layer, lines))
}

/// The 1-based line of `text` that sets `key` (`key = ...`), if one does.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// `; did you mean `threads`?` when a known key is close to `key`.
fn suggestion(key: &str) -> String {
    SPECS
        .iter()
        .map(|s| (strsim::jaro_winkler(key, s.key), s.key))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!("; did you mean `{k}`?"))
        .unwrap_or_else(|| "; see docs/configuration.md for the keys".to_owned())
}

/// The bare `HOST` alias: only read when it holds an address (or `localhost`).
const SHELL_HOST_ENV: &str = "HOST";

/// One layer per setting set in `env`, from its highest-ranked name that is
/// set, and a warning for every lower-ranked `RECON_*`, `WAITRESS_*` or
/// `UVICORN_*` name set to another value, or to one that does not parse.
///
/// Only the name that takes effect stops recon with a bad value. A losing
/// name can never take effect, and generic names (`HOST`, `PORT`,
/// `SERVER_TYPE`, `WEB_CONCURRENCY`) are set by images, platforms and other
/// software: a losing one is not even reported (the image's own `PORT=8000`
/// under a user's `RECON_PORT` is no mistake).
fn env_layers(env: &HashMap<&str, &str>) -> Result<(Vec<Layer>, Vec<String>), ConfigError> {
    let mut layers = Vec::new();
    let mut warnings = Vec::new();
    for spec in SPECS {
        // RECON_* before the Waitress/Uvicorn aliases, before HOST/PORT/SERVER_TYPE.
        let mut winner: Option<(&str, &str, Value)> = None;
        for &name in spec.env {
            let Some(&text) = env.get(name) else {
                continue;
            };
            let raw = RawValue::Text(text.to_owned());
            let parsed = settings::parse(spec.kind, &raw);
            let generic = is_generic(name);
            match (&winner, parsed) {
                (None, Ok(value)) => winner = Some((name, text, value)),
                // Shells (zsh) export HOST as the machine's hostname: a value
                // there that is not an address was not meant for recon, so it is
                // skipped and `host` keeps its lower layer's value and source.
                (None, Err(_)) if name == SHELL_HOST_ENV => {}
                (None, Err(expected)) => return Err(invalid(name.to_owned(), &raw, expected)),
                (Some(_), _) if generic => {}
                (Some((top, top_text, _)), Err(expected)) => warnings.push(format!(
                    "{name}={text:?} is ignored (expected {expected}): {top}={top_text} takes precedence"
                )),
                (Some((top, top_text, top_value)), Ok(value)) => {
                    if *top_value != value {
                        warnings.push(format!(
                            "{name}={text} is ignored: {top}={top_text} takes precedence"
                        ));
                    }
                }
            }
        }
        if let Some((name, _, value)) = winner {
            layers.push(single(spec, value, Source::Env(name.to_owned())));
        }
    }
    Ok((layers, warnings))
}

/// `RUST_LOG`: the log filter every Rust program reads, and so recon's
/// `log_level` over every other layer, flags included.
const RUST_LOG_ENV: &str = "RUST_LOG";

/// The `RUST_LOG` layer when it is set, and a warning when it overrides a
/// different `log_level` that one of the layers `below` set.
///
/// Being every Rust program's variable, it is never refused here, even
/// blank or with control characters: it is taken as given, and the binary
/// reads what it can of it as filter directives (the rest is left out, all
/// of it read as `info`) and records what it read
/// ([`Provenance::read_as`]).
fn rust_log_layer(
    env: &HashMap<&str, &str>,
    below: &[Layer],
) -> Result<Option<(Layer, Option<String>)>, ConfigError> {
    const KEY: &str = "log_level";
    let Some(&text) = env.get(RUST_LOG_ENV) else {
        return Ok(None);
    };
    let spec = settings::spec(KEY)
        .ok_or_else(|| ConfigError::Layering(format!("{KEY} is not a setting")))?;
    let raw = RawValue::Text(text.to_owned());
    let value = settings::parse(spec.kind, &raw).unwrap_or_else(|_| Value::from(text));
    let warning = below
        .iter()
        .rev()
        .find_map(|layer| layer.dict.get(KEY).map(|v| (&layer.source, v)))
        .filter(|(_, overridden)| **overridden != value)
        .map(|(source, overridden)| {
            let overridden = overridden.as_str().unwrap_or_default();
            let given = match source {
                Source::Env(name) | Source::Flag(name) => format!("{name}={overridden}"),
                Source::File(path) => format!("{}: {KEY}={overridden}", path.display()),
                other => format!("{KEY}={overridden} ({other})"),
            };
            let text = text.escape_debug();
            format!("{given} is ignored: {RUST_LOG_ENV}={text} takes precedence")
        });
    Ok(Some((
        single(spec, value, Source::Env(RUST_LOG_ENV.to_owned())),
        warning,
    )))
}

fn flag_layers(opts: &LoadOptions) -> Result<Vec<Layer>, ConfigError> {
    let mut given: Vec<(&'static Spec, RawValue)> = Vec::new();
    let flags =
        serde_json::to_value(&opts.flags).map_err(|e| ConfigError::Layering(e.to_string()))?;
    if let serde_json::Value::Object(map) = flags {
        for (key, value) in map {
            let Some(spec) = settings::spec(&key) else {
                return Err(ConfigError::Layering(format!(
                    "flag field {key} is not a setting"
                )));
            };
            let raw = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => RawValue::Text(s),
                serde_json::Value::Bool(b) => RawValue::Bool(b),
                serde_json::Value::Array(items) => RawValue::List(
                    items
                        .into_iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect(),
                ),
                other => RawValue::Text(other.to_string()),
            };
            given.push((spec, raw));
        }
    }
    let mut layers = Vec::new();
    for (spec, raw) in given {
        let value = settings::parse(spec.kind, &raw)
            .map_err(|expected| invalid(spec.flag.to_owned(), &raw, expected))?;
        layers.push(single(spec, value, Source::Flag(spec.flag.to_owned())));
    }
    if let Some(profile) = opts.profile {
        layers.push(keyed(
            "profile",
            Value::from(profile.as_str()),
            Source::Flag("--profile".into()),
        ));
    }
    if let Some(r) = opts.resources {
        for (key, value, flag) in [
            ("vcpus", Value::from(r.cpu_millis), "--vcpus"),
            ("memory", Value::from(r.memory_bytes), "--memory"),
        ] {
            layers.push(keyed(key, value, Source::Flag(flag.to_owned())));
        }
    }
    Ok(layers)
}

fn single(spec: &Spec, value: Value, source: Source) -> Layer {
    keyed(spec.key, value, source)
}

fn keyed(key: &str, value: Value, source: Source) -> Layer {
    let mut dict = Dict::new();
    dict.insert(key.to_owned(), value);
    Layer { source, dict }
}

fn build(raw: RawConfig) -> Result<Config, ConfigError> {
    let nz = |key: &str, v: usize| {
        NonZeroUsize::new(v).ok_or_else(|| ConfigError::Layering(format!("{key} is zero")))
    };
    let size = |key: &str, v: u64| nz(key, usize::try_from(v).unwrap_or(usize::MAX));
    let host: IpAddr = raw
        .host
        .parse()
        .map_err(|_| ConfigError::Layering(format!("host {:?} is not canonical", raw.host)))?;
    // The keys file is read by `load_from`, once its source is known.
    let api_keys: Vec<ApiKey> = raw.api_keys.into_iter().map(ApiKey).collect();
    Ok(Config {
        engine: if raw.engine == "threaded" {
            Engine::Threaded
        } else {
            Engine::Async
        },
        host,
        port: raw.port,
        server: ServerSettings {
            threads: nz("threads", raw.threads)?,
            workers: nz("workers", raw.workers)?,
            connection_limit: nz("connection_limit", raw.connection_limit)?,
            cleanup_interval: Duration::from_millis(raw.cleanup_interval),
            channel_timeout: Duration::from_millis(raw.channel_timeout),
            recv_bytes: size("recv_bytes", raw.recv_bytes)?,
            send_bytes: size("send_bytes", raw.send_bytes)?,
            max_request_body_size: raw.max_request_body_size,
            max_request_header_size: usize::try_from(raw.max_request_header_size)
                .unwrap_or(usize::MAX),
            backlog: raw.backlog,
        },
        overload: if raw.overload == "reject" {
            Overload::Reject
        } else {
            Overload::Queue
        },
        server_header: raw.server_header,
        shutdown_timeout: Duration::from_millis(raw.shutdown_timeout),
        drain_delay: Duration::from_millis(raw.drain_delay),
        data_dir: raw.data_dir,
        api_keys,
        protect_ops: raw.protect_ops,
        job_threads: nz("job_threads", raw.job_threads)?,
        job_timeout: Duration::from_millis(raw.job_timeout),
        log_level: raw.log_level,
    })
}

/// The effective value of `key` as text, secrets redacted.
fn show_value(key: &str, c: &Config, r: &Resources, profile: Profile) -> String {
    let s = &c.server;
    match key {
        "profile" => profile.to_string(),
        "vcpus" => r.vcpus_display(),
        "memory" => format_size(r.memory_bytes),
        "engine" => c.engine.as_str().to_owned(),
        "host" => c.host.to_string(),
        "port" => c.port.to_string(),
        "threads" => s.threads.to_string(),
        "workers" => s.workers.to_string(),
        "connection_limit" => s.connection_limit.to_string(),
        "cleanup_interval" => format_duration(s.cleanup_interval),
        "channel_timeout" => format_duration(s.channel_timeout),
        "recv_bytes" => s.recv_bytes.to_string(),
        "send_bytes" => s.send_bytes.to_string(),
        "max_request_body_size" => format_size(s.max_request_body_size),
        "max_request_header_size" => format_size(s.max_request_header_size as u64),
        "backlog" => s.backlog.to_string(),
        "overload" => match c.overload {
            Overload::Queue => "queue".to_owned(),
            Overload::Reject => "reject".to_owned(),
        },
        "server_header" => c.server_header.clone(),
        "shutdown_timeout" => format_duration(c.shutdown_timeout),
        "drain_delay" => format_duration(c.drain_delay),
        "data_dir" => c.data_dir.display().to_string(),
        "api_keys" => match c.api_keys.len() {
            0 => "(none)".to_owned(),
            1 => "1 key (redacted)".to_owned(),
            n => format!("{n} keys (redacted)"),
        },
        "protect_ops" => c.protect_ops.to_string(),
        "job_threads" => c.job_threads.to_string(),
        "job_timeout" => format_duration(c.job_timeout),
        "log_level" => c.log_level.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Loads with no resources given, `memory` bytes detected from `origin`
    /// (and 2 vCPUs from the host).
    fn detected(memory: u64, origin: Origin) -> Loaded {
        let found = Detection {
            resources: Resources::from_millis(2000, memory),
            cpu: Origin::Host,
            memory: origin,
        };
        load_with(&LoadOptions::default(), &[], || Ok(found)).expect("loads")
    }

    /// A detected memory below the least recon tunes for (64 MiB) is raised
    /// to it, said in the source and a warning, and the value reported
    /// loads back (`config show --format toml`).
    #[test]
    fn detected_memory_below_the_minimum_is_raised_to_it() {
        let kind = settings::spec("memory").expect("memory is a setting").kind;
        for (memory, origin, shown) in [
            (32 * MIB, Origin::CgroupV2, "32MiB"),
            (1000, Origin::CgroupV2, "1000 bytes"),
            (0, Origin::CgroupV1, "1 byte"),
            (48 * MIB, Origin::Host, "48MiB"),
        ] {
            let loaded = detected(memory, origin);
            assert_eq!(loaded.resources.memory_bytes, MIN_MEMORY, "{memory}");
            assert_eq!(
                loaded.recommendation.resources.memory_bytes, MIN_MEMORY,
                "{memory}"
            );
            let entry = loaded.provenance.entry("memory").expect("memory entry");
            assert_eq!(entry.value, "64MiB", "{memory}");
            assert_eq!(
                entry.source.to_string(),
                format!("minimum (detected {shown} from {origin} is below it)"),
            );
            assert!(
                settings::parse(kind, &RawValue::Text(entry.value.clone())).is_ok(),
                "{memory}: {} does not load back",
                entry.value
            );
            let what = match origin {
                Origin::Host => "the host's memory",
                _ => "the memory limit",
            };
            assert_eq!(
                loaded.warnings,
                [format!(
                    "{what} ({origin}) is {shown}, below the least recon tunes for: tuning for 64MiB, so recon may run out of memory; give it at least that"
                )],
                "{memory}"
            );
        }
        // At the minimum and above: as detected, no warning.
        for memory in [MIN_MEMORY, 512 * MIB] {
            let loaded = detected(memory, Origin::CgroupV2);
            assert_eq!(loaded.resources.memory_bytes, memory);
            assert_eq!(
                loaded.provenance.source("memory"),
                Some(&Source::Detected(Origin::CgroupV2))
            );
            assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        }
    }

    /// Memory set by hand is never raised: below the minimum it is refused.
    #[test]
    fn memory_given_below_the_minimum_is_refused() {
        let env = [("RECON_MEMORY".to_owned(), "32MiB".to_owned())];
        let got = load_with(&LoadOptions::default(), &env, || {
            Ok(Detection {
                resources: Resources::new(2, 4096 * MIB),
                cpu: Origin::Host,
                memory: Origin::Host,
            })
        })
        .expect_err("32MiB is below the minimum");
        assert!(
            got.to_string()
                .starts_with("RECON_MEMORY=\"32MiB\": expected a size from 64MiB"),
            "{got}"
        );
    }
}
