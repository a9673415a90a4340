#!/usr/bin/env bash
# GET /health requests/s of recon builds side by side, with a bare ceiling.
#
# Usage: health-ab.sh ROUNDS CONNECTIONS BINARY... [hello-hyper]
#
# Starts each BINARY as `serve --engine async` with one worker, and
# target/release/hello-hyper for the word `hello-hyper`, all pinned to CPU 0
# on loopback ports 18101 and up with fresh data directories; then, ROUNDS
# times, runs `wrk -t1 -cCONNECTIONS -d4s` pinned to CPU 1 against each in
# turn, and prints each server's median requests/s, its runs, and its ratio
# to hello-hyper's median. Needs wrk and taskset; the servers are stopped at
# the end. A builds-against-each-other check for one path, where
# bench-compare measures every scenario.
set -euo pipefail
rounds=$1 conns=$2
shift 2
here=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
port=18100
for b in "$@"; do
  port=$((port + 1))
  if [ "$b" = hello-hyper ]; then
    taskset -c 0 "$here/target/release/hello-hyper" --port "$port" --workers 1 >/dev/null 2>&1 &
  else
    taskset -c 0 "$b" serve --engine async --host 127.0.0.1 --port "$port" \
      --data-dir "$tmp/data-$port" --workers 1 >/dev/null 2>&1 &
  fi
  pids+=($!)
done
for p in $(seq 18101 "$port"); do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$p/health" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq "$rounds"); do
  port=18100
  for b in "$@"; do
    port=$((port + 1))
    rps=$(taskset -c 1 wrk -t1 -c"$conns" -d4s "http://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}')
    echo "$b $rps"
  done
done >"$tmp/runs.txt"
python3 - "$tmp/runs.txt" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, rps = line.split()
    runs[name].append(float(rps))
ceiling = statistics.median(runs["hello-hyper"]) if "hello-hyper" in runs else None
for name, v in runs.items():
    ratio = f" = {statistics.median(v) / ceiling:.3f} of hello-hyper" if ceiling else ""
    print(f"{name}: median {statistics.median(v):.0f} requests/s, runs {[int(x) for x in v]}{ratio}")
PY
