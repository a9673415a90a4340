#!/usr/bin/env python3
"""Repeat POST /v1/reconciliations?wait against one fresh recon server.

Usage: reconcile-repeat.py RECON_BINARY ENGINE [RUNS] [CASE_DIR]

Starts `RECON_BINARY serve --engine ENGINE` on a loopback port with a fresh
data directory, uploads CASE_DIR/left.csv and right.csv (default: a case made
by `recon gen --records 50000 --seed 42 --out CASE_DIR`), then runs the
reconciliation RUNS times, 0.3 s apart, and prints the median client time,
every run, the medians of the job's stages (job.json `stages`) and of the
commit time from the server's log. Standard library only; the server is
stopped at the end.
"""
import json
import os
import re
import shutil
import statistics as st
import subprocess
import sys
import tempfile
import time
import urllib.request

binary, engine = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
case = sys.argv[4] if len(sys.argv) > 4 else "/tmp/case50k"
port = str(18000 + os.getpid() % 1000)
data = tempfile.mkdtemp(prefix="reconcile-repeat-")
env = dict(os.environ, RECON_DATA_DIR=data, RUST_LOG="info")
log = open(os.path.join(data, "server.log"), "w")
server = subprocess.Popen([binary, "serve", "--engine", engine, "--port", port],
                          env=env, stdout=subprocess.DEVNULL, stderr=log)
base = f"http://127.0.0.1:{port}"
try:
    for _ in range(500):
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            time.sleep(0.01)

    def upload(path):
        req = urllib.request.Request(
            base + "/v1/datasets?name=" + os.path.basename(path),
            data=open(path, "rb").read(), headers={"Content-Type": "text/csv"}, method="POST")
        return json.load(urllib.request.urlopen(req))["id"]

    body = json.dumps({
        "left": upload(os.path.join(case, "left.csv")),
        "right": upload(os.path.join(case, "right.csv")),
        "rules": open(os.path.join(case, "rules.toml")).read(),
    }).encode()
    times, stages = [], []
    for _ in range(runs):
        time.sleep(0.3)
        t = time.perf_counter()
        req = urllib.request.Request(base + "/v1/reconciliations?wait=30", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
        job = json.load(urllib.request.urlopen(req))
        times.append(1e3 * (time.perf_counter() - t))
        if job.get("state") != "succeeded":
            sys.exit(f"job did not succeed: {job}")
        stages.append(job["stages"])
finally:
    server.terminate()
    server.wait()
    log.close()
commits = [float(x) for x in re.findall(r"commit_ms=([0-9.]+)",
                                         open(os.path.join(data, "server.log")).read())]
shutil.rmtree(data, ignore_errors=True)
print(f"{engine}: median {st.median(times):.1f} ms, runs {[round(x, 1) for x in times]}")
print("  stage medians (ms):", {k: round(st.median(s[k] for s in stages), 1) for k in stages[0]},
      "commit", round(st.median(commits), 1) if commits else None)
