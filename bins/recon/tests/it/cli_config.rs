//! `recon tune` and `recon config show` through the real binary, with a cleared environment.

// Helpers outside #[test] fns unwrap too; a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{Engine, Server, agent};

/// Runs `recon args` in `cwd` with exactly `env` as its environment.
fn recon_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_recon"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// Runs `recon args` in an empty directory (so no `recon.toml` is picked up).
fn recon(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    recon_in(dir.path(), args, env)
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Resources pinned so `config show` does not depend on this machine.
const PINNED: &[(&str, &str)] = &[("RECON_VCPUS", "16"), ("RECON_MEMORY", "32GiB")];

#[test]
fn tune_instance_table_shows_values_and_reasons() {
    let text = stdout(&recon(&["tune", "--instance", "c5.4xlarge"], &[]));
    assert!(text.contains("16 vCPU, 32GiB (c5.4xlarge)"), "{text}");
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} row in {text}"))
            .to_owned()
    };
    assert!(line("threads").contains(" 12 "), "{text}");
    assert!(line("threads").contains("75% of 16 vCPUs"), "{text}");
    assert!(line("connection_limit").contains(" 2000 "), "{text}");
    assert!(line("cleanup_interval").contains(" 20s "), "{text}");
    assert!(line("channel_timeout").contains(" 3m "), "{text}");
}

/// Without flags, `recon tune` tunes for what `recon serve` would: the
/// resources and profile of the environment, else of the config file.
#[test]
fn tune_reads_resources_and_profile_as_serve_does() {
    let env = [
        ("RECON_VCPUS", "16"),
        ("RECON_MEMORY", "32GiB"),
        ("RECON_PROFILE", "large-files"),
    ];
    let text = stdout(&recon(&["tune"], &env));
    assert!(
        text.starts_with("recon tune: 16 vCPU, 32GiB (vCPUs from env RECON_VCPUS, memory from env RECON_MEMORY), profile large-files"),
        "{text}"
    );
    // A flag still wins.
    let text = stdout(&recon(&["tune", "--profile", "balanced"], &env));
    assert!(text.contains("profile balanced"), "{text}");
    // The config file, found as serve finds it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("recon.toml"),
        "vcpus = 8\nmemory = \"16GiB\"\nprofile = \"memory-constrained\"\n",
    )
    .unwrap();
    let out = recon_in(dir.path(), &["tune"], &[]);
    let text = stdout(&out);
    assert!(text.contains("8 vCPU, 16GiB"), "{text}");
    assert!(text.contains("profile memory-constrained"), "{text}");
    // Or named with --config, as for serve and config show.
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "vcpus = 4\nmemory = \"8GiB\"\n").unwrap();
    let text = stdout(&recon(&["tune", "--config", other.to_str().unwrap()], &[]));
    assert!(text.contains("4 vCPU, 8GiB"), "{text}");
}

