"""Build the bundled demo shop (src/shoprec/demo/) from the UCI Online Retail CSV.

    python scripts/build_demo_shop.py [SOURCE] [--out src/shoprec/demo] [--max-bytes 3000000]

SOURCE defaults to ../shared/datasets/online-retail/online_retail.csv.gz. The steps:

1. Read it with shoprec's `online-retail` reader and default CleanPolicy: cancellations, stock
   adjustments, service lines (postage, fees, ...), lines without a customer, unparseable rows
   and exact duplicates are dropped (the reader's report, printed below, counts each).
2. One event per (customer, item, invoice time): lines of the same product on the same invoice
   are merged and their quantities summed. Times are rounded down to the minute (the source
   has minute precision already, so this changes nothing today).
3. Only if the two gzip files would exceed --max-bytes: a k-core filter (customers and
   products with at least k distinct partners), k = 2, 3, ... until they fit.
4. Write, sorted by time then customer then product, with gzip -9 and no timestamp in the gzip
   header (so the same input gives byte-identical files):
   - online_retail_events.csv.gz: user,item,timestamp,value (epoch seconds UTC, quantity;
     every row is a purchase, so the event column is left out, which the shoprec format allows);
   - online_retail_catalogue.csv.gz: item,title,category,price for every item in the events.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT / ".." / "shared" / "datasets" / "online-retail" / "online_retail.csv.gz"
DEFAULT_OUT = ROOT / "src" / "shoprec" / "demo"


def compact(events: pd.DataFrame) -> pd.DataFrame:
    """One row per (customer, item, minute) with summed quantities, sorted for gzip."""
    events = events.assign(timestamp=events["timestamp"] // 60 * 60)
    merged = events.groupby(["user", "item", "timestamp"], sort=False, as_index=False)[
        "value"
    ].sum()
    merged["value"] = merged["value"].round().astype(np.int64)  # quantities are whole units
    return merged.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)


def k_core(events: pd.DataFrame, k: int) -> pd.DataFrame:
    """Keep customers and items with at least k distinct partners, repeated until stable."""
    while True:
        users = events.groupby("user")["item"].transform("nunique")
        items = events.groupby("item")["user"].transform("nunique")
        keep = (users >= k) & (items >= k)
        if keep.all():
            return events
        events = events[keep]


def encode(frame: pd.DataFrame) -> bytes:
    return gzip.compress(frame.to_csv(index=False).encode("utf-8"), compresslevel=9, mtime=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source", nargs="?", default=str(DEFAULT_SOURCE), help="online_retail.csv[.gz]"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="folder to write the two files to")
    parser.add_argument(
        "--max-bytes", type=int, default=3_000_000, help="size budget of both files"
    )
    args = parser.parse_args(argv)

    from shoprec.data.readers import DEMO_CATALOGUE, DEMO_EVENTS, load

    t0 = time.perf_counter()
    loaded = load(args.source, "online-retail")
    print(f"read {args.source} in {time.perf_counter() - t0:.1f}s")
    for finding, info in loaded.report.as_dict()["findings"].items():
        print(f"  {finding}: {info['rows']:,} rows {info['action']}")
    print(f"  kept {loaded.report.rows_kept:,} of {loaded.report.rows_read:,} rows")

    events = compact(loaded.interactions.frame[["user", "item", "timestamp", "value"]])
    print(f"merged lines of the same item on the same invoice: {len(events):,} events")
    catalogue = loaded.catalogue.frame
    k = 1
    while True:
        kept = k_core(events, k) if k > 1 else events
        if kept.empty:
            raise SystemExit(
                f"nothing is left with k={k}: --max-bytes {args.max_bytes} is too small"
            )
        cat = catalogue[catalogue["item"].isin(kept["item"].unique())].copy()
        cat["price"] = cat["price"].round(4)
        blobs = {DEMO_EVENTS: encode(kept), DEMO_CATALOGUE: encode(cat.sort_values("item"))}
        size = sum(len(b) for b in blobs.values())
        if size <= args.max_bytes:
            break
        print(f"  {size:,} bytes with k={k} is over {args.max_bytes:,}; trying k={k + 1}")
        k += 1

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        (out / name).write_bytes(blob)
        print(f"wrote {out / name} ({len(blob):,} bytes)")
    print(
        f"demo shop: {len(kept):,} purchases, {kept['user'].nunique():,} customers, "
        f"{kept['item'].nunique():,} products, k-core k={k}, {size:,} bytes in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
