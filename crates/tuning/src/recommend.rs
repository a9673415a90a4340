//! `recommend`: from [`Resources`] and a [`Profile`] to every server setting, each with its reason.
//!
//! Pure arithmetic on integers (thousandths of a vCPU, bytes), no I/O. The
//! formulas, stated once here and in docs/configuration.md:
//!
//! | value | balanced | large-files | high-concurrency | memory-constrained |
//! |---|---|---|---|---|
//! | threads | max(2, 75% of vCPUs) | vCPUs clamped to 2..=8 | max(2, 2 x vCPUs) | balanced, at most 4 |
//! | workers | vCPUs rounded up | same | same | same, at most 4 |
//! | connection_limit | max(50, 125 per vCPU) | balanced, at most 500 | max(100, 250 per vCPU) | balanced, at most 500 |
//! | cleanup_interval | 30 s at <= 8 vCPUs, 20 s at >= 16, linear between | balanced | 10 s | balanced |
//! | channel_timeout | 120 s at <= 8 vCPUs, 180 s at >= 16, linear between | 600 s | 60 s | balanced |
//! | recv/send bytes | 64 KiB | 256 KiB | 64 KiB | 64 KiB |
//!
//! Then the memory budget: a share of RAM (half, a quarter when memory-constrained)
//! is split in two; connection buffers (`connection_limit x (recv + send)`) must
//! fit one half and per-request working sets (`threads x working set`) the other.
//! A value that does not fit is clamped and its reason says so. Every cap depends
//! on RAM alone and every formula on vCPUs alone, so each value is monotone in both.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::config::ServerSettings;
use crate::resources::{Profile, Resources};
use crate::units::{format_duration, format_size};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Most threads or workers ever recommended (and accepted by validation).
pub const MAX_THREADS: usize = 1024;

/// Most connections ever recommended (and accepted by validation).
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Fewest connections the memory budget may clamp `connection_limit` to.
const MIN_CONNECTIONS: u64 = 16;

/// One recommended value and the one-line reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommended<T> {
    /// The value.
    pub value: T,
    /// Why, in one line: the formula and any clamp.
    pub reason: String,
}

/// Every server setting recommended for some resources and profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// The resources this is for.
    pub resources: Resources,
    /// The profile this is for.
    pub profile: Profile,
    /// Bytes of RAM the connection buffers and working sets may use together.
    pub memory_budget: u64,
    /// Threaded engine worker threads.
    pub threads: Recommended<NonZeroUsize>,
    /// Async engine worker threads.
    pub workers: Recommended<NonZeroUsize>,
    /// Most connections open at once.
    pub connection_limit: Recommended<NonZeroUsize>,
    /// How often idle connections are swept.
    pub cleanup_interval: Recommended<Duration>,
    /// Idle or stalled connections are closed after this.
    pub channel_timeout: Recommended<Duration>,
    /// Socket read size and receive buffer.
    pub recv_bytes: Recommended<NonZeroUsize>,
    /// Socket write size and send buffer.
    pub send_bytes: Recommended<NonZeroUsize>,
    /// Largest request body accepted.
    pub max_request_body_size: Recommended<u64>,
    /// Largest request head accepted.
    pub max_request_header_size: Recommended<usize>,
    /// Listen backlog.
    pub backlog: Recommended<u32>,
}

/// One row of a recommendation for display: setting key, value as text, reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The setting's key, as in the config file: `threads`.
    pub key: &'static str,
    /// The value as the config file would spell it: `12`, `20s`, `64KiB`.
    pub value: String,
    /// The one-line reason.
    pub reason: String,
}

impl Recommendation {
    /// The recommended values as the engines take them.
    pub fn settings(&self) -> ServerSettings {
        ServerSettings {
            threads: self.threads.value,
            workers: self.workers.value,
            connection_limit: self.connection_limit.value,
            cleanup_interval: self.cleanup_interval.value,
            channel_timeout: self.channel_timeout.value,
            recv_bytes: self.recv_bytes.value,
            send_bytes: self.send_bytes.value,
            max_request_body_size: self.max_request_body_size.value,
            max_request_header_size: self.max_request_header_size.value,
            backlog: self.backlog.value,
        }
    }

