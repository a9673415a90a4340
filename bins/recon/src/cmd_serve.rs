//! `recon serve`: load the configuration, install tracing, build the
//! application, bind, announce the address on stdout, and hand the listener to
//! the chosen engine until SIGTERM/SIGINT drains it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use recon_service::{App, SettingEntry, Shutdown};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, LevelFilter};
use tuning::{Config, ConfigError, Engine, LoadOptions, Loaded, Overrides, Source};

use crate::tune_target::TuneTarget;

/// How often the signal thread looks for a second signal during the drain delay.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Arguments of `recon serve`. Every flag overrides the environment, the
/// config file and the tuning recommendation.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Boxed: the flags are many, and `Args` sits in the CLI's command enum.
    #[command(flatten)]
    flags: Box<Flags>,
}

/// The flags of `recon serve`.
#[derive(Debug, clap::Args)]
struct Flags {
    /// The engine: `async` (tokio + hyper) or `threaded` (may, Waitress's model).
    #[arg(long)]
    engine: Option<String>,
    /// Address to bind.
    #[arg(long)]
    host: Option<String>,
    /// Port to bind; 0 picks a free one (the listening line shows it).
    #[arg(long)]
    port: Option<u16>,
    /// Where datasets and results are kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A TOML config file (otherwise `RECON_CONFIG`, then `./recon.toml`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Threaded engine: handler threads; async engine: concurrent blocking handlers.
    #[arg(long, value_parser = crate::cmd_tune::parse_count::<usize>)]
    threads: Option<usize>,
    /// Async engine: tokio worker threads.
    #[arg(long, value_parser = crate::cmd_tune::parse_count::<usize>)]
    workers: Option<usize>,
    /// Most connections open at once.
    #[arg(long, value_parser = crate::cmd_tune::parse_count::<usize>)]
    connection_limit: Option<usize>,
    /// How often idle connections are swept, e.g. `30s`.
    #[arg(long)]
    cleanup_interval: Option<String>,
    /// A connection idle or stalled this long is closed, e.g. `2m`.
    #[arg(long)]
    channel_timeout: Option<String>,
    /// Socket read size and receive buffer, e.g. `64KiB`.
    #[arg(long)]
    recv_bytes: Option<String>,
    /// Socket write size and send buffer.
    #[arg(long)]
    send_bytes: Option<String>,
    /// Largest request body accepted, e.g. `1GiB`.
    #[arg(long)]
    max_request_body_size: Option<String>,
    /// Largest request head accepted, e.g. `64KiB`.
    #[arg(long)]
    max_request_header_size: Option<String>,
    /// Listen backlog.
    #[arg(long, value_parser = crate::cmd_tune::parse_count::<u32>)]
    backlog: Option<u32>,
    /// At the connection limit, with no idle connection to close for the
    /// newcomer: `queue` (wait for a place; later clients in the backlog) or
    /// `reject` (503).
    #[arg(long)]
    overload: Option<String>,
    /// Value of the `Server` response header.
    #[arg(long)]
    server_header: Option<String>,
    /// How long a graceful shutdown waits for in-flight requests, e.g. `30s`.
    #[arg(long)]
    shutdown_timeout: Option<String>,
    /// On SIGTERM/SIGINT, how long to keep serving with `/ready` answering 503
    /// before the listener closes, e.g. `5s` (default `0s`).
    #[arg(long)]
    drain_delay: Option<String>,
    /// An API key accepted on `/v1/*` (repeatable, or several separated by
    /// commas, as `RECON_API_KEYS` takes them).
    #[arg(long = "api-key", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// A file of API keys, one per line.
    #[arg(long)]
    api_keys_file: Option<PathBuf>,
    /// Whether `/metrics`, `/performance/metrics` and `/debug/*` need a key
    /// when keys exist:
    /// `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`, as in the environment.
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    protect_ops: Option<bool>,
    /// Reconciliation jobs run at once, each on a job thread of its own.
    #[arg(long, value_parser = crate::cmd_tune::parse_count::<usize>)]
    job_threads: Option<usize>,
    /// How long one reconciliation job may run before it is stopped and
    /// failed, e.g. `2h` (default `1h`).
    #[arg(long)]
    job_timeout: Option<String>,
    /// Log filter, e.g. `info` or `recon=debug` (`RUST_LOG`, when set, wins).
    #[arg(long)]
    log_level: Option<String>,
    /// `--profile`, `--vcpus`, `--memory`: what the tuning layer targets.
    #[command(flatten)]
    target: TuneTarget,
}

