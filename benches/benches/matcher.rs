//! Criterion benchmarks of the matcher on generated cases (`recon gen`'s
//! generator, seeded): matching 50k x 50k records with the generated rules,
//! loading those CSVs, and writing `results.csv` (into a sink); 1M x 1M only
//! with `RECON_BENCH_LARGE=1`. Throughput is in records (both sides together)
//! per second.
//!
//! Run: `cargo bench -p recon-benches --bench matcher` (cases are cached in
//! `target/bench-data`, or `$RECON_BENCH_DATA`).

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use recon_benches::{LoadedCase, data_root, ensure_case, load_case};
use recon_core::input::load_side;
use recon_core::matcher::{NoProgress, Reconciler};
use recon_core::output::{StatusFilter, write_results_csv};
use recon_core::synth::GenOptions;

fn sizes() -> Vec<usize> {
    let mut sizes = vec![50_000];
    if std::env::var_os("RECON_BENCH_LARGE").is_some_and(|v| v == "1") {
        sizes.push(1_000_000);
    }
    sizes
}

/// A group of 10 samples over 10 s: the cases are large.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group
}

/// The seeded `records`-record case, generated once and cached.
fn case(records: usize) -> LoadedCase {
    let options = GenOptions {
        records,
        seed: 42,
        ..GenOptions::default()
    };
    ensure_case(&data_root(), &options)
        .and_then(load_case)
        .unwrap_or_else(|e| panic!("preparing the {records}-record case: {e:#}"))
}

fn matching(c: &mut Criterion) {
    let mut group = group(c, "match");
    for records in sizes() {
        let case = case(records);
        let reconciler = Reconciler::new(case.rules.clone());
        group.throughput(Throughput::Elements(
            (case.left.len() + case.right.len()) as u64,
        ));
        group.bench_function(format!("{records}x{records}"), |b| {
            b.iter(|| {
                let outcome = reconciler
                    .run(&case.left, &case.right, &NoProgress)
                    .unwrap_or_else(|e| panic!("{e}"));
                black_box(outcome.summary.match_rate)
            });
        });
    }
    group.finish();
}

fn loading(c: &mut Criterion) {
    let mut group = group(c, "load");
    for records in sizes() {
        let case = case(records);
        group.throughput(Throughput::Bytes(case.input_bytes));
        group.bench_function(format!("{records}x{records}"), |b| {
            b.iter(|| {
                let l = load_side(&case.paths.left, &case.rules.left);
                let r = load_side(&case.paths.right, &case.rules.right);
                black_box((l.map(|s| s.len()).ok(), r.map(|s| s.len()).ok()))
            });
        });
    }
    group.finish();
}

fn writing(c: &mut Criterion) {
    let mut group = group(c, "write_csv");
    for records in sizes() {
        let case = case(records);
        let outcome = Reconciler::new(case.rules.clone())
            .run(&case.left, &case.right, &NoProgress)
            .unwrap_or_else(|e| panic!("{e}"));
        group.throughput(Throughput::Elements(
            (case.left.len() + case.right.len()) as u64,
        ));
        group.bench_function(format!("{records}x{records}"), |b| {
            b.iter(|| {
                write_results_csv(
                    &outcome,
                    &case.left,
                    &case.right,
                    std::io::sink(),
                    &StatusFilter::ALL,
                )
                .unwrap_or_else(|e| panic!("{e}"));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, matching, loading, writing);
criterion_main!(benches);
