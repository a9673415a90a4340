//! Layering with an explicit environment slice: defaults < tuning < file < env < flags.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tuning::{
    ConfigError, Engine, LoadOptions, Loaded, Overload, Overrides, Profile, Resources, Source,
    load_from,
};

const GIB: u64 = 1 << 30;

/// One case: env pairs, an optional config file body, flags.
#[derive(Default)]
struct Case<'a> {
    env: &'a [(&'a str, &'a str)],
    file: Option<&'a str>,
    flags: Overrides,
    profile: Option<Profile>,
}

/// Loads `case` tuned for 16 vCPU / 32 GiB; returns the result and the file path used.
fn run(case: Case<'_>) -> (Result<Loaded, ConfigError>, Option<PathBuf>) {
    let file = case.file.map(|body| {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(body.as_bytes()).unwrap();
        f.into_temp_path()
    });
    let opts = LoadOptions {
        config_file: file.as_ref().map(|p| p.to_path_buf()),
        flags: case.flags,
        resources: Some(Resources::new(16, 32 * GIB)),
        profile: case.profile,
    };
    let env: Vec<(String, String)> = case
        .env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let path = file.as_ref().map(|p| p.to_path_buf());
    (load_from(&opts, &env), path)
}

fn ok(case: Case<'_>) -> Loaded {
    run(case).0.unwrap()
}

fn err(case: Case<'_>) -> String {
    run(case).0.unwrap_err().to_string()
}

fn env(name: &str) -> Source {
    Source::Env(name.to_owned())
}

/// An environment and the warnings loading it must give.
type WarningCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

/// The warnings of loading `vars` as the environment.
fn warnings(vars: &[(&str, &str)]) -> Vec<String> {
    ok(Case {
        env: vars,
        ..Case::default()
    })
    .warnings
}

#[test]
fn tuning_fills_server_settings_and_defaults_the_rest() {
    let loaded = ok(Case::default());
    let s = &loaded.config.server;
    assert_eq!(s.threads.get(), 12);
    assert_eq!(s.workers.get(), 16);
    assert_eq!(s.connection_limit.get(), 2000);
    assert_eq!(s.cleanup_interval, Duration::from_secs(20));
    assert_eq!(s.channel_timeout, Duration::from_secs(180));
    assert_eq!(s.recv_bytes.get(), 65536);
    let p = &loaded.provenance;
    assert_eq!(p.source("threads"), Some(&Source::Tuning));
    assert_eq!(p.source("port"), Some(&Source::Default));
    assert_eq!(p.source("vcpus"), Some(&Source::Flag("--vcpus".into())));
    assert_eq!(loaded.config.port, 8000);
    assert_eq!(loaded.config.engine, Engine::Async);
}

#[test]
fn waitress_and_uvicorn_names_are_read() {
    let loaded = ok(Case {
        env: &[
            ("WAITRESS_THREADS", "7"),
            ("WAITRESS_CONNECTION_LIMIT", "300"),
            ("WAITRESS_CLEANUP_INTERVAL", "10"),
            ("WAITRESS_CHANNEL_TIMEOUT", "2m"),
            ("WAITRESS_RECV_BYTES", "131072"),
            ("WAITRESS_SEND_BYTES", "128KiB"),
            ("UVICORN_WORKERS", "3"),
            ("SERVER_TYPE", "waitress"),
            ("HOST", "0.0.0.0"),
            ("PORT", "9000"),
        ],
        ..Case::default()
    });
    let c = &loaded.config;
    assert_eq!(c.server.threads.get(), 7);
    assert_eq!(c.server.connection_limit.get(), 300);
    assert_eq!(c.server.cleanup_interval, Duration::from_secs(10));
    assert_eq!(c.server.channel_timeout, Duration::from_secs(120));
    assert_eq!(c.server.recv_bytes.get(), 131_072);
    assert_eq!(c.server.send_bytes.get(), 131_072);
    assert_eq!(c.server.workers.get(), 3);
    assert_eq!(c.engine, Engine::Threaded);
    assert_eq!(c.host.to_string(), "0.0.0.0");
    assert_eq!(c.port, 9000);
    assert_eq!(
        loaded.provenance.source("threads"),
        Some(&env("WAITRESS_THREADS"))
    );
    assert_eq!(
        loaded.provenance.source("engine"),
        Some(&env("SERVER_TYPE"))
    );
}

#[test]
fn recon_names_win_over_aliases() {
    let loaded = ok(Case {
        env: &[
            ("WAITRESS_THREADS", "7"),
            ("RECON_THREADS", "9"),
            ("SERVER_TYPE", "uvicorn"),
            ("RECON_ENGINE", "threaded"),
            ("PORT", "1"),
            ("RECON_PORT", "2"),
        ],
        ..Case::default()
    });
    assert_eq!(loaded.config.server.threads.get(), 9);
    assert_eq!(loaded.config.engine, Engine::Threaded);
    assert_eq!(loaded.config.port, 2);
    assert_eq!(
        loaded.provenance.source("threads"),
        Some(&env("RECON_THREADS"))
    );
    // Generic names (SERVER_TYPE, PORT) lose silently; an alias of the
    // Waitress/Uvicorn families is reported.
    assert_eq!(
        loaded.warnings,
        ["WAITRESS_THREADS=7 is ignored: RECON_THREADS=9 takes precedence"]
    );
}

