#!/usr/bin/env python3
"""DuckDB peer of `recon match`, for docs/benchmarks-core.md.

The same simpler job as polars_match.py: one exact-plus-tolerance join
(same currency and normalized reference, amount within 0.01, value date 0-3
days after booking), no 1:1 enforcement, splits, breaks, duplicates or fuzzy
names. Reads both CSVs, writes OUT/pairs.csv, prints pair count and seconds.

usage: duckdb_match.py CASE_DIR OUT_DIR
"""
import os
import sys
import time

import duckdb

AMOUNT = """CASE WHEN starts_with(replace({c}, ',', ''), '(')
  THEN -CAST(regexp_replace(replace({c}, ',', ''), '[()]', '', 'g') AS DECIMAL(18,2))
  ELSE CAST(replace({c}, ',', '') AS DECIMAL(18,2)) END"""
REF = "regexp_replace(regexp_replace(regexp_replace(lower({c}), '[^0-9a-z]', '', 'g'), '^inv', ''), '^0+', '')"


def main() -> None:
    case, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    con = duckdb.connect()
    left_csv = os.path.join(case, "left.csv")
    right_csv = os.path.join(case, "right.csv")
    cols = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM read_csv('{right_csv}', all_varchar=true)").fetchall()]
    if "Amount" in cols:
        ramount = AMOUNT.format(c='"Amount"')
    else:
        ramount = f"coalesce({AMOUNT.format(c='Credit')}, -({AMOUNT.format(c='Debit')}))"
    con.execute(f"""
        COPY (
          WITH l AS (
            SELECT id, currency AS ccy, {AMOUNT.format(c='amount')} AS amount,
                   strptime(booking_date, '%Y-%m-%d')::DATE AS d, {REF.format(c='reference')} AS ref
            FROM read_csv('{left_csv}', all_varchar=true)),
          r AS (
            SELECT "Transaction ID" AS rid, Ccy AS ccy, {ramount} AS amount,
                   strptime("Value Date", '%d/%m/%Y')::DATE AS d, {REF.format(c='"Payment Reference"')} AS ref
            FROM read_csv('{right_csv}', all_varchar=true))
          SELECT l.id, r.rid, l.ccy, l.amount, r.amount AS ramount
          FROM l JOIN r ON l.ccy = r.ccy AND l.ref = r.ref
          WHERE l.ref <> '' AND abs(r.amount - l.amount) <= 0.01
            AND date_diff('day', l.d, r.d) BETWEEN 0 AND 3
        ) TO '{os.path.join(out, "pairs.csv")}' (HEADER)
    """)
    n = con.execute(f"SELECT count(*) FROM read_csv('{os.path.join(out, 'pairs.csv')}')").fetchone()[0]
    print(f"duckdb {duckdb.__version__}: {n} pairs in {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
