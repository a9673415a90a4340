//! `recon match` on transparent huge pages.
//!
//! A 1M x 1M run touches about 450 MB of fresh memory, and with 4 KiB pages
//! each first touch is a page fault: about 115k of them, 12 % of the run's
//! CPU. glibc's malloc can mark the large blocks it maps and the heap it
//! grows for huge pages (`madvise(MADV_HUGEPAGE)`), which halves the faults
//! and shortened the run by 1.5-8 % (docs/benchmarks-core.md), but only when
//! its `glibc.malloc.hugetlb=1` tunable is in the environment as the program
//! starts. So `recon match` starts itself again, once, with it.
//!
//! Marking blocks from Rust instead (a global allocator wrapping the
//! system's) was measured and dropped: marking blocks after glibc returned
//! them left most first touches on small pages, and mapping large blocks
//! separately lost glibc's reuse of freed memory (the matcher got slower).

use std::ffi::{OsStr, OsString};

/// The glibc tunable, and the variable glibc reads it from.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const TUNABLE: &str = "glibc.malloc.hugetlb";
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const VARIABLE: &str = "GLIBC_TUNABLES";

/// Set in the restarted process's environment: it never restarts again,
/// even should the tunable not reach it (glibc filters its tunables for
/// secure-mode processes, e.g. a binary given file capabilities).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const RESTARTED: &str = "RECON_RESTARTED_FOR_HUGE_PAGES";

/// Where Linux says whether programs choose huge pages (`madvise` mode).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
const KERNEL_MODE: &str = "/sys/kernel/mm/transparent_hugepage/enabled";

/// Replaces this process with a fresh start of the same binary and
/// arguments, its environment's `GLIBC_TUNABLES` extended with
/// `glibc.malloc.hugetlb=1`, when that helps: on Linux with glibc, when the
/// kernel leaves huge pages to the program (`madvise` mode) and the
/// environment does not set the tunable already. A user's own value stands
/// (`glibc.malloc.hugetlb=0` turns this off). It happens once: the
/// restarted process finds [`RESTARTED`] set.
///
/// Call it before any thread starts or any file opens. It returns when
/// nothing needed doing, or when the restart failed; the run then goes on
/// as it is, only without huge pages.
pub fn restart_with_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if std::env::var_os(RESTARTED).is_some() {
            return;
        }
        let mode = std::fs::read_to_string(KERNEL_MODE).unwrap_or_default();
        let Some(tunables) = with_huge_pages(std::env::var_os(VARIABLE).as_deref(), &mode) else {
            return;
        };
        let mut args = std::env::args_os();
        let name = args.next().unwrap_or_else(|| "recon".into());
        // `/proc/self/exe` is this very binary, even if its file was
        // replaced since it started. On success `exec` does not return.
        let _failed = std::process::Command::new("/proc/self/exe")
            .arg0(name)
            .args(args)
            .env(VARIABLE, tunables)
            .env(RESTARTED, "1")
            .exec();
    }
}

/// `GLIBC_TUNABLES` with huge pages on, given its `current` value and the
/// kernel's mode (the text of [`KERNEL_MODE`], e.g. `always [madvise]
/// never`); `None` when it should stay as it is: the mode is not `madvise`
/// (`always` needs no marking, `never` ignores it), or `current` names the
/// tunable already, or is not UTF-8 (left alone rather than mangled).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn with_huge_pages(current: Option<&OsStr>, kernel_mode: &str) -> Option<OsString> {
    let selected = kernel_mode
        .split_whitespace()
        .find(|w| w.starts_with('['))?;
    if selected != "[madvise]" {
        return None;
    }
    let current = current.map_or(Some(""), OsStr::to_str)?;
    if current
        .split(':')
        .any(|t| t.split('=').next() == Some(TUNABLE))
    {
        return None;
    }
    let sep = if current.is_empty() { "" } else { ":" };
    Some(format!("{current}{sep}{TUNABLE}=1").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MADVISE: &str = "always [madvise] never\n";

    fn check(current: Option<&str>, mode: &str, expected: Option<&str>) {
        let got = with_huge_pages(current.map(OsStr::new), mode);
        assert_eq!(
            got.as_deref().and_then(OsStr::to_str),
            expected,
            "{current:?} under {mode:?}"
        );
    }

    #[test]
    fn the_tunable_is_added_only_where_it_helps_and_is_not_set() {
        check(None, MADVISE, Some("glibc.malloc.hugetlb=1"));
        check(Some(""), MADVISE, Some("glibc.malloc.hugetlb=1"));
        check(
            Some("glibc.malloc.arena_max=2"),
            MADVISE,
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
        );
        // Already set, by the user or by the restart itself: left alone.
        check(Some("glibc.malloc.hugetlb=0"), MADVISE, None);
        check(
            Some("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
            MADVISE,
            None,
        );
        // A longer name that merely starts the same is another tunable.
        check(
            Some("glibc.malloc.hugetlbx=3"),
            MADVISE,
            Some("glibc.malloc.hugetlbx=3:glibc.malloc.hugetlb=1"),
        );
        // The kernel decides alone, or never uses huge pages; or no kernel file.
        check(None, "[always] madvise never\n", None);
        check(None, "always madvise [never]\n", None);
        check(None, "", None);
    }

    #[test]
    #[cfg(unix)]
    fn a_value_that_is_not_utf8_is_left_alone() {
        use std::os::unix::ffi::OsStrExt;
        let current = OsStr::from_bytes(b"glibc.malloc.arena_max=\xff");
        assert_eq!(with_huge_pages(Some(current), MADVISE), None);
    }
}