impl Flags {
    fn into_load_options(self) -> LoadOptions {
        let mut opts = LoadOptions {
            config_file: self.config,
            flags: Overrides {
                engine: self.engine,
                host: self.host,
                port: self.port,
                threads: self.threads,
                workers: self.workers,
                connection_limit: self.connection_limit,
                cleanup_interval: self.cleanup_interval,
                channel_timeout: self.channel_timeout,
                recv_bytes: self.recv_bytes,
                send_bytes: self.send_bytes,
                max_request_body_size: self.max_request_body_size,
                max_request_header_size: self.max_request_header_size,
                backlog: self.backlog,
                overload: self.overload,
                server_header: self.server_header,
                shutdown_timeout: self.shutdown_timeout,
                drain_delay: self.drain_delay,
                data_dir: self.data_dir,
                api_keys: (!self.api_keys.is_empty()).then_some(self.api_keys),
                api_keys_file: self.api_keys_file,
                protect_ops: self.protect_ops,
                job_threads: self.job_threads,
                job_timeout: self.job_timeout,
                log_level: self.log_level,
            },
            resources: None,
            profile: None,
        };
        self.target.apply(&mut opts);
        opts
    }
}

/// Runs `recon serve` until a signal drains the server.
///
/// # Errors
/// A bad configuration, an unusable data directory, a port that cannot be
/// bound, or an engine that fails to start.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Its errors name their source (variable, file and line, flag) already.
    let mut loaded = tuning::load(&args.flags.into_load_options())?;
    let (filter, rust_log) = log_filter(&mut loaded)?;
    if let Some(warning) = rust_log {
        crate::warn(warning);
    }
    install_tracing(filter);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // Before anything opens a file: the data directory's files count too.
    crate::open_files::ensure_for(loaded.config.server.connection_limit.get());
    let settings: Vec<SettingEntry> = loaded
        .provenance
        .entries()
        .into_iter()
        .map(|(key, value, source)| SettingEntry {
            key: key.to_owned(),
            value,
            source,
        })
        .collect();
    let data_dir_source = loaded
        .provenance
        .source("data_dir")
        .map_or_else(|| "default".to_owned(), ToString::to_string);
    let config = Arc::new(loaded.config);
    // Most start-up failures are the data directory's: say where it was set.
    let app = Arc::new(App::new(Arc::clone(&config), settings).with_context(|| {
        format!(
            "starting the application on data_dir {} ({data_dir_source})",
            config.data_dir.display()
        )
    })?);

    let listener = serve_async::bind(&config)?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Signals first: a client may SIGTERM as soon as it reads the line.
    let shutdown = Shutdown::new();
    install_signals(&shutdown, &app, config.drain_delay)?;
    let stopping = Arc::new(OnceLock::new());
    {
        let stopping = Arc::clone(&stopping);
        shutdown.on_trigger(move || {
            let _ = stopping.set(Instant::now());
        });
    }
    announce(&config, addr)?;
    match config.engine {
        Engine::Async => serve_async::serve(Arc::clone(&app), listener, shutdown)?,
        Engine::Threaded => serve_threaded::serve(Arc::clone(&app), listener, shutdown)?,
    }
    // No request is served any more: queued jobs stay queued (and are marked
    // interrupted below) rather than run while the stop waits.
    app.stop_starting_jobs();
    // Running jobs may finish within the timeout that bounded the drain;
    // then jobs that succeeded may still owe their Parquet file: both are
    // waited for until the same deadline.
    let since = stopping.get().copied().unwrap_or_else(Instant::now);
    let deadline = since + config.shutdown_timeout;
    let running = app.finish_running_jobs(deadline);
    if running > 0 {
        tracing::warn!(
            running,
            "shutdown_timeout reached with jobs unfinished; they are marked interrupted"
        );
    }
    let unwritten = app.finish_parquet_writes(deadline);
    if unwritten > 0 {
        tracing::warn!(
            unwritten,
            "stopped before every parquet result was written; another instance marks them failed"
        );
    }
    // Accepted jobs still queued or running will not finish: say so on
    // disk now, not only when some instance next starts.
    let interrupted = app.interrupt_unfinished_jobs();
    if !interrupted.is_empty() {
        tracing::warn!(
            count = interrupted.len(),
            jobs = %interrupted.join(","),
            "stopped with accepted jobs unfinished; marked failed (interrupted), resubmit them"
        );
    }
    // A clean stop leaves nothing the next start would take for a crash.
    app.close();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Prints the one line tests and operators parse, and flushes it.
