//! The table of every setting: its key, environment names, flag, kind, and how a raw value parses.
//!
//! Parsing turns text (env, flags) or TOML values into one canonical
//! [`figment::value::Value`] per kind: counts, sizes (bytes) and durations
//! (milliseconds) as integers, names as lower-case strings. Layering merges
//! those; nothing after it parses text again.

use std::net::IpAddr;
use std::time::Duration;

use figment::value::Value;

use crate::recommend::{MAX_CONNECTIONS, MAX_THREADS};
use crate::resources::{Profile, parse_vcpus};
use crate::units::{parse_duration, parse_size};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

/// The least memory recon tunes for: the smallest `memory` accepted, and
/// what a smaller detected limit is raised to.
pub(crate) const MIN_MEMORY: u64 = 64 * MIB;

/// How a setting's value is spelled and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `threaded`/`waitress` or `async`/`uvicorn`.
    Engine,
    /// An IP address, or `localhost`.
    Host,
    /// 0..=65535.
    Port,
    /// A whole number in `min..=max`.
    Count { min: u64, max: u64 },
    /// A duration in `min..=max` milliseconds.
    Duration { min: u64, max: u64 },
    /// A size in `min..=max` bytes.
    Size { min: u64, max: u64 },
    /// `queue` or `reject`.
    Overload,
    /// Any text without control characters (may be empty).
    Text,
    /// Non-empty text.
    NonEmpty,
    /// A filesystem path.
    Path,
    /// A list of API keys: comma-separated in env, an array in TOML.
    Keys,
    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    Bool,
    /// A tuning profile name.
    Profile,
    /// A vCPU count with up to three decimals, kept in thousandths.
    Vcpus,
}

/// One setting.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    /// Key in the config file, in provenance and in `recon config show`.
    pub key: &'static str,
    /// Environment names, highest priority first; the `RECON_*` one is first.
    pub env: &'static [&'static str],
    /// The command-line flag, with dashes.
    pub flag: &'static str,
    /// How it parses.
    pub kind: Kind,
}

const THREADS: Kind = Kind::Count {
    min: 1,
    max: MAX_THREADS as u64,
};
const BUFFER: Kind = Kind::Size {
    min: KIB,
    max: 16 * MIB,
};
const DAY_MS: u64 = 24 * 3_600_000;