/// `--format env` writes the `RECON_*` names only, each under a comment
/// naming the Waitress/Uvicorn names it replaces: written too, those would
/// lose to the `RECON_*` lines once edited. `backlog` is left commented out,
/// so it follows `RECON_CONNECTION_LIMIT`.
#[test]
fn tune_env_prints_recon_names_with_the_names_they_replace() {
    let text = stdout(&recon(
        &["tune", "--instance", "c5.2xlarge", "--format", "env"],
        &[],
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..8],
        [
            "# recon tune: 8 vCPU, 16GiB (c5.2xlarge), profile balanced, memory budget 8GiB",
            "# RECON_* names only: each wins over the names it replaces, so delete those.",
            "RECON_PROFILE=balanced",
            "# replaces WAITRESS_THREADS",
            "RECON_THREADS=6",
            "# replaces UVICORN_WORKERS, WEB_CONCURRENCY",
            "RECON_WORKERS=8",
            "# replaces WAITRESS_CONNECTION_LIMIT",
        ],
        "{text}"
    );
    for want in [
        "RECON_CONNECTION_LIMIT=1000",
        "RECON_CLEANUP_INTERVAL=30",
        "RECON_CHANNEL_TIMEOUT=120",
        "RECON_RECV_BYTES=65536",
        "RECON_SEND_BYTES=65536",
        "# replaces WAITRESS_BACKLOG, UVICORN_BACKLOG; unset, it follows connection_limit; uncomment to pin it",
        "# RECON_BACKLOG=1000",
    ] {
        assert!(text.lines().any(|l| l == want), "{want} missing in {text}");
    }
    assert!(
        text.lines()
            .all(|l| l.starts_with('#') || l.starts_with("RECON_")),
        "{text}"
    );
    // For the threaded engine, `workers` is left out (commented): loaded
    // back, it would warn at every start. Nor does a platform's
    // WEB_CONCURRENCY warn there.
    let env = [("RECON_ENGINE", "threaded")];
    let text = stdout(&recon(
        &["tune", "--instance", "c5.2xlarge", "--format", "env"],
        &env,
    ));
    assert!(text.lines().any(|l| l == "# RECON_WORKERS=8"), "{text}");
    let env = [
        ("RECON_VCPUS", "2"),
        ("RECON_MEMORY", "4GiB"),
        ("SERVER_TYPE", "waitress"),
        ("WEB_CONCURRENCY", "3"),
    ];
    let out = recon(&["config", "show"], &env);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn tune_env_output_loads_back_as_the_same_settings() {
    let text = stdout(&recon(
        &[
            "tune",
            "--vcpus",
            "4",
            "--memory",
            "8GiB",
            "--profile",
            "large-files",
            "--format",
            "env",
        ],
        &[],
    ));
    let mut env: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    // Tuned for a different box: every value must come from the env, not tuning.
    env.extend([("RECON_VCPUS", "64"), ("RECON_MEMORY", "256GiB")]);
    let shown = stdout(&recon(&["config", "show", "--format", "json"], &env));
    let json: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(json["threads"]["value"], "4");
    assert_eq!(json["threads"]["source"], "env RECON_THREADS");
    assert_eq!(json["recv_bytes"]["value"], "262144");
    assert_eq!(json["channel_timeout"]["value"], "10m");
}

#[test]
fn tune_compose_prints_an_environment_block() {
    let text = stdout(&recon(
        &["tune", "--instance", "c5.4xlarge", "--format", "compose"],
        &[],
    ));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("    environment:"));
    assert!(text.contains("      RECON_THREADS: \"12\"\n"), "{text}");
    assert!(
        text.contains("      RECON_CONNECTION_LIMIT: \"2000\"\n"),
        "{text}"
    );
    assert!(lines.all(|l| l.starts_with("      RECON_")), "{text}");
}

#[test]
fn tune_json_and_toml() {
    let text = stdout(&recon(
        &[
            "tune",
            "--instance",
            "c5.4xlarge",
            "--profile",
            "large-files",
            "--format",
            "json",
        ],
        &[],
    ));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["profile"], "large-files");
    assert_eq!(json["settings"]["threads"]["value"], 8);
    assert_eq!(json["settings"]["connection_limit"]["value"], 500);
    assert_eq!(json["settings"]["channel_timeout"]["value"], 600);
    assert_eq!(json["settings"]["recv_bytes"]["value"], 262_144);

    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&recon_in(
        dir.path(),
        &[
            "tune", "--vcpus", "1.5", "--memory", "2GiB", "--format", "toml",
        ],
        &[],
    ));
    std::fs::write(dir.path().join("recon.toml"), &text).unwrap();
    // ./recon.toml is picked up by default and loads cleanly.
    let shown = stdout(&recon_in(dir.path(), &["config", "show"], PINNED));
    assert!(shown.contains("config file: recon.toml"), "{shown}");
    let threads = shown.lines().find(|l| l.starts_with("threads ")).unwrap();
    assert!(threads.ends_with("file recon.toml"), "{threads}");
}