fn announce(config: &Config, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", listening_line(config, addr))?;
    out.flush()?;
    Ok(())
}

/// `recon listening on http://ADDR (engine=..., ...)` with the figures the
/// engine uses: the threaded engine serves on `threads` handler threads and
/// has no tokio workers, so its line leaves `workers` out.
fn listening_line(config: &Config, addr: std::net::SocketAddr) -> String {
    let server = &config.server;
    let workers = match config.engine {
        Engine::Async => format!("workers={}, ", server.workers),
        Engine::Threaded => String::new(),
    };
    format!(
        "recon listening on http://{addr} (engine={}, {workers}threads={}, connection_limit={})",
        config.engine.as_str(),
        server.threads,
        server.connection_limit,
    )
}

/// The log filter of the effective `log_level` (which is `RUST_LOG` when
/// that is set). Directives are read trimmed (`info, hyper=warn`). What
/// `RUST_LOG` is read as (a Python level name translated, directives left
/// out) replaces its text in `loaded`, so what `recon config show` and
/// `/debug/status` report is what logs, and a file written from it loads.
///
/// `RUST_LOG` is every Rust program's variable, often set for another one,
/// so it never stops recon: a Python level name in it is read as the level
/// it means (`warning` as `warn`), and what does not parse (or holds a
/// control character) is left out, as tracing's own `from_default_env`
/// does; nothing left (a blank `RUST_LOG` too) reads as `info`. Each comes
/// back as a warning for the caller to print on stderr (the filter may
/// hide a logged one).
/// recon's own names (`RECON_LOG_LEVEL`, the file, `--log-level`) are
/// checked strictly.
///
/// Either way, the targets in [`QUIET_TARGETS`] are held at `warn` when the
/// filter's default level is more verbose, unless a directive names them
/// (see [`quiet_dependencies`]); what is reported stays the filter as given.
///
/// # Errors
/// [`ConfigError::Invalid`], naming the value's source, when recon's own
/// `log_level` is not a filter `tracing` reads, or names a Python level.
pub(crate) fn log_filter(loaded: &mut Loaded) -> Result<(EnvFilter, Option<String>), ConfigError> {
    let given = loaded.config.log_level.clone();
    let directives: Vec<&str> = given
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let from_rust_log = matches!(
        loaded.provenance.source("log_level"),
        Some(Source::Env(name)) if name == "RUST_LOG"
    );
    let python = directives
        .iter()
        .find_map(|d| python_directive(d).map(|(_, level, ours)| (level, ours)));
    if from_rust_log {
        // A directive with a control character is left out even when
        // `tracing` would take it (as a target): no target has one, and
        // the value reported must load back from a file.
        let (kept, dropped): (Vec<String>, Vec<String>) = directives
            .iter()
            .map(|d| python_directive(d).map_or_else(|| (*d).to_owned(), |(read, _, _)| read))
            .partition(|d| {
                !d.chars().any(char::is_control) && EnvFilter::builder().parse(d).is_ok()
            });
        let mut notes = Vec::new();
        if let Some((p, ours)) = python {
            notes.push(format!("{p:?} is Python's level name, read as {ours}"));
        }
        if directives.is_empty() {
            notes.push("no filter directives in it".to_owned());
        }
        if !dropped.is_empty() {
            let dropped: Vec<String> = dropped
                .iter()
                .map(|d| d.escape_debug().to_string())
                .collect();
            notes.push(format!(
                "{} left out: not log filter directives",
                dropped.join(", ")
            ));
        }
        // Nothing left of it: recon's own default rather than no logging.
        let kept = if kept.is_empty() {
            notes.push("read as info".to_owned());
            vec!["info".to_owned()]
        } else {
            kept
        };
        let warning =
            (!notes.is_empty()).then(|| format!("RUST_LOG={given:?}: {}", notes.join("; ")));
        let read = kept.join(",");
        let filter = EnvFilter::builder()
            .parse(&read)
            .unwrap_or_else(|_| EnvFilter::new("info"));
        let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
        let filter = quiet_dependencies(filter, &kept);
        // Reported as read when anything was left out or translated, or
        // when its separators hold control characters (`info,\tdebug`),
        // which a config file may not.
        if warning.is_some() || given.chars().any(char::is_control) {
            loaded.provenance.read_as("log_level", read.clone());
            loaded.config.log_level = read;
        }
        return Ok((filter, warning));
    }
    let level = directives.join(",");
    let why = match python {
        Some((p, ours)) => format!("{p:?} is Python's level name; write {ours}"),
        None => match EnvFilter::builder().parse(&level) {
            Ok(filter) => return Ok((quiet_dependencies(filter, &directives), None)),
            Err(e) => e.to_string(),
        },
    };
    Err(ConfigError::Invalid {
        // As for every other setting: the variable, the flag, or the
        // file's line (`recon.toml:3: log_level`).
        origin: loaded.provenance.origin("log_level"),
        value: given,
        expected: format!("a log filter such as info, warn or recon=debug: {why}"),
    })
}

