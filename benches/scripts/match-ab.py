#!/usr/bin/env python3
"""Whole-process `recon match` timings of several builds, taking turns.

The machine these figures come from is shared and noisy: a batch of one
build, then a batch of another, measures the host as much as the builds.
This runs the builds in turn, run after run, on one generated case and
prints per build the medians of wall time, the CLI's own `time:` phases,
peak RSS, minor page faults and user/system CPU (from `wait4`, per run).

    benches/scripts/match-ab.py --case target/case1m --runs 15 OLD_BIN NEW_BIN
    benches/scripts/match-ab.py --case target/case1m --replace OLD NEW
    benches/scripts/match-ab.py --case C NEW NEW:GLIBC_TUNABLES=glibc.malloc.hugetlb=1

`--case DIR` holds left.csv, right.csv and rules.toml (`recon gen --records
1000000 --seed 42 --out DIR`). Each run writes into a fresh output directory
unless `--replace`, where each build keeps replacing its own previous
outputs (as a user re-running a reconciliation does). A build may be given
as `BIN` or `BIN:NAME=VALUE` to run it with one extra environment variable.

`--pause S` sleeps S seconds before every run. On the machine these
figures come from (a VM whose balloon device reports free memory to its
host), runs after a pause were slower than runs straight after one
another, with huge pages by 0.1-0.2 s: a single `recon match` is the paused
kind. Measure both: without a pause (the builds' difference, least noise)
and with one (what a user's one run costs).
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def parse_build(spec, common_env):
    path, _, assignment = spec.partition(":")
    env = dict(os.environ)
    env.update(common_env)
    if assignment:
        name, _, value = assignment.partition("=")
        env[name] = value
    return spec, path, env


def run_once(path, env, case, out):
    args = [
        path, "match",
        "--left", os.path.join(case, "left.csv"),
        "--right", os.path.join(case, "right.csv"),
        "--rules", os.path.join(case, "rules.toml"),
        "--out", out,
    ]
    started = time.perf_counter()
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdout = child.stdout.read()
    # `wait4` rather than `Popen.wait`: it gives this run's own rusage.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        sys.exit(f"{path} failed (status {status}); run it by hand to see why")
    phases = dict(
        (name, int(ms)) for ms, name in re.findall(rb"(\d+) ms (load|match|write)", stdout)
    )
    return {
        "wall_s": wall,
        "load_ms": phases.get(b"load", 0),
        "match_ms": phases.get(b"match", 0),
        "write_ms": phases.get(b"write", 0),
        "peak_mb": usage.ru_maxrss / 1024,
        "minor_faults": usage.ru_minflt,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", required=True, help="directory with left.csv, right.csv, rules.toml")
    ap.add_argument("--runs", type=int, default=15, help="runs per build (default 15)")
    ap.add_argument("--replace", action="store_true", help="replace each build's previous outputs")
    ap.add_argument("--pause", type=float, default=0.0, metavar="S",
                    help="sleep S seconds before each run (default 0)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set for every build (repeatable)")
    ap.add_argument("builds", nargs="+", help="BIN or BIN:NAME=VALUE")
    a = ap.parse_args()

    common = dict(e.split("=", 1) for e in a.env)
    builds = [parse_build(b, common) for b in a.builds]
    scratch = tempfile.mkdtemp(prefix="match-ab-")
    results = {spec: [] for spec, _, _ in builds}
    try:
        for i in range(a.runs):
            for k, (spec, path, env) in enumerate(builds):
                if a.pause > 0:
                    time.sleep(a.pause)
                out = os.path.join(scratch, f"out{k}" if a.replace else f"out{k}-{i}")
                results[spec].append(run_once(path, env, a.case, out))
                if not a.replace:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    mode = "replacing" if a.replace else "fresh --out"
    if a.pause > 0:
        mode += f", {a.pause:g} s pause before each run"
    print(f"{a.runs} runs per build, taking turns, {mode}; medians (wall: min-max)")
    for spec, runs in results.items():
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        walls = sorted(r["wall_s"] for r in runs)
        print(
            f"{spec}\n"
            f"  wall {med['wall_s']:.3f} s ({walls[0]:.2f}-{walls[-1]:.2f})  "
            f"load {med['load_ms']:.0f} / match {med['match_ms']:.0f} / write {med['write_ms']:.0f} ms  "
            f"peak {med['peak_mb']:.0f} MB  faults {med['minor_faults']:.0f}  "
            f"user {med['user_s']:.2f} s  sys {med['sys_s']:.2f} s"
        )


if __name__ == "__main__":
    main()
