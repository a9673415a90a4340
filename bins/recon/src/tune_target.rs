//! `--profile`, `--vcpus` and `--memory`: which box and workload the tuning
//! layer targets, shared by `recon serve` and `recon config show`.

use tuning::{LoadOptions, Profile, Resources};

use crate::cmd_tune::{parse_cpus, parse_memory, parse_profile};

/// Flags that override the profile and resources the tuning layer uses.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct TuneTarget {
    /// Tune for this profile instead of `RECON_PROFILE` or the file's.
    #[arg(long, value_parser = parse_profile)]
    profile: Option<Profile>,
    /// Tune for these vCPUs instead of detecting them (with --memory).
    #[arg(long, requires = "memory", value_parser = parse_cpus)]
    vcpus: Option<u32>,
    /// Tune for this much memory instead of detecting it (with --vcpus).
    #[arg(long, requires = "vcpus", value_parser = parse_memory)]
    memory: Option<u64>,
}

impl TuneTarget {
    /// Sets `opts.profile` and `opts.resources` from the flags given.
    pub(crate) fn apply(self, opts: &mut LoadOptions) {
        opts.profile = self.profile;
        opts.resources = self
            .vcpus
            .zip(self.memory)
            .map(|(cpu, mem)| Resources::from_millis(cpu, mem));
    }
}