/// A count the memory budget holds at its floor, with its working sets
/// still not fitting, says so instead of claiming they fit.
#[test]
fn tune_says_when_a_floor_is_hit() {
    let text = stdout(&recon(
        &[
            "tune",
            "--vcpus",
            "2",
            "--memory",
            "64MiB",
            "--profile",
            "large-files",
        ],
        &[],
    ));
    let threads = text.lines().find(|l| l.starts_with("threads ")).unwrap();
    assert!(
        threads.ends_with(
            "would be 2; held at its floor of 1, and even 1 x 128MiB working sets do not fit half the memory budget (16MiB of 1/2 of 64MiB RAM)"
        ),
        "{threads}"
    );
    assert!(!threads.contains("clamped so"), "{threads}");
}

#[test]
fn tune_rejects_unknown_instance_and_half_resources() {
    let out = recon(&["tune", "--instance", "t2.nano"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown instance type"));
    let out = recon(&["tune", "--vcpus", "4"], &[]);
    assert!(!out.status.success());
}

/// Variables named like settings that no setting reads, and a workers value
/// the threaded engine ignores, are reported on stderr with the closest name;
/// stdout stays the configuration.
#[test]
fn config_show_warns_of_what_it_ignores() {
    let env = [
        PINNED[0],
        PINNED[1],
        ("WAITRESS_THREAD", "8"),
        ("UVICORN_LOG_LEVEL", "debug"),
        ("SERVER_TYPE", "waitress"),
        ("UVICORN_WORKERS", "4"),
        ("RECON_SLOW_TESTS", "1"),
    ];
    let out = recon(&["config", "show", "--format", "json"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["workers"]["value"], "4", "{json}");
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        warnings,
        [
            "warning: environment variable UVICORN_LOG_LEVEL is not a recon setting and is ignored; set RECON_LOG_LEVEL (log_level) instead, writing Uvicorn's `warning` as `warn` and `critical` as `error`",
            "warning: environment variable WAITRESS_THREAD is not a recon setting and is ignored; did you mean WAITRESS_THREADS?",
            "warning: workers = 4 (env UVICORN_WORKERS) is for the async engine; the threaded engine serves with `threads` handler threads and ignores it",
        ],
        "{stderr}"
    );
    // Uvicorn's own names for its listen backlog and worker count are read.
    let env = [
        PINNED[0],
        PINNED[1],
        ("UVICORN_BACKLOG", "77"),
        ("WEB_CONCURRENCY", "3"),
    ];
    let out = recon(&["config", "show", "--format", "json"], &env);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["backlog"]["source"], "env UVICORN_BACKLOG", "{json}");
    assert_eq!(json["workers"]["value"], "3", "{json}");
}

/// A Waitress/Uvicorn name that a `RECON_*` name of the same setting
/// overrides with another value, or a bad one, is reported, not fatal: it
/// can never take effect.
#[test]
fn config_show_warns_of_an_overridden_alias() {
    let env = [
        PINNED[0],
        PINNED[1],
        ("RECON_THREADS", "2"),
        ("WAITRESS_THREADS", "8"),
    ];
    let out = recon(&["config", "show"], &env);
    let text = stdout(&out);
    let threads = text.lines().find(|l| l.starts_with("threads ")).unwrap();
    assert!(threads.ends_with(" env RECON_THREADS"), "{threads}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: WAITRESS_THREADS=8 is ignored: RECON_THREADS=2 takes precedence\n"
    );

    let env = [
        PINNED[0],
        PINNED[1],
        ("RECON_THREADS", "4"),
        ("WAITRESS_THREADS", "abc"),
    ];
    let out = recon(&["config", "show"], &env);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: WAITRESS_THREADS=\"abc\" is ignored (expected a whole number from 1 to \
         1024): RECON_THREADS=4 takes precedence\n"
    );
}

