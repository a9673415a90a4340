//! Criterion benchmarks of the matcher (filled in with the engine).
fn main() {}