/// Each lower-ranked name set to another value than the winner's is
/// reported; the same value in another spelling is not.
#[test]
fn an_overridden_alias_is_reported() {
    let cases: &[WarningCase<'_>] = &[
        (
            &[("RECON_THREADS", "2"), ("WAITRESS_THREADS", "8")],
            &["WAITRESS_THREADS=8 is ignored: RECON_THREADS=2 takes precedence"],
        ),
        (
            &[
                ("RECON_WORKERS", "2"),
                ("UVICORN_WORKERS", "4"),
                ("WEB_CONCURRENCY", "6"),
            ],
            // WEB_CONCURRENCY is a generic name (platforms set it): no warning.
            &["UVICORN_WORKERS=4 is ignored: RECON_WORKERS=2 takes precedence"],
        ),
        // An image's own PORT/SERVER_TYPE under a user's RECON_* names.
        (
            &[
                ("UVICORN_PORT", "9000"),
                ("PORT", "5000"),
                ("RECON_ENGINE", "threaded"),
                ("SERVER_TYPE", "async"),
            ],
            &[],
        ),
        (
            &[("RECON_LOG_LEVEL", "debug"), ("RECON_LOG", "info")],
            &["RECON_LOG=info is ignored: RECON_LOG_LEVEL=debug takes precedence"],
        ),
        // Equal once parsed: seconds and a unit, the engine's two names.
        (
            &[
                ("RECON_CHANNEL_TIMEOUT", "2m"),
                ("WAITRESS_CHANNEL_TIMEOUT", "120"),
                ("RECON_ENGINE", "threaded"),
                ("SERVER_TYPE", "Waitress"),
                ("RECON_RECV_BYTES", "64KiB"),
                ("WAITRESS_RECV_BYTES", "65536"),
            ],
            &[],
        ),
        // zsh's HOST=<hostname> was never meant for recon.
        (
            &[("RECON_HOST", "0.0.0.0"), ("HOST", "build-box.example.com")],
            &[],
        ),
        (&[("RECON_HOST", "0.0.0.0"), ("HOST", "127.0.0.1")], &[]),
        // A losing name with a bad value can never take effect: reported,
        // not fatal; a generic one not even reported (a Service link's
        // PORT=tcp://..., a platform's WEB_CONCURRENCY=0).
        (
            &[
                ("RECON_THREADS", "4"),
                ("WAITRESS_THREADS", "abc"),
                ("RECON_PORT", "8000"),
                ("PORT", "tcp://10.0.0.3:8000"),
                ("RECON_WORKERS", "2"),
                ("WEB_CONCURRENCY", "0"),
            ],
            &[
                "WAITRESS_THREADS=\"abc\" is ignored (expected a whole number from 1 to 1024): \
                 RECON_THREADS=4 takes precedence",
            ],
        ),
    ];
    for (vars, want) in cases {
        assert_eq!(warnings(vars), *want, "{vars:?}");
    }
}

/// The name that takes effect stops recon with a bad value, whichever name
/// it is.
#[test]
fn the_winning_alias_with_a_bad_value_is_an_error() {
    let got = err(Case {
        env: &[("WAITRESS_THREADS", "abc"), ("UVICORN_WORKERS", "2")],
        ..Case::default()
    });
    assert_eq!(
        got,
        r#"WAITRESS_THREADS="abc": expected a whole number from 1 to 1024"#
    );
}

#[test]
fn precedence_is_tuning_then_file_then_env_then_flags() {
    let file = "threads = 3\nworkers = 3\nport = 7000\ndata_dir = \"/srv/recon\"\n";
    let (result, path) = run(Case {
        env: &[("RECON_WORKERS", "5"), ("RECON_PORT", "7001")],
        file: Some(file),
        flags: Overrides {
            port: Some(7002),
            ..Overrides::default()
        },
        ..Case::default()
    });
    let loaded = result.unwrap();
    let path = path.unwrap();
    let p = &loaded.provenance;
    assert_eq!(loaded.config.server.threads.get(), 3);
    assert_eq!(p.source("threads"), Some(&Source::File(path.clone())));
    assert_eq!(loaded.config.server.workers.get(), 5);
    assert_eq!(p.source("workers"), Some(&env("RECON_WORKERS")));
    assert_eq!(loaded.config.port, 7002);
    assert_eq!(p.source("port"), Some(&Source::Flag("--port".into())));
    assert_eq!(loaded.config.data_dir, PathBuf::from("/srv/recon"));
    assert_eq!(p.source("connection_limit"), Some(&Source::Tuning));
    assert_eq!(loaded.config_file, Some(path));
}