/// Old Waitress/Uvicorn names recon does not read point to what to set;
/// `WAITRESS_IDENT` is read, as `server_header`.
#[test]
fn config_show_points_old_names_to_recon_settings() {
    let env = [
        PINNED[0],
        PINNED[1],
        ("WAITRESS_IDENT", "payments"),
        ("WAITRESS_LISTEN", "0.0.0.0:8080"),
        ("UVICORN_LIMIT_CONCURRENCY", "100"),
        ("UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN", "30"),
        ("UVICORN_TIMEOUT_KEEP_ALIVE", "5"),
    ];
    let out = recon(&["config", "show", "--format", "json"], &env);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["server_header"]["value"], "payments", "{json}");
    assert_eq!(
        json["server_header"]["source"], "env WAITRESS_IDENT",
        "{json}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "warning: environment variable UVICORN_LIMIT_CONCURRENCY is not a recon setting and is ignored; for Uvicorn's 503 past the limit, set RECON_CONNECTION_LIMIT=100 and RECON_OVERLOAD=reject (connection_limit, overload)",
            "warning: environment variable UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN is not a recon setting and is ignored; set RECON_SHUTDOWN_TIMEOUT (shutdown_timeout) instead",
            "warning: environment variable UVICORN_TIMEOUT_KEEP_ALIVE is not a recon setting and is ignored; set RECON_CHANNEL_TIMEOUT (channel_timeout) instead; it also closes connections stalled mid-request, so it needs room for slow uploads",
            "warning: environment variable WAITRESS_LISTEN is not a recon setting and is ignored; recon binds one address: set RECON_HOST and RECON_PORT (host, port) instead",
        ],
        "{stderr}"
    );
}

/// A backlog nothing set follows connection_limit, wherever the limit was
/// set; an explicit backlog wins.
#[test]
fn config_show_backlog_follows_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limit.toml");
    std::fs::write(&file, "connection_limit = 300\n").unwrap();
    let file = file.display().to_string();
    // (extra arguments, extra environment, backlog, its source)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (&[], &[], "2000", "tuning"),
        (
            &[],
            &[("WAITRESS_CONNECTION_LIMIT", "250")],
            "250",
            "tuning (from connection_limit)",
        ),
        (
            &["--config", &file],
            &[],
            "300",
            "tuning (from connection_limit)",
        ),
        (
            &[],
            &[("RECON_CONNECTION_LIMIT", "20")],
            "128",
            "tuning (from connection_limit)",
        ),
        (
            &[],
            &[
                ("RECON_CONNECTION_LIMIT", "250"),
                ("WAITRESS_BACKLOG", "64"),
            ],
            "64",
            "env WAITRESS_BACKLOG",
        ),
    ];
    for (args, vars, backlog, source) in cases {
        let mut env = PINNED.to_vec();
        env.extend_from_slice(vars);
        let mut argv = vec!["config", "show", "--format", "json"];
        argv.extend_from_slice(args);
        let json: serde_json::Value = serde_json::from_str(&stdout(&recon(&argv, &env))).unwrap();
        assert_eq!(json["backlog"]["value"], *backlog, "{vars:?} {args:?}");
        assert_eq!(json["backlog"]["source"], *source, "{vars:?} {args:?}");
    }
}