/// Dependencies whose `info` lines are about their own internals, not
/// recon's work: may (the threaded engine's runtime, through the `log`
/// bridge) logs two `may::io::sys::select` lines per TCP connection, and
/// its `may::config` lines at start. A target matches every target it
/// begins (`may` covers `may::io::sys::select`), as in any filter directive.
const QUIET_TARGETS: &[&str] = &["may"];

/// Adds `target=warn` to `filter` for each of [`QUIET_TARGETS`] that no
/// directive in `directives` names, when the filter's default (a directive
/// that is a level alone, `info`) is more verbose than `warn`. A quieter
/// default (`warn`, `error`, `off`), or none (`recon=debug` alone), already
/// holds them there or below. A directive for the target itself (`may=info`)
/// or a prefix of it chooses its level: `may=warn` is left out, so it does
/// not override it. One for a target within it (`may::io=debug`) is more
/// specific than `may=warn`, so it wins anyway.
fn quiet_dependencies(filter: EnvFilter, directives: &[&str]) -> EnvFilter {
    let default = directives
        .iter()
        .filter_map(|d| d.parse::<LevelFilter>().ok())
        .max();
    if default.is_none_or(|level| level <= LevelFilter::WARN) {
        return filter;
    }
    QUIET_TARGETS
        .iter()
        .filter(|quiet| {
            !directives.iter().any(|d| {
                let target = d.split(['=', '[']).next().unwrap_or_default().trim();
                !target.is_empty() && quiet.starts_with(target)
            })
        })
        .filter_map(|quiet| format!("{quiet}=warn").parse::<Directive>().ok())
        .fold(filter, EnvFilter::add_directive)
}

/// A filter directive naming a Python logging level, alone (`warning`) or
/// for a target (`recon=warning`): the directive as `tracing` reads it, the
/// Python level as written, and `tracing`'s level for it.
fn python_directive(directive: &str) -> Option<(String, &str, &'static str)> {
    let (target, level) = match directive.rsplit_once('=') {
        Some((target, level)) => (Some(target), level),
        None => (None, directive),
    };
    let ours = match level.to_ascii_lowercase().as_str() {
        "warning" => "warn",
        "critical" | "fatal" => "error",
        "notset" => "trace",
        _ => return None,
    };
    let read = target.map_or_else(|| ours.to_owned(), |t| format!("{t}={ours}"));
    Some((read, level, ours))
}