    /// Every value with its reason, in the order the docs list settings.
    pub fn rows(&self) -> Vec<Row> {
        fn row(key: &'static str, value: String, reason: &str) -> Row {
            Row {
                key,
                value,
                reason: reason.to_owned(),
            }
        }
        vec![
            row(
                "threads",
                self.threads.value.to_string(),
                &self.threads.reason,
            ),
            row(
                "workers",
                self.workers.value.to_string(),
                &self.workers.reason,
            ),
            row(
                "connection_limit",
                self.connection_limit.value.to_string(),
                &self.connection_limit.reason,
            ),
            row(
                "cleanup_interval",
                format_duration(self.cleanup_interval.value),
                &self.cleanup_interval.reason,
            ),
            row(
                "channel_timeout",
                format_duration(self.channel_timeout.value),
                &self.channel_timeout.reason,
            ),
            row(
                "recv_bytes",
                self.recv_bytes.value.to_string(),
                &self.recv_bytes.reason,
            ),
            row(
                "send_bytes",
                self.send_bytes.value.to_string(),
                &self.send_bytes.reason,
            ),
            row(
                "max_request_body_size",
                format_size(self.max_request_body_size.value),
                &self.max_request_body_size.reason,
            ),
            row(
                "max_request_header_size",
                format_size(self.max_request_header_size.value as u64),
                &self.max_request_header_size.reason,
            ),
            row(
                "backlog",
                self.backlog.value.to_string(),
                &self.backlog.reason,
            ),
        ]
    }
}

/// The per-profile constants the formulas use.
#[derive(Debug, Clone, Copy)]
struct Shape {
    buffer: u64,
    working_set: u64,
    /// Memory budget as a fraction of RAM: `budget_num / budget_den`.
    budget_den: u64,
    max_body: u64,
}

fn shape(profile: Profile) -> Shape {
    match profile {
        Profile::Balanced => Shape {
            buffer: 64 * KIB,
            working_set: 32 * MIB,
            budget_den: 2,
            max_body: GIB,
        },
        Profile::LargeFiles => Shape {
            buffer: 256 * KIB,
            working_set: 128 * MIB,
            budget_den: 2,
            max_body: 10 * GIB,
        },
        Profile::HighConcurrency => Shape {
            buffer: 64 * KIB,
            working_set: 16 * MIB,
            budget_den: 2,
            max_body: 256 * MIB,
        },
        Profile::MemoryConstrained => Shape {
            buffer: 64 * KIB,
            working_set: 16 * MIB,
            budget_den: 4,
            max_body: GIB,
        },
    }
}