/// `RUST_LOG` is the log filter in effect, so config reports it as
/// `log_level` from `env RUST_LOG`, warning of the level it overrides; a
/// filter `tracing` cannot read stops, naming its source.
#[test]
fn config_show_reports_rust_log_as_the_log_level() {
    let env = [
        PINNED[0],
        PINNED[1],
        ("RUST_LOG", "warn"),
        ("RECON_LOG", "debug"),
    ];
    let out = recon(&["config", "show", "--format", "json"], &env);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["log_level"]["value"], "warn", "{json}");
    assert_eq!(json["log_level"]["source"], "env RUST_LOG", "{json}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: RECON_LOG=debug is ignored: RUST_LOG=warn takes precedence\n"
    );

    // recon's own names are checked strictly: a bad filter stops it.
    for (name, value) in [("RECON_LOG_LEVEL", "[{"), ("RECON_LOG", "recon=loud")] {
        let env = [PINNED[0], PINNED[1], (name, value)];
        let out = recon(&["config", "show"], &env);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: {name}={value:?}: expected a log filter such as info, warn or recon=debug: "
            )),
            "{stderr}"
        );
    }
    // RUST_LOG is every Rust program's: never fatal, read as far as it goes,
    // a space after a comma is no mistake.
    // What it is read as is what config reports (and a TOML dump loads).
    for (value, said, read) in [
        (
            "recon=loud,warn",
            "warning: RUST_LOG=\"recon=loud,warn\": recon=loud left out: not log filter directives\n",
            "warn",
        ),
        (
            "recon=warning,info",
            "warning: RUST_LOG=\"recon=warning,info\": \"warning\" is Python's level name, read as warn\n",
            "recon=warn,info",
        ),
        (
            "garbage[",
            "warning: RUST_LOG=\"garbage[\": garbage[ left out: not log filter directives; read as info\n",
            "info",
        ),
        ("info, hyper=warn", "", "info, hyper=warn"),
        // Blank, or with control characters: left out, never fatal.
        (
            " ",
            "warning: RUST_LOG=\" \": no filter directives in it; read as info\n",
            "info",
        ),
        (
            "\t",
            "warning: RUST_LOG=\"\\t\": no filter directives in it; read as info\n",
            "info",
        ),
        (
            "a\u{1}",
            "warning: RUST_LOG=\"a\\u{1}\": a\\u{1} left out: not log filter directives; read as info\n",
            "info",
        ),
        (
            "warn,\u{1b}[31m",
            "warning: RUST_LOG=\"warn,\\u{1b}[31m\": \\u{1b}[31m left out: not log filter directives\n",
            "warn",
        ),
        ("info,\tdebug", "", "info,debug"),
    ] {
        let env = [PINNED[0], PINNED[1], ("RUST_LOG", value)];
        let out = recon(&["config", "show", "--format", "json"], &env);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), said, "{value}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["log_level"]["value"], read, "{value}");
        assert_eq!(json["log_level"]["source"], "env RUST_LOG", "{value}");
    }
    // Python's level names (Uvicorn's) would read as a target and log
    // nothing of recon's: refused, naming the level to write.
    for (value, ours) in [
        ("warning", "warn"),
        ("recon=debug,CRITICAL", "error"),
        ("recon=warning", "warn"),
    ] {
        let env = [PINNED[0], PINNED[1], ("RECON_LOG_LEVEL", value)];
        let out = recon(&["config", "show"], &env);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr
                .trim_end()
                .ends_with(&format!("is Python's level name; write {ours}")),
            "{stderr}"
        );
    }
}

/// Whatever `RUST_LOG` holds, every command that reads the configuration
/// runs, and `config show --format toml` prints a file that loads back.
#[test]
fn blank_or_control_rust_log_stops_no_command() {
    let dir = tempfile::tempdir().unwrap();
    for value in [" ", "\t", "a\u{1}", "info,\tdebug"] {
        let env = [PINNED[0], PINNED[1], ("RUST_LOG", value)];
        let out = recon(&["tune"], &env);
        assert!(out.status.success(), "tune, {value:?}: {out:?}");
        let text = stdout(&recon(&["config", "show", "--format", "toml"], &env));
        let file = dir.path().join("dump.toml");
        std::fs::write(&file, text).unwrap();
        let file = file.display().to_string();
        let out = recon(&["config", "show", "--config", &file], PINNED);
        assert!(out.status.success(), "reload, {value:?}: {out:?}");
    }
}

/// A bad `log_level` in the file is named by file and line, as every other
/// key's bad value is.
#[test]
fn bad_file_log_level_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ll.toml");
    std::fs::write(&file, "threads = 2\nlog_level = \"recon=loud\"\n").unwrap();
    let file = file.display().to_string();
    for command in [
        &["config", "show", "--config"][..],
        &["serve", "--config"][..],
    ] {
        let mut args = command.to_vec();
        args.push(&file);
        let out = recon(&args, PINNED);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: {file}:2: log_level=\"recon=loud\": expected a log filter such as info"
            )),
            "{command:?}: {stderr}"
        );
    }
    // Python's level names too.
    std::fs::write(&file, "\n\nlog_level = \"warning\"\n").unwrap();
    let out = recon(&["config", "show", "--config", &file], PINNED);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("error: {file}:3: log_level=\"warning\": ")),
        "{stderr}"
    );
}

