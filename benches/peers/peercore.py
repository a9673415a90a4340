"""What the two Python peers share: a dataset store and a pandas reconciliation.

The peers exist to put numbers beside recon's, so they do the same work the
way a pandas backend would: an upload is streamed to disk in 64 KiB reads
(hashed on the way), parsed with pandas and stored as Parquet with pyarrow;
a reconciliation reads both Parquet files, matches with an exact
(normalized) reference merge, then a tolerance merge on amount for what is
left, and stores its pairs as Parquet. Jobs are files, so any worker process
answers for any job.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import tomllib
import uuid

import pandas as pd

CHUNK = 64 * 1024


class Store:
    """Datasets and jobs under one data directory."""

    def __init__(self, root: str) -> None:
        self.datasets = os.path.join(root, "datasets")
        self.jobs = os.path.join(root, "jobs")
        os.makedirs(self.datasets, exist_ok=True)
        os.makedirs(self.jobs, exist_ok=True)

    def new_upload(self):
        """A temporary file for a streamed upload, and a running hash."""
        fd, path = tempfile.mkstemp(dir=self.datasets, suffix=".upload")
        return os.fdopen(fd, "wb"), path, hashlib.sha256()

    def store_csv(self, tmp_path: str, name: str, size: int, sha256: str) -> dict:
        """Parses an uploaded CSV with pandas and stores it as Parquet."""
        try:
            frame = pd.read_csv(tmp_path, dtype=str, keep_default_na=False)
            ds_id = "ds_" + uuid.uuid4().hex
            final = os.path.join(self.datasets, ds_id + ".parquet")
            frame.to_parquet(final + ".tmp", engine="pyarrow", index=False)
            os.replace(final + ".tmp", final)
        finally:
            os.remove(tmp_path)
        return {
            "id": ds_id,
            "name": name,
            "format": "csv",
            "rows": int(len(frame)),
            "columns": list(frame.columns),
            "bytes": size,
            "sha256": sha256,
        }

    def dataset(self, ds_id: str) -> pd.DataFrame:
        if not re.fullmatch(r"ds_[0-9a-f]{32}", ds_id):
            raise KeyError(ds_id)
        return pd.read_parquet(os.path.join(self.datasets, ds_id + ".parquet"))

    def save_job(self, job: dict) -> None:
        path = os.path.join(self.jobs, job["id"] + ".json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(job, f)
        os.replace(path + ".tmp", path)

    def job(self, job_id: str) -> dict:
        if not re.fullmatch(r"job_[0-9a-f]{32}", job_id):
            raise KeyError(job_id)
        path = os.path.join(self.jobs, job_id + ".json")
        if not os.path.exists(path):
            raise KeyError(job_id)
        with open(path, encoding="utf-8") as f:
            return json.load(f)


def _amounts(frame: pd.DataFrame, side: dict) -> pd.Series:
    """Signed amounts: plain, bank style ("1,234.56", "(12.30)") or debit/credit columns."""

    def parse(col: pd.Series) -> pd.Series:
        text = col.astype(str).str.strip()
        neg = text.str.startswith("(") & text.str.endswith(")")
        clean = text.str.replace(r"[(),\s]", "", regex=True)
        values = pd.to_numeric(clean.where(clean != "", "0"), errors="coerce")
        return values.where(~neg, -values)

    if "amount" in side:
        return parse(frame[side["amount"]])
    return parse(frame[side["credit"]]) - parse(frame[side["debit"]])


def _normalize(frame: pd.DataFrame, side: dict, prefixes: list[str]) -> pd.DataFrame:
    fmt = side.get("date_format")
    ref = frame[side["reference"]].astype(str).str.upper().str.replace(r"[^0-9A-Z]", "", regex=True)
    for p in prefixes:
        ref = ref.str.removeprefix(p.upper())
    return pd.DataFrame(
        {
            "id": frame[side["id"]],
            "date": pd.to_datetime(frame[side["date"]], format=fmt, errors="coerce"),
            "amount": _amounts(frame, side).round(2),
            "currency": frame[side["currency"]].astype(str).str.upper(),
            "ref": ref,
        }
    )


def reconcile(left_raw: pd.DataFrame, right_raw: pd.DataFrame, rules_text: str) -> tuple[dict, pd.DataFrame]:
    """Exact reference merge, then a tolerance merge on amount; one-to-one."""
    started = time.perf_counter()
    rules = tomllib.loads(rules_text)
    prefixes = rules.get("normalize", {}).get("strip_prefixes", [])
    left = _normalize(left_raw, rules["left"], prefixes)
    right = _normalize(right_raw, rules["right"], prefixes)
    tol, before, after = 0.01, 0, 3

    def window(pairs: pd.DataFrame) -> pd.DataFrame:
        days = (pairs["date_r"] - pairs["date_l"]).dt.days
        ok = ((pairs["amount_r"] - pairs["amount_l"]).abs() <= tol + 1e-9) & (days >= -before) & (days <= after)
        return pairs[ok]

    def one_to_one(pairs: pd.DataFrame) -> pd.DataFrame:
        pairs = pairs.drop_duplicates("id_l")
        return pairs.drop_duplicates("id_r")

    # Pass 1: the same normalized reference and currency, within tolerance.
    exact = left[left["ref"] != ""].merge(
        right[right["ref"] != ""], on=["ref", "currency"], suffixes=("_l", "_r")
    )
    exact = one_to_one(window(exact))
    exact = exact.assign(pass_name="reference")

    # Pass 2: what is left, by nearest amount per currency within tolerance.
    rest_l = left[~left["id"].isin(exact["id_l"])].sort_values("amount")
    rest_r = right[~right["id"].isin(exact["id_r"])].sort_values("amount")
    near = pd.merge_asof(
        rest_l.rename(columns=lambda c: c + "_l" if c != "currency" else c),
        rest_r.rename(columns=lambda c: c + "_r" if c != "currency" else c),
        left_on="amount_l",
        right_on="amount_r",
        by="currency",
        tolerance=tol + 1e-9,
        direction="nearest",
    ).dropna(subset=["id_r"])
    near = one_to_one(window(near)).assign(pass_name="amount-date")

    pairs = pd.concat(
        [exact[["id_l", "id_r", "pass_name"]], near[["id_l", "id_r", "pass_name"]]],
        ignore_index=True,
    )
    matched_l = int(pairs["id_l"].nunique())
    matched_r = int(pairs["id_r"].nunique())
    summary = {
        "left_records": int(len(left)),
        "right_records": int(len(right)),
        "matched_pairs": int(len(pairs)),
        "matched_by_pass": {k: int(v) for k, v in pairs["pass_name"].value_counts().items()},
        "unmatched_left": int(len(left)) - matched_l,
        "unmatched_right": int(len(right)) - matched_r,
        "seconds": round(time.perf_counter() - started, 4),
    }
    return summary, pairs


def run_job(store: Store, left_id: str, right_id: str, rules_text: str) -> dict:
    """Runs a reconciliation to the end and stores the job and its pairs."""
    job_id = "job_" + uuid.uuid4().hex
    job = {"id": job_id, "state": "running", "left": left_id, "right": right_id}
    try:
        summary, pairs = reconcile(store.dataset(left_id), store.dataset(right_id), rules_text)
        pairs.to_parquet(os.path.join(store.jobs, job_id + ".parquet"), engine="pyarrow", index=False)
        job.update(state="succeeded", summary=summary)
    except (KeyError, ValueError, tomllib.TOMLDecodeError) as err:
        job.update(state="failed", error=f"{type(err).__name__}: {err}")
    store.save_job(job)
    return job


__all__ = ["CHUNK", "Store", "reconcile", "run_job"]