/// Recommends every server setting for `resources` and `profile`.
///
/// Reproduces the reference figures: 16 vCPU / 32 GiB balanced gives 12 threads,
/// 2000 connections, 20 s cleanup and 180 s channel timeout; 8 vCPU / 16 GiB
/// gives 6, 1000, 30 s and 120 s.
pub fn recommend(resources: &Resources, profile: Profile) -> Recommendation {
    let v = u64::from(resources.cpu_millis);
    let vcpus = resources.vcpus_display();
    let s = shape(profile);
    let budget = resources.memory_bytes / s.budget_den;
    let half = budget / 2;
    let budget_text = format!(
        "1/{} of {} RAM",
        s.budget_den,
        crate::units::format_size_approx(resources.memory_bytes)
    );

    // Threads from CPUs, then the memory cap.
    let balanced_threads = (v * 3 / 4 / 1000).max(2);
    let (threads_cpu, threads_why) = match profile {
        Profile::Balanced => (
            balanced_threads,
            format!("75% of {vcpus} vCPUs, at least 2"),
        ),
        Profile::LargeFiles => (
            (v / 1000).clamp(2, 8),
            format!("{vcpus} vCPUs, kept within 2..=8: each thread carries a large upload"),
        ),
        Profile::HighConcurrency => (
            (v * 2 / 1000).max(2),
            format!("2 x {vcpus} vCPUs: many short requests wait on I/O"),
        ),
        Profile::MemoryConstrained => (
            balanced_threads.min(4),
            format!("75% of {vcpus} vCPUs, at least 2, at most 4 to save memory"),
        ),
    };
    let (threads_cpu, threads_why) = at_most(threads_cpu, threads_why, MAX_THREADS);
    let threads_cap = (half / s.working_set).max(1);
    let threads = threads_cpu.min(threads_cap);
    let threads_reason = if threads < threads_cpu {
        let clamp = clamp_reason(threads, (s.working_set, "working sets"), half, &budget_text);
        format!("{threads_why} would be {threads_cpu}; {clamp}")
    } else {
        threads_why
    };

    let workers_cpu = u64::from(resources.vcpus_ceil());
    let (workers, workers_reason) = match profile {
        Profile::MemoryConstrained => (
            workers_cpu.min(4),
            format!("one tokio worker per vCPU ({vcpus}, rounded up), at most 4"),
        ),
        _ => at_most(
            workers_cpu,
            format!("one tokio worker per vCPU ({vcpus}, rounded up)"),
            MAX_THREADS,
        ),
    };

    // Connections from CPUs, then the memory cap.
    let balanced_conns = (v * 125 / 1000).max(50);
    let (conns_cpu, conns_why) = match profile {
        Profile::Balanced => (
            balanced_conns,
            format!("125 per vCPU x {vcpus}, at least 50"),
        ),
        Profile::LargeFiles => (
            balanced_conns.min(500),
            "125 per vCPU, at most 500: heavy uploads, fewer at once".to_owned(),
        ),
        Profile::HighConcurrency => (
            (v * 250 / 1000).max(100),
            format!("250 per vCPU x {vcpus}, at least 100"),
        ),
        Profile::MemoryConstrained => (
            balanced_conns.min(500),
            "125 per vCPU, at most 500 to save memory".to_owned(),
        ),
    };
    let (conns_cpu, conns_why) = at_most(conns_cpu, conns_why, MAX_CONNECTIONS);
    let per_conn = 2 * s.buffer;
    let conns_cap = (half / per_conn).max(MIN_CONNECTIONS);
    let conns = conns_cpu.min(conns_cap);
    let conns_reason = if conns < conns_cpu {
        let clamp = clamp_reason(conns, (per_conn, "of buffers"), half, &budget_text);
        format!("{conns_why} would be {conns_cpu}; {clamp}")
    } else {
        conns_why
    };

    // Timeouts: interpolate between the 8 and 16 vCPU reference points.
    let t = v.clamp(8000, 16000) - 8000;
    let balanced_cleanup = 30 - t * 10 / 8000;
    let balanced_channel = 120 + t * 60 / 8000;
    let (cleanup, cleanup_reason) = match profile {
        Profile::HighConcurrency => (10, "sweep often to free slots for new clients".to_owned()),
        _ => (
            balanced_cleanup,
            "30 s up to 8 vCPUs, 20 s from 16, linear between: more connections, faster sweeps"
                .to_owned(),
        ),
    };
    let (channel, channel_reason) = match profile {
        Profile::LargeFiles => (
            600,
            "10 minutes: large file uploads and downloads".to_owned(),
        ),
        Profile::HighConcurrency => (60, "short requests; free stalled slots fast".to_owned()),
        _ => (
            balanced_channel,
            "120 s up to 8 vCPUs, 180 s from 16, linear between: bigger boxes take bigger files"
                .to_owned(),
        ),
    };

    let buffer_reason = match profile {
        Profile::LargeFiles => "256 KiB: fewer system calls per large file".to_owned(),
        _ => "64 KiB: Waitress's tuned default".to_owned(),
    };
    let body_reason = match profile {
        Profile::LargeFiles => "10 GiB: bodies stream to disk, RAM is not the bound",
        Profile::HighConcurrency => "256 MiB: short requests",
        _ => "1 GiB: bodies stream to disk, RAM is not the bound",
    };

    let nz = |x: u64| {
        NonZeroUsize::new(usize::try_from(x).unwrap_or(usize::MAX)).unwrap_or(NonZeroUsize::MIN)
    };
    Recommendation {
        resources: *resources,
        profile,
        memory_budget: budget,
        threads: Recommended {
            value: nz(threads),
            reason: threads_reason,
        },
        workers: Recommended {
            value: nz(workers),
            reason: workers_reason,
        },
        connection_limit: Recommended {
            value: nz(conns),
            reason: conns_reason,
        },
        cleanup_interval: Recommended {
            value: Duration::from_secs(cleanup),
            reason: cleanup_reason,
        },
        channel_timeout: Recommended {
            value: Duration::from_secs(channel),
            reason: channel_reason,
        },
        recv_bytes: Recommended {
            value: nz(s.buffer),
            reason: buffer_reason.clone(),
        },
        send_bytes: Recommended {
            value: nz(s.buffer),
            reason: buffer_reason,
        },
        max_request_body_size: Recommended {
            value: s.max_body,
            reason: body_reason.to_owned(),
        },
        max_request_header_size: Recommended {
            value: 64 * 1024,
            reason: "64 KiB: room for large cookies and tokens, 431 past it".to_owned(),
        },
        backlog: Recommended {
            value: backlog_for(nz(conns)),
            reason: "connection_limit kept within 128..=4096: waiting clients queue here"
                .to_owned(),
        },
    }
}