/// A keys file that holds no key (a secret mounted empty) stops recon with
/// exit 2 naming the file and what named it, rather than serving `/v1`
/// without authentication (`serve` exits through the same path as `config
/// show`, whose exit code is checked).
#[test]
fn api_keys_file_without_keys_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    for (i, body) in ["", "\n", "# keys go here\n\n  # none yet\n"]
        .iter()
        .enumerate()
    {
        let file = dir.path().join(format!("keys{i}"));
        std::fs::write(&file, body).unwrap();
        let path = file.display().to_string();
        let said = format!(
            "error: {path}: env RECON_API_KEYS_FILE names it as the API keys file, but it holds no key"
        );
        let env = [PINNED[0], PINNED[1], ("RECON_API_KEYS_FILE", path.as_str())];
        let out = recon(&["config", "show"], &env);
        assert_eq!(out.status.code(), Some(2), "{body:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(&said), "{body:?}: {stderr}");
        // `serve` stops before listening, wherever the file was named.
        let refused = Server::builder(Engine::Threaded)
            .env("RECON_API_KEYS_FILE", &path)
            .try_start()
            .map(|server| server.listening_line().to_owned());
        let stderr = refused.expect_err("served with an empty keys file");
        assert!(stderr.contains(&said), "{body:?}: {stderr}");
        let refused = Server::builder(Engine::Async)
            .arg("--api-keys-file", &path)
            .try_start()
            .map(|server| server.listening_line().to_owned());
        let stderr = refused.expect_err("served with an empty keys file");
        assert!(
            stderr.contains(&format!(
                "error: {path}: flag --api-keys-file names it as the API keys file"
            )),
            "{body:?}: {stderr}"
        );
    }
}

/// What `serve` reports is what it does: with `RUST_LOG=warn` over
/// `RECON_LOG=debug` it logs warnings only, and /debug/status says
/// `log_level` warn from `env RUST_LOG`.
#[test]
fn serve_logs_and_reports_the_rust_log_filter() {
    let server = Server::builder(Engine::Async)
        .env("RUST_LOG", "warn")
        .env("RECON_LOG", "debug")
        .start();
    let body = agent()
        .get(server.url("/debug/status"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let log_level = status["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "log_level")
        .unwrap();
    assert_eq!(log_level["value"], "warn", "{status}");
    assert_eq!(log_level["source"], "env RUST_LOG", "{status}");
    let log = server.log();
    assert!(
        log.contains("RECON_LOG=debug is ignored: RUST_LOG=warn takes precedence"),
        "{log}"
    );
    assert!(
        log.lines()
            .all(|l| !l.contains("INFO") && !l.contains("DEBUG")),
        "{log}"
    );
}

/// The threaded engine has no tokio workers: its line leaves them out.
#[test]
fn serve_announces_only_the_figures_the_engine_uses() {
    for (engine, want) in [
        (
            Engine::Threaded,
            "(engine=threaded, threads=12, connection_limit=2000)",
        ),
        (
            Engine::Async,
            "(engine=async, workers=16, threads=12, connection_limit=2000)",
        ),
    ] {
        let server = Server::builder(engine)
            .arg("--vcpus", "16")
            .arg("--memory", "32GiB")
            .start();
        let line = server.listening_line();
        assert!(line.ends_with(want), "{line}");
    }
}

#[test]
fn config_show_names_each_source() {
    let env = [
        PINNED[0],
        PINNED[1],
        ("WAITRESS_THREADS", "7"),
        ("RECON_PORT", "9100"),
        ("SERVER_TYPE", "waitress"),
    ];
    let text = stdout(&recon(&["config", "show"], &env));
    let row = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no {key} row in {text}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("threads"), "7 env WAITRESS_THREADS");
    assert_eq!(row("port"), "9100 env RECON_PORT");
    assert_eq!(row("engine"), "threaded env SERVER_TYPE");
    assert_eq!(row("connection_limit"), "2000 tuning");
    assert_eq!(row("host"), "127.0.0.1 default");
    assert_eq!(row("vcpus"), "16 env RECON_VCPUS");
}

#[test]
fn config_show_redacts_api_keys() {
    let env = [
        PINNED[0],
        PINNED[1],
        ("RECON_API_KEYS", "hunter2,swordfish"),
    ];
    for format in ["table", "json", "toml"] {
        let text = stdout(&recon(&["config", "show", "--format", format], &env));
        assert!(!text.contains("hunter2"), "{format}: {text}");
        assert!(!text.contains("swordfish"), "{format}: {text}");
        assert!(text.contains("2 keys (redacted)"), "{format}: {text}");
    }
}

#[test]
fn config_show_with_config_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("prod.toml");
    std::fs::write(&file, "connection_limit = 42\n").unwrap();
    let file = file.display().to_string();
    let text = stdout(&recon(
        &["config", "show", "--config", &file, "--format", "json"],
        PINNED,
    ));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["connection_limit"]["value"], "42");
    assert_eq!(
        json["connection_limit"]["source"],
        format!("file {file}").as_str()
    );
}

