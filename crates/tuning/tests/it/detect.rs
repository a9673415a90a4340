//! Detection on fixture trees written to temporary directories, never this machine's cgroups.

use std::fs;
use std::path::Path;

use tuning::Resources;
use tuning::detect::{DetectError, Detection, Origin, detect_in};

const GIB: u64 = 1 << 30;
const MEMINFO: &str = "MemTotal:       65536000 kB\nMemFree:        1000 kB\n";
/// The fixture host: 8 CPUs, 62.5 GiB.
const HOST_CPU: u32 = 8000;
const HOST_MEM: u64 = 65_536_000 * 1024;

/// Writes `files` (path under root, content) into a fresh tree and detects on it.
fn check(files: &[(&str, &str)]) -> Result<Detection, DetectError> {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let full = dir.path().join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
    detect_in(dir.path(), HOST_CPU)
}

fn detection(cpu: u32, cpu_from: Origin, mem: u64, mem_from: Origin) -> Detection {
    Detection {
        resources: Resources::from_millis(cpu, mem),
        cpu: cpu_from,
        memory: mem_from,
    }
}

#[test]
fn cgroup_v2_container_with_one_and_a_half_cpus_and_two_gib() {
    let got = check(&[
        ("proc/meminfo", MEMINFO),
        ("proc/self/cgroup", "0::/\n"),
        ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        ("sys/fs/cgroup/cpu.max", "150000 100000\n"),
        ("sys/fs/cgroup/memory.max", "2147483648\n"),
    ])
    .unwrap();
    assert_eq!(
        got,
        detection(1500, Origin::CgroupV2, 2 * GIB, Origin::CgroupV2)
    );
}

#[test]
fn cgroup_v2_without_limits_falls_back_to_the_host() {
    let got = check(&[
        ("proc/meminfo", MEMINFO),
        ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        ("sys/fs/cgroup/cpu.max", "max 100000\n"),
        ("sys/fs/cgroup/memory.max", "max\n"),
    ])
    .unwrap();
    assert_eq!(
        got,
        detection(HOST_CPU, Origin::Host, HOST_MEM, Origin::Host)
    );
}

#[test]
fn cgroup_v2_nested_group_takes_the_tightest_ancestor() {
    let got = check(&[
        ("proc/meminfo", MEMINFO),
        ("proc/self/cgroup", "0::/system.slice/recon.service\n"),
        ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        ("sys/fs/cgroup/system.slice/cpu.max", "200000 100000\n"),
        (
            "sys/fs/cgroup/system.slice/recon.service/cpu.max",
            "max 100000\n",
        ),
        (
            "sys/fs/cgroup/system.slice/recon.service/memory.max",
            "1073741824\n",
        ),
    ])
    .unwrap();
    assert_eq!(
        got,
        detection(2000, Origin::CgroupV2, GIB, Origin::CgroupV2)
    );
}

#[test]
fn cgroup_limit_above_the_host_is_the_host() {
    let got = check(&[
        ("proc/meminfo", MEMINFO),
        ("sys/fs/cgroup/cpu.max", "3200000 100000\n"),
        ("sys/fs/cgroup/memory.max", "999999999999999\n"),
    ])
    .unwrap();
    assert_eq!(
        got,
        detection(HOST_CPU, Origin::Host, HOST_MEM, Origin::Host)
    );
}

#[test]
fn cgroup_v1_quota_and_memory_limit() {
    let got = check(&[
        ("proc/meminfo", MEMINFO),
        (
            "proc/self/cgroup",
            "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
        ),
        ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n"),
        ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
        ("sys/fs/cgroup/memory/memory.limit_in_bytes", "4294967296\n"),
    ])
    .unwrap();
    assert_eq!(
        got,
        detection(2500, Origin::CgroupV1, 4 * GIB, Origin::CgroupV1)
    );
}

#[test]
fn cgroup_v1_unlimited_values_mean_the_host() {
    let got = check(&[
        ("proc/meminfo", MEMINFO),
        ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
        ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        (
            "sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        ),
    ])
    .unwrap();
    assert_eq!(
        got,
        detection(HOST_CPU, Origin::Host, HOST_MEM, Origin::Host)
    );
}

#[test]
fn bare_host_reads_meminfo() {
    let got = check(&[("proc/meminfo", MEMINFO)]).unwrap();
    assert_eq!(
        got,
        detection(HOST_CPU, Origin::Host, HOST_MEM, Origin::Host)
    );
}

#[test]
fn malformed_limit_is_an_error_naming_the_file() {
    let err = check(&[
        ("proc/meminfo", MEMINFO),
        ("sys/fs/cgroup/cpu.max", "lots 100000\n"),
    ])
    .unwrap_err();
    assert!(matches!(err, DetectError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("cpu.max"), "{err}");
}

#[test]
fn no_memory_figure_anywhere_is_an_error() {
    let err = detect_in(Path::new("/nonexistent-recon-root"), HOST_CPU).unwrap_err();
    assert!(matches!(err, DetectError::NoMemory { .. }), "{err}");
}

/// The host figure is the affinity list of `/proc/self/status`, which a
/// cgroup quota does not shrink (the standard library's
/// `available_parallelism` does, rounded down: 1 for `--cpus 1.5`, which
/// would hide the quota's own 1.5).
#[test]
fn allowed_cpus_counts_the_affinity_list() {
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status");
    for (list, expect) in [
        ("0-3", Some(4)),
        ("0-3,6", Some(5)),
        ("0,2,4-5", Some(4)),
        ("7", Some(1)),
        ("", None),
        ("3-1", None),
        ("x", None),
    ] {
        fs::write(
            &status,
            format!(
                "Name:\trecon\nCpus_allowed:\tff\nCpus_allowed_list:\t{list}\nMems_allowed:\t1\n"
            ),
        )
        .unwrap();
        assert_eq!(tuning::detect::allowed_cpus(&status), expect, "{list:?}");
    }
    assert_eq!(
        tuning::detect::allowed_cpus(&dir.path().join("missing")),
        None
    );
    // On this machine the list is readable and at least one CPU.
    assert!(tuning::detect::allowed_cpus(Path::new("/proc/self/status")).is_some_and(|n| n >= 1));
}

/// `--cpus 1.5` on a 2-CPU host: the quota is below the host and is used
/// as is, fractional, with its origin.
#[test]
fn a_fractional_quota_below_a_small_host_is_used() {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in [
        ("proc/self/cgroup", "0::/\n"),
        ("sys/fs/cgroup/cgroup.controllers", "cpu memory\n"),
        ("sys/fs/cgroup/cpu.max", "150000 100000\n"),
        ("proc/meminfo", MEMINFO),
    ] {
        let full = dir.path().join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(full, content).unwrap();
    }
    let found = detect_in(dir.path(), 2000).unwrap();
    assert_eq!(found.resources, Resources::from_millis(1500, HOST_MEM));
    assert_eq!(found.cpu, Origin::CgroupV2);
}
