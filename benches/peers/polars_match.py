#!/usr/bin/env python3
"""Polars peer of `recon match`, for docs/benchmarks-core.md.

Runs a simpler job than recon on a case written by `recon gen`: one
exact-plus-tolerance join (same currency and normalized reference, amount
within 0.01, value date 0-3 days after booking), no 1:1 enforcement, no
splits, breaks, duplicates or fuzzy names. Reads both CSVs, writes the
matched pairs to OUT/pairs.csv, prints the pair count and seconds.

usage: polars_match.py CASE_DIR OUT_DIR
"""
import os
import sys
import time

import polars as pl


def amount(col: str) -> pl.Expr:
    """Bank or ledger amount text -> Decimal: drop separators, (x) is -x."""
    text = pl.col(col).str.replace_all(",", "")
    neg = text.str.starts_with("(")
    value = text.str.replace_all(r"[()]", "").cast(pl.Decimal(18, 2))
    return pl.when(neg).then(-value).otherwise(value)


def norm_ref(col: str) -> pl.Expr:
    return (
        pl.col(col)
        .str.to_lowercase()
        .str.replace_all(r"[^0-9a-z]", "")
        .str.replace(r"^inv", "")
        .str.replace(r"^0+", "")
    )


def main() -> None:
    case, out = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    left = pl.read_csv(os.path.join(case, "left.csv"), infer_schema=False).select(
        pl.col("id"),
        pl.col("currency").alias("ccy"),
        amount("amount").alias("amount"),
        pl.col("booking_date").str.strptime(pl.Date, "%Y-%m-%d").alias("date"),
        norm_ref("reference").alias("ref"),
    )
    right = pl.read_csv(os.path.join(case, "right.csv"), infer_schema=False)
    if "Amount" in right.columns:
        ramount = amount("Amount")
    else:
        ramount = pl.coalesce(amount("Credit"), -amount("Debit"))
    right = right.select(
        pl.col("Transaction ID").alias("rid"),
        pl.col("Ccy").alias("ccy"),
        ramount.alias("ramount"),
        pl.col("Value Date").str.strptime(pl.Date, "%d/%m/%Y").alias("rdate"),
        norm_ref("Payment Reference").alias("ref"),
    )
    pairs = (
        left.filter(pl.col("ref").is_not_null() & (pl.col("ref") != ""))
        .join(right, on=["ccy", "ref"], how="inner")
        .filter(
            ((pl.col("ramount") - pl.col("amount")).abs() <= pl.lit(0.01).cast(pl.Decimal(18, 2)))
            & ((pl.col("rdate") - pl.col("date")).dt.total_days().is_between(0, 3))
        )
        .select("id", "rid", "ccy", "amount", "ramount")
    )
    os.makedirs(out, exist_ok=True)
    pairs.write_csv(os.path.join(out, "pairs.csv"))
    print(f"polars {pl.__version__}: {pairs.height} pairs in {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