#[test]
fn bad_waitress_threads_exits_2_with_the_message() {
    let env = [PINNED[0], PINNED[1], ("WAITRESS_THREADS", "abc")];
    let out = recon(&["config", "show"], &env);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"WAITRESS_THREADS="abc": expected a whole number from 1 to 1024"#),
        "{stderr}"
    );
}

/// `serve --protect-ops` takes the words the environment takes. Each run
/// stops at a bad `--threads`, which is checked after the flags parse, so
/// reaching that message shows the boolean was read.
#[test]
fn serve_boolean_flags_take_the_environment_words() {
    for word in ["true", "false", "yes", "no", "on", "off", "1", "0"] {
        let out = recon(
            &[
                "serve",
                "--protect-ops",
                word,
                "--threads",
                "0",
                "--port",
                "0",
            ],
            PINNED,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{word}: {stderr}");
        assert!(stderr.contains("--threads=\"0\""), "{word}: {stderr}");
    }
    let out = recon(&["serve", "--protect-ops", "maybe"], PINNED);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid value 'maybe'"), "{stderr}");
}

/// Flags parse counts and sizes as the environment does: `1_000` is a
/// count, and `--memory` has `RECON_MEMORY`'s range.
#[test]
fn flags_take_the_environment_forms_and_ranges() {
    // The count parses; the run then stops at the next bad value.
    let out = recon(
        &[
            "serve",
            "--threads",
            "1_000",
            "--connection-limit",
            "0",
            "--port",
            "0",
        ],
        PINNED,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--connection-limit=\"0\""), "{stderr}");
    let out = recon(&["config", "show", "--vcpus", "1", "--memory", "1K"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("expected a size from 64MiB to 64TiB"),
        "{stderr}"
    );
}

#[test]
fn unknown_file_key_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("recon.toml"), "treads = 4\n").unwrap();
    let out = recon_in(dir.path(), &["config", "show"], PINNED);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recon.toml: unknown key `treads`; did you mean `threads`?"),
        "{stderr}"
    );
}

#[test]
fn config_show_tunes_for_given_resources_and_profile() {
    let text = stdout(&recon(
        &[
            "config",
            "show",
            "--vcpus",
            "8",
            "--memory",
            "16GiB",
            "--profile",
            "large-files",
        ],
        &[("RECON_PROFILE", "balanced")],
    ));
    assert!(
        text.starts_with("tuned for 8 vCPU, 16GiB, profile large-files\n"),
        "{text}"
    );
    let threads = text.lines().find(|l| l.starts_with("threads ")).unwrap();
    assert!(
        threads.contains(" 8 ") && threads.ends_with("tuning"),
        "{threads}"
    );
    let profile = text.lines().find(|l| l.starts_with("profile ")).unwrap();
    assert!(profile.ends_with("flag --profile"), "{profile}");
}
