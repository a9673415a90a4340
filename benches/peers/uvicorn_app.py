"""The Uvicorn peer: a FastAPI app served by Uvicorn (2 worker processes by default).

Same routes as recon for bench-compare: GET /health, POST /v1/datasets (a
text/csv body streamed to disk, then parsed with pandas and stored as
Parquet, off the event loop), POST /v1/reconciliations ({left, right,
rules}, run to the end in the thread pool before answering) and
GET /v1/reconciliations/{id}. Access logging is off, as in the Waitress peer
and recon.

    python uvicorn_app.py --port 8000 --workers 2 --data-dir data/uvicorn
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.concurrency import run_in_threadpool  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from peercore import Store, run_job  # noqa: E402

app = FastAPI()


@functools.cache
def store() -> Store:
    """The store of this worker process (created on first use: the launcher
    process imports this module too, before it sets the data directory)."""
    return Store(os.environ.get("PEERS_DATA_DIR", "data/uvicorn"))


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.post("/v1/datasets", status_code=201)
async def upload(request: Request, name: str = "upload.csv"):
    out, tmp, digest = store().new_upload()
    size = 0
    with out:
        async for chunk in request.stream():
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    try:
        return await run_in_threadpool(store().store_csv, tmp, name, size, digest.hexdigest())
    except ValueError as err:
        return JSONResponse({"title": "unprocessable CSV", "detail": str(err)}, status_code=422)


@app.post("/v1/reconciliations")
async def reconcile(request: Request):
    body = await request.json()
    if not all(isinstance(body.get(k), str) for k in ("left", "right", "rules")):
        return JSONResponse({"title": "left, right and rules are required"}, status_code=400)
    return await run_in_threadpool(run_job, store(), body["left"], body["right"], body["rules"])


@app.get("/v1/reconciliations/{job_id}")
async def job(job_id: str):
    try:
        return store().job(job_id)
    except KeyError:
        return JSONResponse({"title": "no such job"}, status_code=404)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", default="data/uvicorn")
    args = parser.parse_args()
    os.environ["PEERS_DATA_DIR"] = os.path.abspath(args.data_dir)
    print(f"uvicorn listening on http://{args.host}:{args.port} (workers={args.workers})", flush=True)
    uvicorn.run(
        "uvicorn_app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        app_dir=HERE,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