#[test]
fn file_spells_durations_and_sizes_either_way() {
    let loaded = ok(Case {
        file: Some(
            "cleanup_interval = 15\nchannel_timeout = \"10m\"\nrecv_bytes = \"256KiB\"\nsend_bytes = 262144\nmax_request_body_size = \"2GiB\"\noverload = \"reject\"\napi_keys = [\"k1\", \"k2\"]\nprotect_ops = false\n",
        ),
        ..Case::default()
    });
    let c = &loaded.config;
    assert_eq!(c.server.cleanup_interval, Duration::from_secs(15));
    assert_eq!(c.server.channel_timeout, Duration::from_secs(600));
    assert_eq!(c.server.recv_bytes.get(), 262_144);
    assert_eq!(c.server.send_bytes.get(), 262_144);
    assert_eq!(c.server.max_request_body_size, 2 * GIB);
    assert_eq!(c.overload, Overload::Reject);
    assert_eq!(c.api_keys.len(), 2);
    assert!(!c.protect_ops);
}

#[test]
fn profile_and_resources_from_env_change_the_tuning() {
    let opts = LoadOptions::default();
    let vars: Vec<(String, String)> = [
        ("RECON_VCPUS", "8"),
        ("RECON_MEMORY", "16GiB"),
        ("RECON_PROFILE", "large-files"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let loaded = load_from(&opts, &vars).unwrap();
    assert_eq!(loaded.resources, Resources::new(8, 16 * GIB));
    assert_eq!(loaded.profile, Profile::LargeFiles);
    let s = &loaded.config.server;
    assert_eq!(s.threads.get(), 8);
    assert_eq!(s.connection_limit.get(), 500);
    assert_eq!(s.channel_timeout, Duration::from_secs(600));
    assert_eq!(s.recv_bytes.get(), 262_144);
    assert_eq!(
        loaded.provenance.source("profile"),
        Some(&env("RECON_PROFILE"))
    );
}

#[test]
fn flag_profile_wins_over_env_profile() {
    let loaded = ok(Case {
        env: &[("RECON_PROFILE", "large-files")],
        profile: Some(Profile::MemoryConstrained),
        ..Case::default()
    });
    assert_eq!(loaded.profile, Profile::MemoryConstrained);
    assert_eq!(loaded.config.server.threads.get(), 4);
    assert_eq!(loaded.config.server.connection_limit.get(), 500);
}

/// zsh exports `HOST=<hostname>`: a bare `HOST` that is not an address is
/// skipped, while the recon and Uvicorn names stay strict.
#[test]
fn shell_hostname_in_host_is_skipped() {
    let loaded = ok(Case {
        env: &[("HOST", "build-box.example.com")],
        ..Case::default()
    });
    assert_eq!(loaded.config.host.to_string(), "127.0.0.1");
    assert_eq!(loaded.provenance.source("host"), Some(&Source::Default));

    let loaded = ok(Case {
        env: &[("HOST", "::")],
        ..Case::default()
    });
    assert_eq!(loaded.config.host.to_string(), "::");
    assert_eq!(loaded.provenance.source("host"), Some(&env("HOST")));

    for name in ["RECON_HOST", "UVICORN_HOST"] {
        let got = err(Case {
            env: &[(name, "build-box.example.com"), ("HOST", "0.0.0.0")],
            ..Case::default()
        });
        assert!(
            got.starts_with(&format!(
                r#"{name}="build-box.example.com": expected an IP address"#
            )),
            "{got}"
        );
    }
}

#[test]
fn bad_values_name_the_source_and_expected_form() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("WAITRESS_THREADS", "abc")],
            r#"WAITRESS_THREADS="abc": expected a whole number from 1 to 1024"#,
        ),
        (
            &[("RECON_THREADS", "0")],
            r#"RECON_THREADS="0": expected a whole number from 1 to 1024"#,
        ),
        (
            &[("WAITRESS_SEND_BYTES", "10")],
            r#"WAITRESS_SEND_BYTES="10": expected a size from 1KiB to 16MiB"#,
        ),
        (
            &[("SERVER_TYPE", "gunicorn")],
            r#"SERVER_TYPE="gunicorn": expected threaded (or waitress) or async (or uvicorn)"#,
        ),
        (
            &[("RECON_OVERLOAD", "drop")],
            r#"RECON_OVERLOAD="drop": expected queue or reject"#,
        ),
        (
            &[("RECON_MEMORY", "lots")],
            r#"RECON_MEMORY="lots": expected a size"#,
        ),
    ];
    for (vars, want) in cases {
        let got = err(Case {
            env: vars,
            ..Case::default()
        });
        assert!(got.starts_with(want), "{vars:?}: {got}");
    }
}

#[test]
fn bad_flag_names_the_flag() {
    let got = err(Case {
        flags: Overrides {
            threads: Some(0),
            ..Overrides::default()
        },
        ..Case::default()
    });
    assert_eq!(
        got,
        r#"--threads="0": expected a whole number from 1 to 1024"#
    );
}