/// Why a count was lowered to `count` for the memory budget, whose half
/// (`half` bytes) must hold `count` items of `each` bytes (`what`: `working
/// sets`, `of buffers`). A count is never lowered below its floor (1
/// thread, 16 connections), so it may be held there with its items still
/// not fitting: the reason then says so rather than claim they fit.
fn clamp_reason(count: u64, (each, what): (u64, &str), half: u64, budget_text: &str) -> String {
    let fits = count.saturating_mul(each) <= half;
    let each = format_size(each);
    if fits {
        format!("clamped so {count} x {each} {what} fit half the memory budget ({budget_text})")
    } else {
        format!(
            "held at its floor of {count}, and even {count} x {each} {what} do not fit half the memory budget ({} of {budget_text})",
            crate::units::format_size_approx(half)
        )
    }
}

/// `value` kept to `max` (what validation accepts), the reason saying so
/// when it was above.
fn at_most(value: u64, why: String, max: usize) -> (u64, String) {
    let max = max as u64;
    if value > max {
        (max, format!("{why} would be {value}; at most {max}"))
    } else {
        (value, why)
    }
}

/// The listen backlog for `connection_limit`: the limit kept within 128..=4096.
///
/// The tuning layer's formula, and what a backlog no layer above tuning set
/// becomes when a higher layer sets `connection_limit`.
pub fn backlog_for(connection_limit: NonZeroUsize) -> u32 {
    let clamped = connection_limit.get().clamp(128, 4096);
    u32::try_from(clamped).unwrap_or(4096)
}