/// Every setting, in the order the docs and `recon config show` list them.
/// `profile`, `vcpus` and `memory` are the tuning inputs; the rest land in `Config`.
pub(crate) const SPECS: &[Spec] = &[
    Spec {
        key: "profile",
        env: &["RECON_PROFILE"],
        flag: "--profile",
        kind: Kind::Profile,
    },
    Spec {
        key: "vcpus",
        env: &["RECON_VCPUS"],
        flag: "--vcpus",
        kind: Kind::Vcpus,
    },
    Spec {
        key: "memory",
        env: &["RECON_MEMORY"],
        flag: "--memory",
        kind: Kind::Size {
            min: MIN_MEMORY,
            max: 64 * TIB,
        },
    },
    Spec {
        key: "engine",
        env: &["RECON_ENGINE", "RECON_SERVER_TYPE", "SERVER_TYPE"],
        flag: "--engine",
        kind: Kind::Engine,
    },
    Spec {
        key: "host",
        env: &["RECON_HOST", "UVICORN_HOST", "HOST"],
        flag: "--host",
        kind: Kind::Host,
    },
    Spec {
        key: "port",
        env: &["RECON_PORT", "UVICORN_PORT", "PORT"],
        flag: "--port",
        kind: Kind::Port,
    },
    Spec {
        key: "threads",
        env: &["RECON_THREADS", "WAITRESS_THREADS"],
        flag: "--threads",
        kind: THREADS,
    },
    Spec {
        key: "workers",
        env: &["RECON_WORKERS", "UVICORN_WORKERS", "WEB_CONCURRENCY"],
        flag: "--workers",
        kind: THREADS,
    },
    Spec {
        key: "connection_limit",
        env: &["RECON_CONNECTION_LIMIT", "WAITRESS_CONNECTION_LIMIT"],
        flag: "--connection-limit",
        kind: Kind::Count {
            min: 1,
            max: MAX_CONNECTIONS as u64,
        },
    },
    Spec {
        key: "cleanup_interval",
        env: &["RECON_CLEANUP_INTERVAL", "WAITRESS_CLEANUP_INTERVAL"],
        flag: "--cleanup-interval",
        kind: Kind::Duration {
            min: 10,
            max: 3_600_000,
        },
    },
    Spec {
        key: "channel_timeout",
        env: &["RECON_CHANNEL_TIMEOUT", "WAITRESS_CHANNEL_TIMEOUT"],
        flag: "--channel-timeout",
        kind: Kind::Duration {
            min: 10,
            max: DAY_MS,
        },
    },
    Spec {
        key: "recv_bytes",
        env: &["RECON_RECV_BYTES", "WAITRESS_RECV_BYTES"],
        flag: "--recv-bytes",
        kind: BUFFER,
    },
    Spec {
        key: "send_bytes",
        env: &["RECON_SEND_BYTES", "WAITRESS_SEND_BYTES"],
        flag: "--send-bytes",
        kind: BUFFER,
    },
    Spec {
        key: "max_request_body_size",
        env: &[
            "RECON_MAX_REQUEST_BODY_SIZE",
            "WAITRESS_MAX_REQUEST_BODY_SIZE",
        ],
        flag: "--max-request-body-size",
        kind: Kind::Size { min: KIB, max: TIB },
    },
    Spec {
        key: "max_request_header_size",
        env: &[
            "RECON_MAX_REQUEST_HEADER_SIZE",
            "WAITRESS_MAX_REQUEST_HEADER_SIZE",
        ],
        flag: "--max-request-header-size",
        kind: Kind::Size { min: KIB, max: MIB },
    },
    Spec {
        key: "backlog",
        env: &["RECON_BACKLOG", "WAITRESS_BACKLOG", "UVICORN_BACKLOG"],
        flag: "--backlog",
        kind: Kind::Count { min: 1, max: 65535 },
    },
    Spec {
        key: "overload",
        env: &["RECON_OVERLOAD"],
        flag: "--overload",
        kind: Kind::Overload,
    },
    Spec {
        key: "server_header",
        // Waitress's `ident`: the same text, sent in the same header.
        env: &["RECON_SERVER_HEADER", "WAITRESS_IDENT"],
        flag: "--server-header",
        kind: Kind::Text,
    },
    Spec {
        key: "shutdown_timeout",
        env: &["RECON_SHUTDOWN_TIMEOUT"],
        flag: "--shutdown-timeout",
        kind: Kind::Duration {
            min: 0,
            max: 3_600_000,
        },
    },
    Spec {
        key: "drain_delay",
        env: &["RECON_DRAIN_DELAY"],
        flag: "--drain-delay",
        kind: Kind::Duration {
            min: 0,
            max: 600_000,
        },
    },
    Spec {
        key: "data_dir",
        env: &["RECON_DATA_DIR"],
        flag: "--data-dir",
        kind: Kind::Path,
    },
    Spec {
        key: "api_keys",
        env: &["RECON_API_KEYS"],
        flag: "--api-key",
        kind: Kind::Keys,
    },
    Spec {
        key: "api_keys_file",
        env: &["RECON_API_KEYS_FILE"],
        flag: "--api-keys-file",
        kind: Kind::Path,
    },
    Spec {
        key: "protect_ops",
        env: &["RECON_PROTECT_OPS"],
        flag: "--protect-ops",
        kind: Kind::Bool,
    },
    Spec {
        key: "job_threads",
        env: &["RECON_JOB_THREADS"],
        flag: "--job-threads",
        kind: THREADS,
    },
    Spec {
        key: "job_timeout",
        env: &["RECON_JOB_TIMEOUT"],
        flag: "--job-timeout",
        // Up to a week; at least a millisecond: a job is never unbounded.
        kind: Kind::Duration {
            min: 1,
            max: 7 * DAY_MS,
        },
    },
    Spec {
        key: "log_level",
        env: &["RECON_LOG_LEVEL", "RECON_LOG"],
        flag: "--log-level",
        kind: Kind::NonEmpty,
    },
];