/// A channel_timeout shorter than the tuned sweep period brings the sweep
/// down to it; shorter than one the user set, it is refused naming both.
#[test]
fn channel_timeout_shorter_than_cleanup_lowers_a_tuned_one_else_is_rejected() {
    let (loaded, _) = run(Case {
        env: &[("WAITRESS_CHANNEL_TIMEOUT", "5")],
        ..Case::default()
    });
    let loaded = loaded.unwrap();
    assert_eq!(loaded.config.server.channel_timeout, Duration::from_secs(5));
    assert_eq!(
        loaded.config.server.cleanup_interval,
        Duration::from_secs(5)
    );
    let entry = loaded.provenance.entry("cleanup_interval").unwrap();
    assert_eq!(entry.source, Source::TuningFrom("channel_timeout"));
    assert_eq!(entry.value, "5s");

    let got = err(Case {
        env: &[
            ("WAITRESS_CHANNEL_TIMEOUT", "5"),
            ("WAITRESS_CLEANUP_INTERVAL", "20"),
        ],
        ..Case::default()
    });
    assert!(
        got.contains("channel_timeout 5s (env WAITRESS_CHANNEL_TIMEOUT)"),
        "{got}"
    );
    assert!(
        got.contains("cleanup_interval 20s (env WAITRESS_CLEANUP_INTERVAL)"),
        "{got}"
    );
}

#[test]
fn unknown_file_key_names_file_and_key() {
    let (result, path) = run(Case {
        file: Some("threads = 4\nthread_count = 4\n"),
        ..Case::default()
    });
    let got = result.unwrap_err().to_string();
    let path = path.unwrap();
    assert!(got.starts_with(&path.display().to_string()), "{got}");
    assert!(got.contains("unknown key `thread_count`"), "{got}");
    assert!(got.contains("did you mean `threads`?"), "{got}");
}

#[test]
fn bad_file_value_names_file_line_and_key() {
    let (result, path) = run(Case {
        file: Some("# tuned by hand\n\nthreads = \"many\"\n"),
        ..Case::default()
    });
    let got = result.unwrap_err().to_string();
    let want = format!(
        "{}:3: threads=\"many\": expected a whole number from 1 to 1024",
        path.unwrap().display()
    );
    assert_eq!(got, want);
}

#[test]
fn broken_toml_and_missing_file_are_errors() {
    let got = err(Case {
        file: Some("threads = \n"),
        ..Case::default()
    });
    assert!(got.contains("not valid TOML"), "{got}");
    let opts = LoadOptions {
        config_file: Some(PathBuf::from("/nonexistent/recon.toml")),
        resources: Some(Resources::new(2, 4 * GIB)),
        ..LoadOptions::default()
    };
    let got = load_from(&opts, &[]).unwrap_err();
    assert!(matches!(got, ConfigError::Read { .. }), "{got}");
    assert!(
        got.to_string()
            .starts_with("/nonexistent/recon.toml: --config names it: "),
        "{got}"
    );
    let got = err(Case {
        env: &[("RECON_CONFIG", "/nonexistent/recon.toml")],
        ..Case::default()
    });
    assert!(
        got.starts_with("/nonexistent/recon.toml: env RECON_CONFIG names it: "),
        "{got}"
    );
}

/// Keys from a keys file alone are reported with the file's source; a keys
/// file that cannot be read names what set it.
#[test]
fn api_keys_file_is_the_keys_source_and_named_when_missing() {
    let mut keys = tempfile::NamedTempFile::new().unwrap();
    keys.write_all(b"# ops\nk1\n\nk2\n").unwrap();
    let path = keys.path().display().to_string();
    let loaded = ok(Case {
        env: &[("RECON_API_KEYS_FILE", &path)],
        ..Case::default()
    });
    assert_eq!(loaded.config.api_keys.len(), 2);
    let entry = loaded.provenance.entry("api_keys").unwrap();
    assert_eq!(entry.source, env("RECON_API_KEYS_FILE"));
    // Keys listed too: the list's source stands, the file's keys join it.
    let loaded = ok(Case {
        env: &[("RECON_API_KEYS_FILE", &path), ("RECON_API_KEYS", "k3")],
        ..Case::default()
    });
    assert_eq!(loaded.config.api_keys.len(), 3);
    assert_eq!(
        loaded.provenance.entry("api_keys").unwrap().source,
        env("RECON_API_KEYS")
    );
    let got = err(Case {
        env: &[("RECON_API_KEYS_FILE", "/nonexistent/keys")],
        ..Case::default()
    });
    assert!(
        got.starts_with("/nonexistent/keys: env RECON_API_KEYS_FILE names it: "),
        "{got}"
    );
}

