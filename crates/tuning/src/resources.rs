//! What a machine offers ([`Resources`]) and what the workload wants ([`Profile`]).

use std::fmt;
use std::str::FromStr;

use crate::units::format_size_approx;

/// CPU and memory available to recon: from arguments, an instance type, or detection.
///
/// CPU is kept in thousandths of a vCPU so a container limited to 1.5 CPUs is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resources {
    /// Thousandths of a vCPU: 1.5 CPUs is `1500`. Always at least 1.
    pub cpu_millis: u32,
    /// Memory in bytes. Always at least 1.
    pub memory_bytes: u64,
}

impl Resources {
    /// Resources of `vcpus` whole vCPUs and `memory_bytes` of RAM.
    pub fn new(vcpus: u32, memory_bytes: u64) -> Self {
        Self::from_millis(vcpus.saturating_mul(1000), memory_bytes)
    }

    /// Resources of `cpu_millis` thousandths of a vCPU; zeros become the smallest unit.
    pub fn from_millis(cpu_millis: u32, memory_bytes: u64) -> Self {
        Self {
            cpu_millis: cpu_millis.max(1),
            memory_bytes: memory_bytes.max(1),
        }
    }

    /// Whole vCPUs, rounded up: 1.5 CPUs can keep two threads partly busy.
    pub fn vcpus_ceil(&self) -> u32 {
        self.cpu_millis.div_ceil(1000)
    }

    /// The vCPU count as text: `16`, `1.5`, `0.25`.
    pub fn vcpus_display(&self) -> String {
        let whole = self.cpu_millis / 1000;
        let frac = self.cpu_millis % 1000;
        if frac == 0 {
            whole.to_string()
        } else {
            let text = format!("{whole}.{frac:03}");
            text.trim_end_matches('0').to_owned()
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} vCPU, {}",
            self.vcpus_display(),
            format_size_approx(self.memory_bytes)
        )
    }
}

/// Parses a vCPU count into thousandths: `16`, `1.5`, `0.25` (at most three decimals).
///
/// Returns `None` when the text is not a positive number with at most three
/// decimals, or is too large.
pub fn parse_vcpus(text: &str) -> Option<u32> {
    let text = text.trim();
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    if whole.is_empty() && frac.is_empty() || frac.len() > 3 {
        return None;
    }
    let all_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(frac) {
        return None;
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_millis: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    let millis = whole.checked_mul(1000)?.checked_add(frac_millis)?;
    (millis > 0).then_some(millis)
}

/// The shape of the workload a recommendation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Profile {
    /// General service: 75% of cores as threads, 125 connections per vCPU.
    #[default]
    Balanced,
    /// Financial file processing: fewer connections, long timeouts, big buffers.
    LargeFiles,
    /// Many small requests: more threads and connections, short timeouts.
    HighConcurrency,
    /// Small boxes or shared hosts: few threads and connections, a smaller memory share.
    MemoryConstrained,
}

impl Profile {
    /// Every profile, in the order the docs list them.
    pub const ALL: [Profile; 4] = [
        Profile::Balanced,
        Profile::LargeFiles,
        Profile::HighConcurrency,
        Profile::MemoryConstrained,
    ];

    /// The profile's name as written on the command line and in config: `large-files`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Profile::Balanced => "balanced",
            Profile::LargeFiles => "large-files",
            Profile::HighConcurrency => "high-concurrency",
            Profile::MemoryConstrained => "memory-constrained",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the profile names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown profile {0:?}: expected balanced, large-files, high-concurrency or memory-constrained"
)]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let norm = text.trim().to_ascii_lowercase().replace('_', "-");
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str() == norm)
            .ok_or_else(|| UnknownProfile(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpus_parse_exactly() {
        assert_eq!(parse_vcpus("16"), Some(16_000));
        assert_eq!(parse_vcpus("1.5"), Some(1500));
        assert_eq!(parse_vcpus("0.25"), Some(250));
        assert_eq!(parse_vcpus(".5"), Some(500));
        for bad in ["", "0", "abc", "1.2345", "-1", "1e3", "."] {
            assert_eq!(parse_vcpus(bad), None, "{bad}");
        }
    }

    #[test]
    fn resources_display() {
        assert_eq!(Resources::new(16, 32 << 30).to_string(), "16 vCPU, 32GiB");
        assert_eq!(
            Resources::from_millis(1500, 2 << 30).to_string(),
            "1.5 vCPU, 2GiB"
        );
        assert_eq!(Resources::from_millis(1500, 1).vcpus_ceil(), 2);
    }

    #[test]
    fn profiles_round_trip() {
        for p in Profile::ALL {
            assert_eq!(p.as_str().parse::<Profile>(), Ok(p));
        }
        assert_eq!("Large_Files".parse::<Profile>(), Ok(Profile::LargeFiles));
        assert!("fast".parse::<Profile>().is_err());
    }
}