/// A Waitress or Uvicorn option, by the environment name the old deployments
/// used, that recon does not read, and the settings to use instead.
///
/// Checked before the similarity suggestion, which would otherwise point
/// these at an unrelated name (`WAITRESS_IDENT` at `WAITRESS_SEND_BYTES`).
/// An option whose meaning and value format are exactly recon's is an alias
/// in [`SPECS`] instead (`WAITRESS_IDENT` for `server_header`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unread {
    /// The environment name.
    pub name: &'static str,
    /// What to set instead; `{value}` stands for the variable's value.
    pub instead: &'static str,
}

/// What the TLS options of Uvicorn are told.
const NO_TLS: &str = "nothing to set: recon serves plain HTTP (no TLS); terminate TLS in front \
                      of it (nginx, a load balancer, a Kubernetes ingress)";

/// What the Unix-socket and file-descriptor options of both servers are told.
const TCP_ONLY: &str = "recon listens on TCP only: set RECON_HOST and RECON_PORT (host, port)";

/// What Waitress's IPv4 and IPv6 switches are told.
const ONE_ADDRESS: &str = "recon binds the one address in RECON_HOST (host): `::` listens on \
                           IPv6 and, with Linux's default net.ipv6.bindv6only=0, on IPv4 too; \
                           `0.0.0.0` on IPv4 only";

/// What the proxy-header options of both servers are told.
const NO_PROXY_HEADERS: &str = "recon builds no URL from a request (its Location headers are \
                                paths) and logs the peer address: no proxy header is read, \
                                nothing to set";