/// A keys file that exists but holds no key (empty, or only blank lines and
/// comments: a secret mounted empty) is refused naming the file and what
/// named it, wherever it was named: it never turns authentication off.
#[test]
fn api_keys_file_without_keys_is_refused() {
    for body in ["", "\n\n", "# only comments\n   \n# and blanks\n"] {
        let mut keys = tempfile::NamedTempFile::new().unwrap();
        keys.write_all(body.as_bytes()).unwrap();
        let path = keys.path().display().to_string();
        let want = |named_by: &str| {
            format!(
                "{path}: {named_by} names it as the API keys file, but it holds no key (only blank lines and # comments): expected one key per line; to serve without keys, name no keys file"
            )
        };
        let (result, _) = run(Case {
            env: &[("RECON_API_KEYS_FILE", &path)],
            ..Case::default()
        });
        let got = result.unwrap_err();
        assert!(matches!(got, ConfigError::NoKeys { .. }), "{got:?}");
        assert_eq!(got.to_string(), want("env RECON_API_KEYS_FILE"), "{body:?}");
        let got = err(Case {
            flags: Overrides {
                api_keys_file: Some(PathBuf::from(&path)),
                ..Overrides::default()
            },
            ..Case::default()
        });
        assert_eq!(got, want("flag --api-keys-file"), "{body:?}");
        let file = format!("api_keys_file = {path:?}\n");
        let (result, config) = run(Case {
            file: Some(&file),
            ..Case::default()
        });
        let named_by = format!("file {}", config.unwrap().display());
        assert_eq!(result.unwrap_err().to_string(), want(&named_by), "{body:?}");
        // Keys listed elsewhere do not make an empty file right.
        let got = err(Case {
            env: &[("RECON_API_KEYS_FILE", &path), ("RECON_API_KEYS", "k1")],
            ..Case::default()
        });
        assert_eq!(got, want("env RECON_API_KEYS_FILE"), "{body:?}");
    }
}

#[test]
fn config_file_from_recon_config_env() {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(b"port = 4242\n").unwrap();
    let path = f.path().display().to_string();
    let loaded = ok(Case {
        env: &[("RECON_CONFIG", &path)],
        ..Case::default()
    });
    assert_eq!(loaded.config.port, 4242);
}

#[test]
fn api_keys_are_redacted_in_provenance() {
    let mut keys = tempfile::NamedTempFile::new().unwrap();
    keys.write_all(b"# ops keys\nfile-secret-1\n\nfile-secret-2\n")
        .unwrap();
    let keys_path = keys.path().display().to_string();
    let loaded = ok(Case {
        env: &[
            ("RECON_API_KEYS", "env-secret-a, env-secret-b"),
            ("RECON_API_KEYS_FILE", &keys_path),
        ],
        ..Case::default()
    });
    let keys: Vec<&str> = loaded
        .config
        .api_keys
        .iter()
        .map(|k| k.0.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "env-secret-a",
            "env-secret-b",
            "file-secret-1",
            "file-secret-2"
        ]
    );
    let shown = format!("{:?}", loaded.provenance.entries());
    assert!(!shown.contains("secret"), "{shown}");
    let entry = loaded.provenance.entry("api_keys").unwrap();
    assert_eq!(entry.value, "4 keys (redacted)");
    assert_eq!(entry.source, env("RECON_API_KEYS"));
}

#[test]
fn empty_env_values_count_as_unset() {
    let loaded = ok(Case {
        env: &[("RECON_THREADS", ""), ("WAITRESS_THREADS", "5")],
        ..Case::default()
    });
    assert_eq!(loaded.config.server.threads.get(), 5);
}

#[test]
fn every_flag_field_is_a_setting() {
    let all = Overrides {
        engine: Some("threaded".into()),
        host: Some("::1".into()),
        port: Some(1),
        threads: Some(2),
        workers: Some(2),
        connection_limit: Some(10),
        cleanup_interval: Some("1s".into()),
        channel_timeout: Some("2s".into()),
        recv_bytes: Some("4KiB".into()),
        send_bytes: Some("4KiB".into()),
        max_request_body_size: Some("1MiB".into()),
        max_request_header_size: Some("8KiB".into()),
        backlog: Some(16),
        overload: Some("reject".into()),
        server_header: Some("r".into()),
        shutdown_timeout: Some("0".into()),
        drain_delay: Some("250ms".into()),
        data_dir: Some("/tmp/x".into()),
        api_keys: Some(vec!["k".into()]),
        api_keys_file: None,
        protect_ops: Some(false),
        job_threads: Some(1),
        job_timeout: Some("90m".into()),
        log_level: Some("debug".into()),
    };
    let loaded = ok(Case {
        flags: all,
        ..Case::default()
    });
    let c = &loaded.config;
    assert_eq!(c.server.backlog, 16);
    assert_eq!(c.shutdown_timeout, Duration::ZERO);
    assert_eq!(c.drain_delay, Duration::from_millis(250));
    assert_eq!(c.job_timeout, Duration::from_secs(90 * 60));
    assert_eq!(c.log_level, "debug");
    for entry in loaded.provenance.iter() {
        if !matches!(entry.key, "api_keys_file" | "profile" | "memory" | "vcpus") {
            assert!(
                matches!(entry.source, Source::Flag(_)),
                "{} from {}",
                entry.key,
                entry.source
            );
        }
    }
}

#[test]
fn errors_are_send_sync_static() {
    fn check<T: Send + Sync + 'static + std::error::Error>() {}
    check::<ConfigError>();
}