/// The reference table docs/configuration.md shows: every profile's
/// recommendation for nine sizes from 1 vCPU / 512 MiB to 96 vCPU / 192 GiB, as Markdown.
pub fn reference_table_markdown() -> String {
    use std::fmt::Write as _;
    let sizes = [
        Resources::new(1, 512 * MIB),
        Resources::from_millis(1500, 2 * GIB),
        Resources::new(2, 4 * GIB),
        Resources::new(4, 8 * GIB),
        Resources::new(8, 16 * GIB),
        Resources::new(12, 24 * GIB),
        Resources::new(16, 32 * GIB),
        Resources::new(48, 96 * GIB),
        Resources::new(96, 192 * GIB),
    ];
    let mut out = String::new();
    for profile in Profile::ALL {
        let _ = write!(
            out,
            "\n**{profile}**\n\n\
             | resources | threads | workers | connection_limit | cleanup_interval | channel_timeout | recv/send | backlog |\n\
             |---|---|---|---|---|---|---|---|\n"
        );
        for r in sizes {
            let s = recommend(&r, profile).settings();
            let _ = writeln!(
                out,
                "| {r} | {} | {} | {} | {} | {} | {} | {} |",
                s.threads,
                s.workers,
                s.connection_limit,
                format_duration(s.cleanup_interval),
                format_duration(s.channel_timeout),
                s.recv_bytes,
                s.backlog
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(vcpus: u32, gib: u64, profile: Profile) -> ServerSettings {
        recommend(&Resources::new(vcpus, gib * GIB), profile).settings()
    }

    /// (vCPUs, GiB, profile, threads, connection_limit, cleanup s, channel s, buffers)
    type Reference = (u32, u64, Profile, usize, usize, u64, u64, usize);
    const REFERENCE: &[Reference] = &[
        (16, 32, Profile::Balanced, 12, 2000, 20, 180, 65536),
        (8, 16, Profile::Balanced, 6, 1000, 30, 120, 65536),
        (16, 32, Profile::LargeFiles, 8, 500, 20, 600, 262_144),
        (8, 16, Profile::LargeFiles, 8, 500, 30, 600, 262_144),
        (16, 32, Profile::MemoryConstrained, 4, 500, 20, 180, 65536),
        (8, 16, Profile::MemoryConstrained, 4, 500, 30, 120, 65536),
    ];

    #[test]
    fn reproduces_the_reference_figures() {
        for &(vcpus, gib, profile, threads, conns, cleanup, channel, buf) in REFERENCE {
            let s = rec(vcpus, gib, profile);
            let at = format!("{vcpus} vCPU {gib} GiB {profile}");
            assert_eq!(s.threads.get(), threads, "{at}");
            assert_eq!(s.connection_limit.get(), conns, "{at}");
            assert_eq!(s.cleanup_interval, Duration::from_secs(cleanup), "{at}");
            assert_eq!(s.channel_timeout, Duration::from_secs(channel), "{at}");
            assert_eq!(s.recv_bytes.get(), buf, "{at}");
            assert_eq!(s.send_bytes.get(), buf, "{at}");
        }
    }

    #[test]
    fn reference_holds_with_decimal_gigabytes() {
        let s = recommend(&Resources::new(16, 32_000_000_000), Profile::Balanced).settings();
        assert_eq!(s.threads.get(), 12);
        assert_eq!(s.connection_limit.get(), 2000);
    }

    #[test]
    fn workers_follow_vcpus() {
        assert_eq!(rec(16, 32, Profile::Balanced).workers.get(), 16);
        let half = recommend(&Resources::from_millis(1500, 2 * GIB), Profile::Balanced);
        assert_eq!(half.workers.value.get(), 2);
        assert_eq!(rec(16, 32, Profile::MemoryConstrained).workers.get(), 4);
    }

    #[test]
    fn small_box_gets_sane_minimums() {
        for profile in Profile::ALL {
            let r = recommend(&Resources::new(1, 512 * MIB), profile);
            let s = r.settings();
            assert!(s.threads.get() >= 1, "{profile}");
            assert!(s.connection_limit.get() >= 16, "{profile}");
            assert!(s.channel_timeout >= s.cleanup_interval, "{profile}");
            assert!(s.backlog >= 128, "{profile}");
            let used =
                s.connection_limit.get() as u64 * (s.recv_bytes.get() + s.send_bytes.get()) as u64;
            assert!(
                used <= r.memory_budget,
                "{profile}: {used} > {}",
                r.memory_budget
            );
        }
    }

    #[test]
    fn memory_budget_clamps_and_says_so() {
        let r = recommend(&Resources::new(16, 512 * MIB), Profile::LargeFiles);
        assert_eq!(r.threads.value.get(), 1);
        assert!(r.threads.reason.contains("clamped"), "{}", r.threads.reason);
        assert_eq!(r.connection_limit.value.get(), 256);
        assert!(r.connection_limit.reason.contains("clamped"));
        let r = recommend(&Resources::new(16, 32 * GIB), Profile::LargeFiles);
        assert!(!r.threads.reason.contains("clamped"));
    }

    /// A count held at its floor (1 thread, 16 connections) whose items
    /// still do not fit is said so, never claimed to fit.
    #[test]
    fn a_count_held_at_its_floor_says_it_does_not_fit() {
        let r = recommend(&Resources::new(2, 64 * MIB), Profile::LargeFiles);
        assert_eq!(r.threads.value.get(), 1);
        assert_eq!(
            r.threads.reason,
            "2 vCPUs, kept within 2..=8: each thread carries a large upload would be 2; \
             held at its floor of 1, and even 1 x 128MiB working sets do not fit half the \
             memory budget (16MiB of 1/2 of 64MiB RAM)"
        );
        // 32 x 512KiB of buffers fit 16MiB exactly: a true clamp.
        assert_eq!(r.connection_limit.value.get(), 32);
        assert!(
            r.connection_limit.reason.ends_with(
                "clamped so 32 x 512KiB of buffers fit half the memory budget (1/2 of 64MiB RAM)"
            ),
            "{}",
            r.connection_limit.reason
        );
        // Below what recon tunes for (only reachable here, as the function
        // is pure), connections hold at 16 the same way.
        let r = recommend(&Resources::new(2, 16 * MIB), Profile::LargeFiles);
        assert_eq!(r.connection_limit.value.get(), 16);
        assert!(
            r.connection_limit.reason.ends_with(
                "held at its floor of 16, and even 16 x 512KiB of buffers do not fit half the memory budget (4MiB of 1/2 of 16MiB RAM)"
            ),
            "{}",
            r.connection_limit.reason
        );
        // Every clamp that claims a fit is one.
        for profile in Profile::ALL {
            for mib in [64, 96, 128, 200, 512, 1024] {
                let r = recommend(&Resources::new(16, mib * MIB), profile);
                let ws = shape(profile).working_set;
                let half = r.memory_budget / 2;
                if r.threads.reason.contains("clamped so") {
                    assert!(r.threads.value.get() as u64 * ws <= half, "{profile} {mib}");
                }
            }
        }
    }

    #[test]
    fn backlog_is_the_connection_limit_within_128_to_4096() {
        let n = |v: usize| NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN);
        for (conns, backlog) in [
            (1, 128),
            (128, 128),
            (250, 250),
            (4096, 4096),
            (12_000, 4096),
        ] {
            assert_eq!(backlog_for(n(conns)), backlog, "{conns}");
        }
        let r = recommend(&Resources::new(2, 4 * GIB), Profile::Balanced);
        assert_eq!(r.backlog.value, backlog_for(r.connection_limit.value));
    }

    /// The biggest boxes get what validation would accept from a user, and
    /// the reasons say where a formula was cut short.
    #[test]
    fn huge_boxes_stay_within_the_accepted_ranges() {
        let r = recommend(
            &Resources::new(10_000, 64 * 1024 * GIB),
            Profile::HighConcurrency,
        );
        assert_eq!(r.connection_limit.value.get(), MAX_CONNECTIONS);
        assert!(
            r.connection_limit
                .reason
                .contains("would be 2500000; at most 1000000"),
            "{}",
            r.connection_limit.reason
        );
        assert_eq!(r.threads.value.get(), MAX_THREADS);
        assert!(
            r.threads.reason.contains("at most 1024"),
            "{}",
            r.threads.reason
        );
        assert_eq!(r.workers.value.get(), MAX_THREADS);
        assert!(
            r.workers.reason.contains("at most 1024"),
            "{}",
            r.workers.reason
        );
    }

    #[test]
    fn rows_cover_every_setting() {
        let r = recommend(&Resources::new(16, 32 * GIB), Profile::Balanced);
        let rows = r.rows();
        assert_eq!(rows.len(), 10);
        assert_eq!(rows[0].key, "threads");
        assert_eq!(rows[0].value, "12");
        assert!(rows.iter().all(|row| !row.reason.is_empty()));
    }

    fn profiles() -> impl Strategy<Value = Profile> {
        prop::sample::select(Profile::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn monotone_in_vcpus_and_memory(
            profile in profiles(),
            cpu in 250u32..200_000,
            cpu_extra in 0u32..50_000,
            mem in (256 * MIB)..(2048 * GIB),
            mem_extra in 0u64..(64 * GIB),
        ) {
            let small = recommend(&Resources::from_millis(cpu, mem), profile).settings();
            for bigger in [
                Resources::from_millis(cpu + cpu_extra, mem),
                Resources::from_millis(cpu, mem + mem_extra),
                Resources::from_millis(cpu + cpu_extra, mem + mem_extra),
            ] {
                let big = recommend(&bigger, profile).settings();
                prop_assert!(big.threads >= small.threads);
                prop_assert!(big.workers >= small.workers);
                prop_assert!(big.connection_limit >= small.connection_limit);
                prop_assert!(big.backlog >= small.backlog);
                prop_assert!(big.channel_timeout >= small.channel_timeout);
                prop_assert!(big.cleanup_interval <= small.cleanup_interval);
                prop_assert!(big.recv_bytes == small.recv_bytes);
            }
            prop_assert!(small.channel_timeout >= small.cleanup_interval);
        }
    }
}