/// Every [`Unread`] name, Waitress's first; docs/configuration.md shows this table.
pub(crate) const UNREAD: &[Unread] = &[
    Unread {
        name: "WAITRESS_HOST",
        instead: "set RECON_HOST (host) instead",
    },
    Unread {
        name: "WAITRESS_PORT",
        instead: "set RECON_PORT (port) instead",
    },
    Unread {
        name: "WAITRESS_LISTEN",
        instead: "recon binds one address: set RECON_HOST and RECON_PORT (host, port) instead",
    },
    Unread {
        name: "UVICORN_LOG_LEVEL",
        instead: "set RECON_LOG_LEVEL (log_level) instead, \
                  writing Uvicorn's `warning` as `warn` and `critical` as `error`",
    },
    Unread {
        name: "UVICORN_LIMIT_CONCURRENCY",
        instead: "for Uvicorn's 503 past the limit, \
                  set RECON_CONNECTION_LIMIT={value} and RECON_OVERLOAD=reject (connection_limit, overload)",
    },
    Unread {
        name: "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN",
        instead: "set RECON_SHUTDOWN_TIMEOUT (shutdown_timeout) instead",
    },
    Unread {
        name: "UVICORN_TIMEOUT_KEEP_ALIVE",
        instead: "set RECON_CHANNEL_TIMEOUT (channel_timeout) instead; \
                  it also closes connections stalled mid-request, so it needs room for slow uploads",
    },
    Unread {
        name: "UVICORN_SERVER_HEADER",
        instead: "Uvicorn's is an on/off switch; set the header's value with RECON_SERVER_HEADER (server_header)",
    },
    Unread {
        name: "WAITRESS_TRUSTED_PROXY",
        instead: NO_PROXY_HEADERS,
    },
    Unread {
        name: "WAITRESS_TRUSTED_PROXY_COUNT",
        instead: NO_PROXY_HEADERS,
    },
    Unread {
        name: "WAITRESS_TRUSTED_PROXY_HEADERS",
        instead: NO_PROXY_HEADERS,
    },
    Unread {
        name: "WAITRESS_URL_SCHEME",
        instead: NO_PROXY_HEADERS,
    },
    Unread {
        name: "UVICORN_PROXY_HEADERS",
        instead: NO_PROXY_HEADERS,
    },
    Unread {
        name: "UVICORN_FORWARDED_ALLOW_IPS",
        instead: NO_PROXY_HEADERS,
    },
    Unread {
        name: "WAITRESS_URL_PREFIX",
        instead: "nothing to set: recon serves from /; have the proxy strip the prefix (nginx: `location /prefix/ { proxy_pass http://recon/; }`)",
    },
    Unread {
        name: "UVICORN_ROOT_PATH",
        instead: "nothing to set: recon serves from /; have the proxy strip the prefix (nginx: `location /prefix/ { proxy_pass http://recon/; }`)",
    },
    Unread {
        name: "WAITRESS_UNIX_SOCKET",
        instead: TCP_ONLY,
    },
    Unread {
        name: "UVICORN_UDS",
        instead: TCP_ONLY,
    },
    Unread {
        name: "UVICORN_FD",
        instead: TCP_ONLY,
    },
    Unread {
        name: "WAITRESS_IPV4",
        instead: ONE_ADDRESS,
    },
    Unread {
        name: "WAITRESS_IPV6",
        instead: ONE_ADDRESS,
    },
    Unread {
        name: "WAITRESS_SERVER_NAME",
        instead: "nothing to set: recon builds no URL from a request (its Location headers are paths), \
                  so it needs no server name",
    },
    Unread {
        name: "WAITRESS_LOG_SOCKET_ERRORS",
        instead: "nothing to set: a client's dropped or broken connection is logged \
                  at debug level at most, never at the default `info`",
    },
    Unread {
        name: "WAITRESS_EXPOSE_TRACEBACKS",
        instead: "nothing to set: recon never sends internal details; a 500 carries a generic problem body and the detail goes to the log",
    },
    Unread {
        name: "WAITRESS_INBUF_OVERFLOW",
        instead: "recon streams request bodies to disk and responses from it in recv_bytes / send_bytes pieces (RECON_RECV_BYTES, RECON_SEND_BYTES): nothing is buffered whole",
    },
    Unread {
        name: "WAITRESS_OUTBUF_OVERFLOW",
        instead: "recon streams request bodies to disk and responses from it in recv_bytes / send_bytes pieces (RECON_RECV_BYTES, RECON_SEND_BYTES): nothing is buffered whole",
    },
    Unread {
        name: "WAITRESS_OUTBUF_HIGH_WATERMARK",
        instead: "recon streams request bodies to disk and responses from it in recv_bytes / send_bytes pieces (RECON_RECV_BYTES, RECON_SEND_BYTES): nothing is buffered whole",
    },
    Unread {
        name: "WAITRESS_ASYNCORE_USE_POLL",
        instead: "recon has no asyncore loop (the threaded engine polls with epoll): nothing to set",
    },
    Unread {
        name: "WAITRESS_ASYNCORE_LOOP_TIMEOUT",
        instead: "recon has no asyncore loop (the threaded engine polls with epoll): nothing to set",
    },
    Unread {
        name: "UVICORN_SSL_KEYFILE",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_SSL_CERTFILE",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_SSL_KEYFILE_PASSWORD",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_SSL_VERSION",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_SSL_CERT_REQS",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_SSL_CA_CERTS",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_SSL_CIPHERS",
        instead: NO_TLS,
    },
    Unread {
        name: "UVICORN_HTTP",
        instead: "nothing to set: each engine has one HTTP implementation (threaded: its own HTTP/1.x; \
                  async: hyper's HTTP/1.x and h2c); pick the engine with RECON_ENGINE (engine)",
    },
    Unread {
        name: "UVICORN_LOOP",
        instead: "nothing to set: the async engine runs on tokio, with RECON_WORKERS (workers) threads; \
                  there is no event loop to choose",
    },
    Unread {
        name: "UVICORN_ACCESS_LOG",
        instead: "nothing to set: recon writes no access log; /metrics counts requests by method, \
                  route and status (http_requests_total), and the proxy in front can log each one",
    },
    Unread {
        name: "UVICORN_LIMIT_MAX_REQUESTS",
        instead: "nothing to set: recon never exits after a number of requests; \
                  to recycle it, restart it from the orchestrator (SIGTERM drains first)",
    },
    Unread {
        name: "UVICORN_TIMEOUT_NOTIFY",
        instead: "nothing to set: recon's workers are threads of one process, with no process manager \
                  waiting on them; the orchestrator's probes (/health, `recon healthcheck`) watch the process",
    },
    Unread {
        name: "UVICORN_RELOAD",
        instead: "nothing to set: recon does not reload itself; restart it (`just serve-async-dev` rebuilds and runs the current code)",
    },
    Unread {
        name: "UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE",
        instead: "set RECON_MAX_REQUEST_HEADER_SIZE (max_request_header_size) instead",
    },
    Unread {
        name: "UVICORN_WS",
        instead: "recon serves no WebSockets (job progress is a Server-Sent Events stream): nothing to set",
    },
];

