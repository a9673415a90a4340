//! Detection of the CPUs and memory recon may use: the only module of this crate that reads files.
//!
//! Order: cgroup v2 (`cpu.max`, `memory.max`), then cgroup v1
//! (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `memory.limit_in_bytes`), then the
//! host (available parallelism, `MemTotal` in /proc/meminfo). A cgroup limit
//! never raises what the host has. Every path is read under a root directory so
//! tests run on fixture trees, never on this machine's cgroups.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::resources::Resources;

/// cgroup v1 reports "no limit" as a huge number near `i64::MAX`; anything past this is unlimited.
const V1_UNLIMITED: u64 = 1 << 62;

/// Why detection failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A cgroup or proc file exists but does not say what it should.
    #[error("{}: unexpected content {content:?}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Its content, trimmed.
        content: String,
    },
    /// A file exists but could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// No cgroup limit and no /proc/meminfo: the memory size is unknown.
    #[error("cannot tell the memory size: no cgroup memory limit and no {}", path.display())]
    NoMemory {
        /// The meminfo path that was missing.
        path: PathBuf,
    },
}

/// Where a detected figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A cgroup v2 limit.
    CgroupV2,
    /// A cgroup v1 limit.
    CgroupV1,
    /// The host: available parallelism or /proc/meminfo.
    Host,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::CgroupV2 => "cgroup v2",
            Origin::CgroupV1 => "cgroup v1",
            Origin::Host => "host",
        })
    }
}

/// Detected resources and where each figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    /// The resources.
    pub resources: Resources,
    /// Where the CPU figure came from.
    pub cpu: Origin,
    /// Where the memory figure came from.
    pub memory: Origin,
}

/// Detects this process's resources from the real `/`.
///
/// # Errors
/// See [`detect_in`].
pub fn detect() -> Result<Detection, DetectError> {
    // The CPUs this process may run on. Not `available_parallelism`: the
    // standard library already caps that at the cgroup quota, rounded down
    // (1 for `--cpus 1.5`), which would hide the quota's own figure.
    let host_cpus = allowed_cpus(Path::new("/proc/self/status")).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
            .unwrap_or(1)
    });
    detect_in(Path::new("/"), host_cpus.saturating_mul(1000))
}

/// How many CPUs the `Cpus_allowed_list` line of a `/proc/<pid>/status`
/// file lists (`0-3,6` is 5): the affinity mask, before any cgroup quota.
/// `None` when the file or line is missing or unreadable.
pub fn allowed_cpus(status: &Path) -> Option<u32> {
    let text = fs::read_to_string(status).ok()?;
    let list = text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    let mut count = 0u32;
    for range in list.split(',').filter(|r| !r.is_empty()) {
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (
                lo.trim().parse::<u32>().ok()?,
                hi.trim().parse::<u32>().ok()?,
            ),
            None => {
                let one = range.trim().parse::<u32>().ok()?;
                (one, one)
            }
        };
        count = count.checked_add(hi.checked_sub(lo)?.checked_add(1)?)?;
    }
    (count > 0).then_some(count)
}

/// Detects resources from the tree under `root` (`root/proc/self/cgroup`,
/// `root/sys/fs/cgroup/...`, `root/proc/meminfo`), given the host's CPUs in thousandths.
///
/// # Errors
/// [`DetectError::Malformed`] or [`DetectError::Read`] for a limit file that exists
/// but cannot be understood; [`DetectError::NoMemory`] when no figure for memory exists.
pub fn detect_in(root: &Path, host_cpu_millis: u32) -> Result<Detection, DetectError> {
    let cgroup_root = root.join("sys/fs/cgroup");
    let membership = read_optional(&root.join("proc/self/cgroup"))?.unwrap_or_default();

    let (cpu_limit, mem_limit) = if let Some(v2) = v2_limits(&cgroup_root, &membership)? {
        v2
    } else {
        v1_limits(&cgroup_root, &membership)?
    };

    let (cpu_millis, cpu) = match cpu_limit {
        Some((millis, origin)) if millis < host_cpu_millis => (millis, origin),
        _ => (host_cpu_millis, Origin::Host),
    };
    let meminfo = root.join("proc/meminfo");
    let host_memory = host_memory(&meminfo)?;
    let (memory_bytes, memory) = match (mem_limit, host_memory) {
        (Some((limit, origin)), Some(host)) if limit < host => (limit, origin),
        (Some((limit, origin)), None) => (limit, origin),
        (_, Some(host)) => (host, Origin::Host),
        (None, None) => return Err(DetectError::NoMemory { path: meminfo }),
    };
    Ok(Detection {
        resources: Resources::from_millis(cpu_millis, memory_bytes),
        cpu,
        memory,
    })
}

type Limits = (Option<(u32, Origin)>, Option<(u64, Origin)>);

