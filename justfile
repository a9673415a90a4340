# recon's task runner. Every recipe is a thin call of cargo or of a project
# binary, so each works without `just` too: copy the command line.
# Get just with `cargo install just`. List recipes with `just --list`.

# The serve recipes pass only the engine: port, data dir and tuning come from
# recon's own layers (defaults < tuning < config file < environment < flags),
# so RECON_PORT, UVICORN_PORT, WAITRESS_THREADS... apply as they do anywhere,
# and flags given as ARGS win. Binaries are found under CARGO_TARGET_DIR.

# List the recipes.
default:
    @just --list

# Build every crate of the workspace (debug).
build:
    cargo build --workspace --all-targets

# Run every test of the workspace.
test:
    cargo test --workspace

# Formatting check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Criterion benchmarks of the matcher (see docs/benchmarks-core.md).
bench *ARGS:
    cargo bench -p recon-benches {{ARGS}}

# Examples: `just bench-compare --quick`, `just bench-compare --peers` (see docs/benchmarks.md).

# Server comparison table: build release recon + harness, then run it with ARGS.
bench-compare *ARGS:
    cargo build --release -p recon -p recon-benches --bins
    "${CARGO_TARGET_DIR:-target}/release/bench-compare" {{ARGS}}

# `--unpinned`: startup, GET /health, upload, reconciliation and memory (no sweep)
# over 5 rounds. E.g. `just bench-compare-shared --only threaded,async --scenarios reconcile`.
# Server comparison in the issues' setup: server, wrk and client share every CPU.
bench-compare-shared *ARGS:
    cargo build --release -p recon -p recon-benches --bins
    "${CARGO_TARGET_DIR:-target}/release/bench-compare" --unpinned {{ARGS}}

# `just match-ab target/case1m OLD NEW`; `just match-ab target/case1m --pause 3 NEW`
# for single runs after an idle pause. Medians of wall time, phases, peak RSS,
# faults and CPU; `recon gen --records 1000000 --seed 42 --out target/case1m`
# makes the case (docs/benchmarks-core.md).
# Whole-process `recon match` timings of several builds, taking turns.
match-ab case *BUILDS:
    python3 benches/scripts/match-ab.py --case {{case}} {{BUILDS}}

# Install the Python peers (Waitress, Uvicorn) into target/peers-venv for `bench-compare --peers`.
bench-peers-setup:
    python3 -m venv target/peers-venv
    target/peers-venv/bin/pip install -r benches/peers/requirements.txt

# Serve with the threaded engine: release build, recon's own host (127.0.0.1).
serve-threaded *ARGS:
    cargo build --release -p recon
    "${CARGO_TARGET_DIR:-target}/release/recon" serve --engine threaded {{ARGS}}

# Serve with the async engine: release build, recon's own host (127.0.0.1).
serve-async *ARGS:
    cargo build --release -p recon
    "${CARGO_TARGET_DIR:-target}/release/recon" serve --engine async {{ARGS}}

# Settings: deploy/dev/threaded.toml, below your environment and ARGS.
# Threaded engine, development: debug build, debug logging, small tuning.
serve-threaded-dev *ARGS:
    RECON_CONFIG="${RECON_CONFIG:-deploy/dev/threaded.toml}" cargo run -p recon -- serve --engine threaded {{ARGS}}

# Listens on every interface (HOST=0.0.0.0, the lowest-ranked env name: RECON_HOST,
# UVICORN_HOST or --host still win, a config file's `host` does not; WAITRESS_HOST
# is not read, recon warns and names RECON_HOST), as behind a load balancer. An
# inherited HOST is replaced: zsh exports the host's name under it.
# Threaded engine, production: release build, `recon tune` defaults, all interfaces.
serve-threaded-prod *ARGS:
    cargo build --release -p recon
    HOST=0.0.0.0 "${CARGO_TARGET_DIR:-target}/release/recon" serve --engine threaded {{ARGS}}

# Settings: deploy/dev/async.toml, below your environment and ARGS.
# Async engine, development: debug build, debug logging, small tuning.
serve-async-dev *ARGS:
    RECON_CONFIG="${RECON_CONFIG:-deploy/dev/async.toml}" cargo run -p recon -- serve --engine async {{ARGS}}

# Listens on every interface (HOST=0.0.0.0, the lowest-ranked env name: RECON_HOST,
# UVICORN_HOST or --host still win, a config file's `host` does not; WAITRESS_HOST
# is not read, recon warns and names RECON_HOST), as behind a load balancer. An
# inherited HOST is replaced: zsh exports the host's name under it.
# Async engine, production: release build, `recon tune` defaults, all interfaces.
serve-async-prod *ARGS:
    cargo build --release -p recon
    HOST=0.0.0.0 "${CARGO_TARGET_DIR:-target}/release/recon" serve --engine async {{ARGS}}

# The operator's guide's `make waitress-*` targets, kept for muscle memory.

# Alias of serve-threaded-dev (the guide's `make waitress-dev`).
waitress-dev *ARGS: (serve-threaded-dev ARGS)

# Alias of serve-threaded-prod (the guide's `make waitress-prod`).
waitress-prod *ARGS: (serve-threaded-prod ARGS)

# Alias of serve-threaded-prod (the guide's `make waitress-start`).
waitress-start *ARGS: (serve-threaded-prod ARGS)

# Alias of serve-async-dev: the async engine plays Uvicorn's part.
uvicorn-dev *ARGS: (serve-async-dev ARGS)

# Alias of serve-async-prod: the async engine plays Uvicorn's part.
uvicorn-prod *ARGS: (serve-async-prod ARGS)

# The guide's `make dev-start` (Uvicorn in development): serve-async-dev.
dev-start *ARGS: (serve-async-dev ARGS)

# The guide's `make production-start` (Uvicorn in production): serve-async-prod.
production-start *ARGS: (serve-async-prod ARGS)

# Recommended server settings for this machine.
tune *ARGS:
    cargo run --release -p recon -- tune {{ARGS}}

# Generate a synthetic case: `just gen 50000 7 target/case`.
gen records="10000" seed="42" out="target/case":
    cargo run --release -p recon -- gen --records {{records}} --seed {{seed}} --out {{out}}

# Generate a small case and reconcile it from the command line.
match-example: (gen "10000" "42" "target/case")
    cargo run --release -p recon -- match --left target/case/left.csv --right target/case/right.csv --rules target/case/rules.toml --out target/case/results

# .ci/run does format, lint, tests with the slow suites, the Python peers'
# venv (target/peers-venv, from PyPI), release build and `bench-compare --quick
# --peers`; this recipe is that script, so the two never drift.

# Run exactly what CI runs (.ci/run).
ci:
    .ci/run