/// The [`Unread`] entry of environment name `name`.
pub(crate) fn unread(name: &str) -> Option<&'static Unread> {
    UNREAD.iter().find(|u| u.name == name)
}

/// The environment variable names of setting `key`, the `RECON_*` one first and
/// then the Waitress/Uvicorn aliases it also reads; empty for an unknown key.
pub fn env_names(key: &str) -> &'static [&'static str] {
    spec(key).map_or(&[], |s| s.env)
}

/// Every setting key, in the order the docs and `recon config show` list them.
pub fn setting_keys() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.key)
}

/// The spec of `key`, if it is a setting.
pub(crate) fn spec(key: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.key == key)
}

/// A value as it arrived, before parsing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RawValue {
    /// Text: every env var and flag, and TOML strings.
    Text(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML array of strings, or a flag given several times.
    List(Vec<String>),
    /// Any other TOML value, shown as TOML.
    Other(String),
}

impl RawValue {
    /// The value as the user wrote it, for error messages.
    pub fn shown(&self) -> String {
        match self {
            RawValue::Text(t) | RawValue::Other(t) => t.clone(),
            RawValue::Int(i) => i.to_string(),
            RawValue::Bool(b) => b.to_string(),
            RawValue::List(items) => items.join(","),
        }
    }
}

/// What a kind expects, for the message after `expected`.
pub(crate) fn expected(kind: Kind) -> String {
    match kind {
        Kind::Engine => "threaded (or waitress) or async (or uvicorn)".to_owned(),
        Kind::Host => "an IP address such as 127.0.0.1, 0.0.0.0 or ::, or localhost".to_owned(),
        Kind::Port => "a port number from 0 to 65535".to_owned(),
        Kind::Count { min, max } => format!("a whole number from {min} to {max}"),
        Kind::Duration { min, max } => format!(
            "a duration from {} to {}, in seconds or with a unit: 30, 30s, 2m, 500ms",
            show_millis(min),
            show_millis(max)
        ),
        Kind::Size { min, max } => format!(
            "a size from {} to {}, in bytes or with a unit: 65536, 64KiB, 512MiB, 32G",
            crate::units::format_size(min),
            crate::units::format_size(max)
        ),
        Kind::Overload => "queue or reject".to_owned(),
        Kind::Text => "text without control characters".to_owned(),
        Kind::NonEmpty => "non-empty text, e.g. info or recon=debug".to_owned(),
        Kind::Path => "a file or directory path".to_owned(),
        Kind::Keys => "API keys separated by commas, each non-empty".to_owned(),
        Kind::Bool => "true or false (also 1/0, yes/no, on/off)".to_owned(),
        Kind::Profile => "balanced, large-files, high-concurrency or memory-constrained".to_owned(),
        Kind::Vcpus => "a positive number of vCPUs, e.g. 16 or 1.5".to_owned(),
    }
}

fn show_millis(ms: u64) -> String {
    crate::units::format_duration(Duration::from_millis(ms))
}

