"""The Waitress peer: a Flask app served by Waitress (8 threads by default).

Same routes as recon for bench-compare: GET /health, POST /v1/datasets (a
text/csv body streamed to disk, then parsed with pandas and stored as
Parquet), POST /v1/reconciliations ({left, right, rules}, run to the end
before answering, as ?wait does when the job finishes in time) and
GET /v1/reconciliations/<id>.

    python waitress_app.py --port 8000 --threads 8 --data-dir data/waitress
"""

from __future__ import annotations

import argparse
import os
import sys

from flask import Flask, jsonify, request
from waitress import serve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peercore import CHUNK, Store, run_job  # noqa: E402


def create_app(store: Store) -> Flask:
    app = Flask(__name__)

    @app.get("/health")
    def health():
        return jsonify(status="ok")

    @app.post("/v1/datasets")
    def upload():
        out, tmp, digest = store.new_upload()
        size = 0
        with out:
            while chunk := request.stream.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        try:
            meta = store.store_csv(tmp, request.args.get("name", "upload.csv"), size, digest.hexdigest())
        except ValueError as err:
            return jsonify(title="unprocessable CSV", detail=str(err)), 422
        return jsonify(meta), 201

    @app.post("/v1/reconciliations")
    def reconcile():
        body = request.get_json(force=True, silent=True) or {}
        if not all(isinstance(body.get(k), str) for k in ("left", "right", "rules")):
            return jsonify(title="left, right and rules are required"), 400
        job = run_job(store, body["left"], body["right"], body["rules"])
        return jsonify(job), 200

    @app.get("/v1/reconciliations/<job_id>")
    def job(job_id: str):
        try:
            return jsonify(store.job(job_id))
        except KeyError:
            return jsonify(title="no such job"), 404

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--data-dir", default="data/waitress")
    args = parser.parse_args()
    app = create_app(Store(args.data_dir))
    print(f"waitress listening on http://{args.host}:{args.port} (threads={args.threads})", flush=True)
    serve(app, host=args.host, port=args.port, threads=args.threads, max_request_body_size=1 << 31)


if __name__ == "__main__":
    main()
