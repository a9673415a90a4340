//! Shared helpers of recon's benchmarks and the bench-compare harness.