#[test]
fn detection_fills_only_what_was_not_given() {
    let opts = LoadOptions::default();
    let vars = vec![("RECON_VCPUS".to_owned(), "3".to_owned())];
    let loaded = load_from(&opts, &vars).unwrap();
    assert_eq!(loaded.resources.cpu_millis, 3000);
    assert_eq!(loaded.provenance.source("vcpus"), Some(&env("RECON_VCPUS")));
    assert!(
        matches!(
            loaded.provenance.source("memory"),
            Some(Source::Detected(_))
        ),
        "{:?}",
        loaded.provenance.source("memory")
    );
    assert_eq!(loaded.config.server.threads.get(), 2);
}

#[test]
fn file_sets_tuning_inputs() {
    let opts = LoadOptions::default();
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(b"vcpus = 1.5\nmemory = \"2GiB\"\nprofile = \"high-concurrency\"\n")
        .unwrap();
    let opts = LoadOptions {
        config_file: Some(f.path().to_path_buf()),
        ..opts
    };
    let loaded = load_from(&opts, &[]).unwrap();
    assert_eq!(loaded.resources, Resources::from_millis(1500, 2 * GIB));
    assert_eq!(loaded.profile, Profile::HighConcurrency);
    assert_eq!(loaded.config.server.threads.get(), 3);
    assert_eq!(loaded.config.server.workers.get(), 2);
    assert_eq!(loaded.provenance.entry("vcpus").unwrap().value, "1.5");
}

/// A backlog no layer above tuning set follows the effective
/// connection_limit by the tuning formula (kept within 128..4096), whichever
/// layer set the limit; a backlog set explicitly wins.
#[test]
fn backlog_follows_an_overridden_connection_limit() {
    let derived = Source::TuningFrom("connection_limit");
    let limit = |n: usize| Overrides {
        connection_limit: Some(n),
        ..Overrides::default()
    };
    let cases: Vec<(Case<'_>, u32, Source)> = vec![
        // Tuned for 16 vCPU: connection_limit 2000, backlog 2000.
        (Case::default(), 2000, Source::Tuning),
        (
            Case {
                env: &[("WAITRESS_CONNECTION_LIMIT", "250")],
                ..Case::default()
            },
            250,
            derived.clone(),
        ),
        (
            Case {
                env: &[("RECON_CONNECTION_LIMIT", "20")],
                ..Case::default()
            },
            128,
            derived.clone(),
        ),
        (
            Case {
                file: Some("connection_limit = 9000\n"),
                ..Case::default()
            },
            4096,
            derived.clone(),
        ),
        (
            Case {
                flags: limit(300),
                ..Case::default()
            },
            300,
            derived.clone(),
        ),
        (
            Case {
                env: &[("RECON_CONNECTION_LIMIT", "250"), ("UVICORN_BACKLOG", "77")],
                ..Case::default()
            },
            77,
            env("UVICORN_BACKLOG"),
        ),
        (
            Case {
                file: Some("backlog = 64\n"),
                flags: limit(300),
                ..Case::default()
            },
            64,
            Source::Default, // replaced by the file's path below
        ),
        (
            Case {
                env: &[("WAITRESS_CONNECTION_LIMIT", "250")],
                flags: Overrides {
                    backlog: Some(99),
                    ..Overrides::default()
                },
                ..Case::default()
            },
            99,
            Source::Flag("--backlog".into()),
        ),
    ];
    for (case, backlog, source) in cases {
        let at = format!("{:?} {:?}", case.env, case.file);
        let (loaded, path) = run(case);
        let loaded = loaded.unwrap();
        let source = match (source, path) {
            (Source::Default, Some(path)) => Source::File(path),
            (source, _) => source,
        };
        assert_eq!(loaded.config.server.backlog, backlog, "{at}");
        let entry = loaded.provenance.entry("backlog").unwrap();
        assert_eq!(entry.value, backlog.to_string(), "{at}");
        assert_eq!(entry.source, source, "{at}");
    }
    assert_eq!(derived.to_string(), "tuning (from connection_limit)");
}

