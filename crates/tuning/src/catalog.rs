//! An offline catalog of common cloud instance sizes, so `recon tune --instance c5.4xlarge` needs no network.
//!
//! AWS c5 (compute), m5 (general) and r5 (memory) families, `large` to
//! `24xlarge` and `metal`: vCPUs and GiB of memory as AWS lists them.

use crate::resources::Resources;

const GIB: u64 = 1 << 30;

/// One instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    /// Its name, e.g. `c5.4xlarge`.
    pub name: &'static str,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in GiB.
    pub memory_gib: u32,
}

impl Instance {
    /// The instance's resources.
    pub fn resources(&self) -> Resources {
        Resources::new(self.vcpus, u64::from(self.memory_gib) * GIB)
    }
}

const fn i(name: &'static str, vcpus: u32, memory_gib: u32) -> Instance {
    Instance {
        name,
        vcpus,
        memory_gib,
    }
}

/// Every instance type known, by family then size.
pub const INSTANCES: &[Instance] = &[
    i("c5.large", 2, 4),
    i("c5.xlarge", 4, 8),
    i("c5.2xlarge", 8, 16),
    i("c5.4xlarge", 16, 32),
    i("c5.9xlarge", 36, 72),
    i("c5.12xlarge", 48, 96),
    i("c5.18xlarge", 72, 144),
    i("c5.24xlarge", 96, 192),
    i("c5.metal", 96, 192),
    i("m5.large", 2, 8),
    i("m5.xlarge", 4, 16),
    i("m5.2xlarge", 8, 32),
    i("m5.4xlarge", 16, 64),
    i("m5.8xlarge", 32, 128),
    i("m5.12xlarge", 48, 192),
    i("m5.16xlarge", 64, 256),
    i("m5.24xlarge", 96, 384),
    i("m5.metal", 96, 384),
    i("r5.large", 2, 16),
    i("r5.xlarge", 4, 32),
    i("r5.2xlarge", 8, 64),
    i("r5.4xlarge", 16, 128),
    i("r5.8xlarge", 32, 256),
    i("r5.12xlarge", 48, 384),
    i("r5.16xlarge", 64, 512),
    i("r5.24xlarge", 96, 768),
    i("r5.metal", 96, 768),
];

/// The instance called `name` (case-insensitive), if known.
pub fn find(name: &str) -> Option<&'static Instance> {
    let name = name.trim();
    INSTANCES.iter().find(|i| i.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_reference_instances() {
        assert_eq!(
            find("c5.4xlarge").map(Instance::resources),
            Some(Resources::new(16, 32 * GIB))
        );
        assert_eq!(
            find("C5.2XLARGE").map(Instance::resources),
            Some(Resources::new(8, 16 * GIB))
        );
        assert_eq!(find("r5.metal").map(|i| i.memory_gib), Some(768));
        assert_eq!(find("t2.micro"), None);
    }

    #[test]
    fn families_scale_with_size() {
        for family in ["c5", "m5", "r5"] {
            let sizes: Vec<_> = INSTANCES
                .iter()
                .filter(|i| i.name.starts_with(family))
                .collect();
            assert_eq!(sizes.len(), 9, "{family}");
            assert!(sizes.windows(2).all(|w| w[0].vcpus <= w[1].vcpus));
            assert!(sizes.iter().all(|i| i.memory_gib / i.vcpus >= 2));
        }
    }
}