/// The cgroup directories to consult, most specific first: the process's own
/// group (from the membership line) and its ancestors, then the mount itself.
fn candidate_dirs(mount: &Path, relative: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(rel) = relative {
        let mut path = PathBuf::from(rel.trim_start_matches('/'));
        loop {
            if path.as_os_str().is_empty() {
                break;
            }
            dirs.push(mount.join(&path));
            if !path.pop() {
                break;
            }
        }
    }
    dirs.push(mount.to_path_buf());
    dirs
}

fn v2_limits(cgroup_root: &Path, membership: &str) -> Result<Option<Limits>, DetectError> {
    let relative = membership.lines().find_map(|line| line.strip_prefix("0::"));
    let is_v2 = cgroup_root.join("cgroup.controllers").exists()
        || cgroup_root.join("cpu.max").exists()
        || cgroup_root.join("memory.max").exists();
    if !is_v2 {
        return Ok(None);
    }
    let mut cpu: Option<u32> = None;
    let mut mem: Option<u64> = None;
    for dir in candidate_dirs(cgroup_root, relative) {
        let path = dir.join("cpu.max");
        if let Some(text) = read_optional(&path)? {
            let mut parts = text.split_whitespace();
            let (quota, period) = (parts.next(), parts.next());
            match (quota, period) {
                (Some("max"), _) => {}
                (Some(q), p) => {
                    let quota = q.parse::<u64>().ok();
                    let period = p.map_or(Some(100_000), |p| p.parse::<u64>().ok());
                    let millis = quota
                        .zip(period)
                        .filter(|(q, p)| *q > 0 && *p > 0)
                        .map(|(q, p)| quota_millis(q, p))
                        .ok_or_else(|| malformed(&path, &text))?;
                    cpu = Some(cpu.map_or(millis, |c| c.min(millis)));
                }
                (None, _) => return Err(malformed(&path, &text)),
            }
        }
        let path = dir.join("memory.max");
        if let Some(text) = read_optional(&path)?
            && text != "max"
        {
            let bytes = text.parse::<u64>().map_err(|_| malformed(&path, &text))?;
            mem = Some(mem.map_or(bytes, |m| m.min(bytes)));
        }
    }
    Ok(Some((
        cpu.map(|c| (c, Origin::CgroupV2)),
        mem.map(|m| (m, Origin::CgroupV2)),
    )))
}

fn v1_limits(cgroup_root: &Path, membership: &str) -> Result<Limits, DetectError> {
    let relative_for = |controller: &str| {
        membership.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })
    };
    let mut cpu: Option<u32> = None;
    for mount in ["cpu,cpuacct", "cpuacct,cpu", "cpu"] {
        for dir in candidate_dirs(&cgroup_root.join(mount), relative_for("cpu")) {
            let quota_path = dir.join("cpu.cfs_quota_us");
            let Some(quota_text) = read_optional(&quota_path)? else {
                continue;
            };
            let quota: i64 = quota_text
                .parse()
                .map_err(|_| malformed(&quota_path, &quota_text))?;
            if quota <= 0 {
                continue;
            }
            let period_path = dir.join("cpu.cfs_period_us");
            let period_text = read_optional(&period_path)?.unwrap_or_else(|| "100000".to_owned());
            let period: u64 = period_text
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| malformed(&period_path, &period_text))?;
            let millis = quota_millis(quota.unsigned_abs(), period);
            cpu = Some(cpu.map_or(millis, |c| c.min(millis)));
        }
    }
    let mut mem: Option<u64> = None;
    for dir in candidate_dirs(&cgroup_root.join("memory"), relative_for("memory")) {
        let path = dir.join("memory.limit_in_bytes");
        if let Some(text) = read_optional(&path)? {
            let bytes: u64 = text.parse().map_err(|_| malformed(&path, &text))?;
            if bytes < V1_UNLIMITED {
                mem = Some(mem.map_or(bytes, |m| m.min(bytes)));
            }
        }
    }
    Ok((
        cpu.map(|c| (c, Origin::CgroupV1)),
        mem.map(|m| (m, Origin::CgroupV1)),
    ))
}

/// quota/period CPUs in thousandths, rounded up so a tiny quota is never zero.
fn quota_millis(quota: u64, period: u64) -> u32 {
    let millis = quota.saturating_mul(1000).div_ceil(period);
    u32::try_from(millis).unwrap_or(u32::MAX).max(1)
}

fn host_memory(meminfo: &Path) -> Result<Option<u64>, DetectError> {
    let Some(text) = read_optional(meminfo)? else {
        return Ok(None);
    };
    let Some(line) = text.lines().find(|l| l.starts_with("MemTotal:")) else {
        return Err(malformed(meminfo, &text));
    };
    let kib = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .map_err(|_| malformed(meminfo, line))?;
    Ok(Some(kib.saturating_mul(1024)))
}

/// The file's trimmed content, or `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, DetectError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DetectError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn malformed(path: &Path, content: &str) -> DetectError {
    DetectError::Malformed {
        path: path.to_path_buf(),
        content: content.to_owned(),
    }
}