/// Logs to stderr through `filter`. A line that cannot be written (stderr
/// closed, a log collector gone) is dropped: tracing-subscriber would report
/// it with `eprintln!`, which panics on that same stderr, in whichever thread
/// logged (the signal thread's panic left SIGTERM unanswered).
fn install_tracing(filter: EnvFilter) {
    let _ = tracing_subscriber::fmt()
        .log_internal_errors(false)
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// On the first SIGTERM or SIGINT: marks the application not ready, keeps
/// serving for `drain_delay` (so a load balancer polling `/ready` stops routing
/// here while requests still succeed), then triggers `shutdown`. A second signal
/// during the delay ends it at once.
fn install_signals(
    shutdown: &Shutdown,
    app: &Arc<App>,
    drain_delay: Duration,
) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    let shutdown = shutdown.clone();
    let app = Arc::clone(app);
    std::thread::Builder::new()
        .name("recon-signals".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            if !drain_delay.is_zero() {
                tracing::info!(
                    signal,
                    delay = ?drain_delay,
                    "signal received; /ready answers 503, serving on until the drain delay ends"
                );
                app.state().start_draining();
                let until = Instant::now() + drain_delay;
                while Instant::now() < until {
                    if let Some(again) = signals.pending().next() {
                        tracing::info!(signal = again, "second signal; draining now");
                        break;
                    }
                    std::thread::park_timeout(SIGNAL_POLL.min(until - Instant::now()));
                }
            }
            tracing::info!(signal, "draining");
            shutdown.trigger();
        })
        .context("starting the signal thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Whether the filter of `log_level` (from `RUST_LOG` when `rust_log`)
    /// lets an `info` line of may's through, and one at `warn`.
    fn may_lines(log_level: &str, rust_log: bool) -> (bool, bool) {
        let opts = LoadOptions {
            flags: Overrides {
                log_level: (!rust_log).then(|| log_level.to_owned()),
                ..Overrides::default()
            },
            ..LoadOptions::default()
        };
        let env: Vec<(String, String)> = if rust_log {
            vec![("RUST_LOG".to_owned(), log_level.to_owned())]
        } else {
            Vec::new()
        };
        let mut loaded = tuning::load_from(&opts, &env).expect("config");
        let (filter, _) = log_filter(&mut loaded).expect("filter");
        assert_eq!(loaded.config.log_level, log_level, "reported as given");
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || {
            (
                tracing::enabled!(target: "may::io::sys::select", tracing::Level::INFO),
                tracing::enabled!(target: "may::io::sys::select", tracing::Level::WARN),
            )
        })
    }

    /// may's per-connection `info` lines are quiet by default, whatever
    /// names the level, unless a directive names may.
    #[test]
    fn may_is_quiet_unless_named() {
        for rust_log in [false, true] {
            for (level, want) in [
                ("info", (false, true)),
                ("debug", (false, true)),
                ("recon=debug,info", (false, true)),
                ("warn", (false, true)),
                ("error", (false, false)),
                ("recon=debug", (false, false)),
                ("info,may=info", (true, true)),
                ("debug,may::io=info", (true, true)),
                ("may=debug", (true, true)),
                ("info,may=error", (false, false)),
            ] {
                assert_eq!(
                    may_lines(level, rust_log),
                    want,
                    "{level} (RUST_LOG: {rust_log})"
                );
            }
        }
        // recon's own lines are untouched.
        let opts = LoadOptions::default();
        let mut loaded = tuning::load_from(&opts, &[]).expect("config");
        let (filter, _) = log_filter(&mut loaded).expect("filter");
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: "recon", tracing::Level::INFO));
            assert!(tracing::enabled!(target: "serve_threaded", tracing::Level::INFO));
        });
    }

    /// Each engine's line names only what it uses.
    #[test]
    fn listening_line_shows_the_engines_figures() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 8000));
        let mut config = Config::default();
        assert_eq!(
            listening_line(&config, addr),
            "recon listening on http://127.0.0.1:8000 (engine=async, workers=2, threads=4, connection_limit=100)"
        );
        config.engine = Engine::Threaded;
        assert_eq!(
            listening_line(&config, addr),
            "recon listening on http://127.0.0.1:8000 (engine=threaded, threads=4, connection_limit=100)"
        );
    }
}