/// Parses `raw` as `kind` into its canonical value.
///
/// # Errors
/// The expected form, when the value does not parse or is out of range.
pub(crate) fn parse(kind: Kind, raw: &RawValue) -> Result<Value, String> {
    let bad = || expected(kind);
    let text = || match raw {
        RawValue::Text(t) => Some(t.trim()),
        _ => None,
    };
    // Integers for kinds that read integers, from TOML ints or text.
    let int = |parse_text: &dyn Fn(&str) -> Option<u64>| -> Option<u64> {
        match raw {
            RawValue::Int(i) => u64::try_from(*i).ok(),
            RawValue::Text(t) => parse_text(t.trim()),
            _ => None,
        }
    };
    match kind {
        Kind::Engine => match text().map(str::to_ascii_lowercase).as_deref() {
            Some("threaded" | "waitress") => Ok(Value::from("threaded")),
            Some("async" | "uvicorn") => Ok(Value::from("async")),
            _ => Err(bad()),
        },
        Kind::Host => {
            let t = text().ok_or_else(bad)?;
            let ip = if t.eq_ignore_ascii_case("localhost") {
                Ok(IpAddr::from([127, 0, 0, 1]))
            } else {
                t.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
            };
            ip.map(|ip| Value::from(ip.to_string())).map_err(|_| bad())
        }
        Kind::Port => int(&|t| t.parse().ok())
            .filter(|p| *p <= 65535)
            .map(Value::from)
            .ok_or_else(bad),
        Kind::Count { min, max } => int(&|t| t.replace('_', "").parse().ok())
            .filter(|n| (min..=max).contains(n))
            .map(Value::from)
            .ok_or_else(bad),
        Kind::Duration { min, max } => int(&|t| {
            parse_duration(t)
                .ok()
                .and_then(|d| u64::try_from(d.as_millis()).ok())
        })
        .map(|n| match raw {
            // A TOML integer is seconds, like plain text.
            RawValue::Int(_) => n.saturating_mul(1000),
            _ => n,
        })
        .filter(|ms| (min..=max).contains(ms))
        .map(Value::from)
        .ok_or_else(bad),
        Kind::Size { min, max } => int(&|t| parse_size(t).ok())
            .filter(|n| (min..=max).contains(n))
            .map(Value::from)
            .ok_or_else(bad),
        Kind::Overload => match text().map(str::to_ascii_lowercase).as_deref() {
            Some(name @ ("queue" | "reject")) => Ok(Value::from(name)),
            _ => Err(bad()),
        },
        Kind::Text => match raw {
            RawValue::Text(t) if !t.chars().any(char::is_control) => Ok(Value::from(t.as_str())),
            _ => Err(bad()),
        },
        Kind::NonEmpty | Kind::Path => match text() {
            Some(t) if !t.is_empty() && !t.chars().any(char::is_control) => Ok(Value::from(t)),
            _ => Err(bad()),
        },
        Kind::Keys => {
            let keys: Vec<String> = match raw {
                RawValue::Text(t) => t.split(',').map(|k| k.trim().to_owned()).collect(),
                RawValue::List(items) => items.iter().map(|k| k.trim().to_owned()).collect(),
                _ => return Err(bad()),
            };
            if keys
                .iter()
                .any(|k| k.is_empty() || k.chars().any(char::is_control))
            {
                return Err(bad());
            }
            Ok(Value::from(keys))
        }
        Kind::Bool => match raw {
            RawValue::Bool(b) => Ok(Value::from(*b)),
            RawValue::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Value::from(true)),
                "false" | "0" | "no" | "off" => Ok(Value::from(false)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        },
        Kind::Profile => text()
            .and_then(|t| t.parse::<Profile>().ok())
            .map(|p| Value::from(p.as_str()))
            .ok_or_else(bad),
        Kind::Vcpus => match raw {
            RawValue::Int(i) => u32::try_from(*i)
                .ok()
                .and_then(|n| n.checked_mul(1000))
                .filter(|n| *n > 0),
            RawValue::Text(t) => parse_vcpus(t),
            _ => None,
        }
        .map(Value::from)
        .ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> RawValue {
        RawValue::Text(s.to_owned())
    }

    fn kind(key: &str) -> Kind {
        spec(key).map(|s| s.kind).unwrap_or(Kind::Text)
    }

    #[test]
    fn every_key_is_unique_and_every_env_name_too() {
        let mut keys: Vec<_> = SPECS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), SPECS.len());
        let mut envs: Vec<_> = SPECS.iter().flat_map(|s| s.env.iter()).collect();
        let all = envs.len();
        envs.sort_unstable();
        envs.dedup();
        assert_eq!(envs.len(), all);
        assert!(SPECS.iter().all(|s| s.env[0].starts_with("RECON_")));
    }

    /// A name is either read or in the table of names recon does not read,
    /// which names what to set instead (or says there is nothing to set).
    #[test]
    fn unread_names_are_not_read_and_name_a_recon_variable() {
        for u in UNREAD {
            assert!(
                SPECS.iter().all(|s| !s.env.contains(&u.name)),
                "{} is read",
                u.name
            );
            assert!(
                u.instead.contains("RECON_") || u.instead.contains("nothing to set"),
                "{}: {}",
                u.name,
                u.instead
            );
        }
    }

    /// docs/configuration.md has a row for every name of the table.
    #[test]
    fn every_unread_name_is_documented() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let docs = std::fs::read_to_string(path).unwrap_or_default();
        for u in UNREAD {
            assert!(docs.contains(&format!("| `{}` |", u.name)), "{}", u.name);
        }
    }

    #[test]
    fn good_values_parse_to_canonical_form() {
        let cases: &[(&str, RawValue, Value)] = &[
            ("threads", text("12"), Value::from(12u64)),
            ("threads", RawValue::Int(12), Value::from(12u64)),
            ("engine", text("Waitress"), Value::from("threaded")),
            ("engine", text("uvicorn"), Value::from("async")),
            ("host", text("0.0.0.0"), Value::from("0.0.0.0")),
            ("host", text("localhost"), Value::from("127.0.0.1")),
            ("host", text("[::1]"), Value::from("::1")),
            ("cleanup_interval", text("2m"), Value::from(120_000u64)),
            (
                "cleanup_interval",
                RawValue::Int(30),
                Value::from(30_000u64),
            ),
            ("recv_bytes", text("256KiB"), Value::from(262_144u64)),
            ("memory", text("32G"), Value::from(32u64 << 30)),
            ("vcpus", text("1.5"), Value::from(1500u32)),
            ("vcpus", RawValue::Int(4), Value::from(4000u32)),
            ("protect_ops", text("off"), Value::from(false)),
            ("overload", text("Reject"), Value::from("reject")),
            ("profile", text("large-files"), Value::from("large-files")),
            (
                "api_keys",
                text("a, b"),
                Value::from(vec!["a".to_owned(), "b".to_owned()]),
            ),
        ];
        for (key, raw, want) in cases {
            assert_eq!(parse(kind(key), raw).as_ref(), Ok(want), "{key} {raw:?}");
        }
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let cases: &[(&str, RawValue, &str)] = &[
            ("threads", text("abc"), "a whole number from 1 to 1024"),
            ("threads", text("0"), "a whole number from 1 to 1024"),
            (
                "threads",
                RawValue::Int(-3),
                "a whole number from 1 to 1024",
            ),
            ("send_bytes", text("10"), "a size from 1KiB to 16MiB"),
            (
                "engine",
                text("gunicorn"),
                "threaded (or waitress) or async",
            ),
            ("port", text("70000"), "a port number from 0 to 65535"),
            (
                "channel_timeout",
                text("forever"),
                "a duration from 10ms to 24h",
            ),
            ("api_keys", text("a,,b"), "API keys separated by commas"),
            ("protect_ops", text("maybe"), "true or false"),
            ("vcpus", text("0"), "a positive number of vCPUs"),
            ("host", text("example.com"), "an IP address"),
        ];
        for (key, raw, want) in cases {
            let err = parse(kind(key), raw).expect_err(key);
            assert!(err.starts_with(want), "{key} {raw:?}: {err}");
        }
    }
}