/// `RUST_LOG` is the log filter in effect, over env, file and flags alike,
/// and config reports it so; a different level it overrides is a warning.
#[test]
fn rust_log_is_the_log_level_over_every_layer() {
    let (result, path) = run(Case {
        env: &[("RUST_LOG", "warn"), ("RECON_LOG", "debug")],
        file: Some("log_level = \"trace\"\n"),
        flags: Overrides {
            log_level: Some("info".into()),
            ..Overrides::default()
        },
        ..Case::default()
    });
    let loaded = result.unwrap();
    assert_eq!(loaded.config.log_level, "warn");
    let entry = loaded.provenance.entry("log_level").unwrap();
    assert_eq!(
        (entry.value.as_str(), &entry.source),
        ("warn", &env("RUST_LOG"))
    );
    assert_eq!(
        loaded.warnings,
        ["--log-level=info is ignored: RUST_LOG=warn takes precedence"]
    );
    drop(path);

    let cases: &[WarningCase<'_>] = &[
        (
            &[("RUST_LOG", "warn"), ("RECON_LOG", "debug")],
            &["RECON_LOG=debug is ignored: RUST_LOG=warn takes precedence"],
        ),
        (&[("RUST_LOG", "info"), ("RECON_LOG_LEVEL", "info")], &[]),
        (&[("RUST_LOG", "recon=debug")], &[]),
    ];
    for (vars, want) in cases {
        assert_eq!(warnings(vars), *want, "{vars:?}");
    }

    let (result, path) = run(Case {
        env: &[("RUST_LOG", "warn")],
        file: Some("log_level = \"debug\"\n"),
        ..Case::default()
    });
    assert_eq!(
        result.unwrap().warnings,
        [format!(
            "{}: log_level=debug is ignored: RUST_LOG=warn takes precedence",
            path.unwrap().display()
        )]
    );
    // Without RUST_LOG the layers decide as for any setting.
    let loaded = ok(Case {
        env: &[("RECON_LOG", "debug")],
        ..Case::default()
    });
    assert_eq!(
        loaded.provenance.source("log_level"),
        Some(&env("RECON_LOG"))
    );
}

/// `RUST_LOG` never stops loading, blank or with control characters: it is
/// taken as given (the binary reads what it can of it as directives).
#[test]
fn rust_log_is_never_refused() {
    for value in [" ", "\t", " \t ", "a\u{1}", "info,\u{7f}", "\u{1b}[31m"] {
        let loaded = ok(Case {
            env: &[("RUST_LOG", value)],
            ..Case::default()
        });
        assert_eq!(loaded.config.log_level, value, "{value:?}");
        assert_eq!(
            loaded.provenance.source("log_level"),
            Some(&env("RUST_LOG")),
            "{value:?}"
        );
    }
    // recon's own names stay strict.
    let got = err(Case {
        env: &[("RECON_LOG_LEVEL", " ")],
        ..Case::default()
    });
    assert!(got.starts_with("RECON_LOG_LEVEL=\" \": expected "), "{got}");
}

/// Where each value was written, as errors name it: a file's value with
/// its line, as a bad value from the file would be named.
#[test]
fn provenance_names_the_origin_of_each_value() {
    let (result, path) = run(Case {
        env: &[("RECON_PORT", "9000")],
        file: Some("# recon\nthreads = 3\n\n  log_level = \"debug\"\n"),
        flags: Overrides {
            host: Some("0.0.0.0".into()),
            ..Overrides::default()
        },
        ..Case::default()
    });
    let loaded = result.unwrap();
    let path = path.unwrap().display().to_string();
    let p = &loaded.provenance;
    assert_eq!(p.origin("log_level"), format!("{path}:4: log_level"));
    assert_eq!(p.origin("threads"), format!("{path}:2: threads"));
    assert_eq!(p.entry("threads").unwrap().line, Some(2));
    assert_eq!(p.origin("port"), "RECON_PORT");
    assert_eq!(p.origin("host"), "--host");
    assert_eq!(p.origin("workers"), "workers");
    assert_eq!(p.entry("port").unwrap().line, None);
    // The same place a bad value there is named by.
    let (result, path) = run(Case {
        file: Some("# recon\nthreads = 0\n"),
        ..Case::default()
    });
    let got = result.unwrap_err().to_string();
    let path = path.unwrap().display().to_string();
    assert!(got.starts_with(&format!("{path}:2: threads=")), "{got}");
}

/// Waitress/Uvicorn options recon does not read name the settings to use
/// instead (or say there is nothing to set); other unknown names get the
/// closest name recon reads, compared without their
/// `WAITRESS_`/`UVICORN_`/`RECON_` prefix, when one is close, and otherwise
/// where the names recon reads are listed.
#[test]
fn unread_waitress_and_uvicorn_names_point_to_their_replacement() {
    let lead =
        |name: &str| format!("environment variable {name} is not a recon setting and is ignored; ");
    let cases: &[(&str, &str, &str)] = &[
        (
            "WAITRESS_LISTEN",
            "0.0.0.0:8080",
            "recon binds one address: set RECON_HOST and RECON_PORT (host, port) instead",
        ),
        ("WAITRESS_HOST", "0.0.0.0", "set RECON_HOST (host) instead"),
        ("WAITRESS_PORT", "8080", "set RECON_PORT (port) instead"),
        (
            "UVICORN_LOG_LEVEL",
            "warning",
            "set RECON_LOG_LEVEL (log_level) instead, writing Uvicorn's `warning` as `warn` and `critical` as `error`",
        ),
        (
            "UVICORN_LIMIT_CONCURRENCY",
            "100",
            "for Uvicorn's 503 past the limit, set RECON_CONNECTION_LIMIT=100 and RECON_OVERLOAD=reject (connection_limit, overload)",
        ),
        (
            "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN",
            "30",
            "set RECON_SHUTDOWN_TIMEOUT (shutdown_timeout) instead",
        ),
        (
            "UVICORN_TIMEOUT_KEEP_ALIVE",
            "5",
            "set RECON_CHANNEL_TIMEOUT (channel_timeout) instead; it also closes connections stalled mid-request, so it needs room for slow uploads",
        ),
        (
            "UVICORN_SERVER_HEADER",
            "false",
            "Uvicorn's is an on/off switch; set the header's value with RECON_SERVER_HEADER (server_header)",
        ),
        ("WAITRESS_THREAD", "8", "did you mean WAITRESS_THREADS?"),
        ("UVICORN_THREADS", "8", "did you mean RECON_THREADS?"),
        (
            "RECON_CONECTION_LIMIT",
            "8",
            "did you mean RECON_CONNECTION_LIMIT?",
        ),
        (
            "UVICORN_ROOT_PATH",
            "/api",
            "nothing to set: recon serves from /; have the proxy strip the prefix (nginx: `location /prefix/ { proxy_pass http://recon/; }`)",
        ),
        (
            "WAITRESS_URL_SCHEME",
            "https",
            "recon builds no URL from a request (its Location headers are paths) and logs the peer address: no proxy header is read, nothing to set",
        ),
        (
            "UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE",
            "16384",
            "set RECON_MAX_REQUEST_HEADER_SIZE (max_request_header_size) instead",
        ),
        (
            "WAITRESS_IPV4",
            "false",
            "recon binds the one address in RECON_HOST (host): `::` listens on IPv6 and, with Linux's default net.ipv6.bindv6only=0, on IPv4 too; `0.0.0.0` on IPv4 only",
        ),
        (
            "WAITRESS_IPV6",
            "false",
            "recon binds the one address in RECON_HOST (host): `::` listens on IPv6 and, with Linux's default net.ipv6.bindv6only=0, on IPv4 too; `0.0.0.0` on IPv4 only",
        ),
        (
            "WAITRESS_SERVER_NAME",
            "api.example.com",
            "nothing to set: recon builds no URL from a request (its Location headers are paths), so it needs no server name",
        ),
        (
            "WAITRESS_LOG_SOCKET_ERRORS",
            "false",
            "nothing to set: a client's dropped or broken connection is logged at debug level at most, never at the default `info`",
        ),
        (
            "UVICORN_SSL_KEYFILE",
            "/etc/tls/key.pem",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_SSL_CERTFILE",
            "/etc/tls/cert.pem",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_SSL_KEYFILE_PASSWORD",
            "secret",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_SSL_VERSION",
            "17",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_SSL_CERT_REQS",
            "0",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_SSL_CA_CERTS",
            "/etc/tls/ca.pem",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_SSL_CIPHERS",
            "TLSv1",
            "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front of it (nginx, a load balancer, a Kubernetes ingress)",
        ),
        (
            "UVICORN_HTTP",
            "httptools",
            "nothing to set: each engine has one HTTP implementation (threaded: its own HTTP/1.x; async: hyper's HTTP/1.x and h2c); pick the engine with RECON_ENGINE (engine)",
        ),
        (
            "UVICORN_LOOP",
            "uvloop",
            "nothing to set: the async engine runs on tokio, with RECON_WORKERS (workers) threads; there is no event loop to choose",
        ),
        (
            "UVICORN_ACCESS_LOG",
            "false",
            "nothing to set: recon writes no access log; /metrics counts requests by method, route and status (http_requests_total), and the proxy in front can log each one",
        ),
        (
            "UVICORN_LIMIT_MAX_REQUESTS",
            "10000",
            "nothing to set: recon never exits after a number of requests; to recycle it, restart it from the orchestrator (SIGTERM drains first)",
        ),
        (
            "UVICORN_TIMEOUT_NOTIFY",
            "30",
            "nothing to set: recon's workers are threads of one process, with no process manager waiting on them; the orchestrator's probes (/health, `recon healthcheck`) watch the process",
        ),
        // A name in neither table nor near one: where to look.
        (
            "WAITRESS_CHANNEL_REQUEST_LOOKAHEAD",
            "5",
            "docs/configuration.md lists the names recon reads",
        ),
    ];
    for (name, value, hint) in cases {
        assert_eq!(
            warnings(&[(name, value)]),
            [format!("{}{hint}", lead(name))],
            "{name}"
        );
    }
}

/// Waitress's `ident` is recon's `server_header`: same text, same header.
#[test]
fn waitress_ident_sets_the_server_header() {
    let loaded = ok(Case {
        env: &[("WAITRESS_IDENT", "payments")],
        ..Case::default()
    });
    assert_eq!(loaded.config.server_header, "payments");
    assert_eq!(
        loaded.provenance.source("server_header"),
        Some(&env("WAITRESS_IDENT"))
    );
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        warnings(&[
            ("RECON_SERVER_HEADER", "recon"),
            ("WAITRESS_IDENT", "waitress")
        ]),
        ["WAITRESS_IDENT=waitress is ignored: RECON_SERVER_HEADER=recon takes precedence"]
    );
}
