"""Shared plumbing for the benchmark scripts: dataset paths, peak memory, tables, JSON."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("SHOPREC_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results"

# name -> (relative path, reader format)
SOURCES = {
    "ml-1m": ("sasrec/ml-1m.txt.gz", "sequence"),
    "beauty": ("bert4rec/beauty.txt.gz", "sequence"),
    "games": ("amazon-games-llmrank/Games-6k.test.inter.gz", "llmrank"),
}


def dataset_path(name: str) -> tuple[Path, str]:
    rel, fmt = SOURCES[name]
    path = DATASETS / rel
    if not path.exists():
        sys.exit(f"dataset {name!r} not found at {path}; set SHOPREC_DATASETS to ../shared/datasets")
    return path, fmt


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(path: str | Path, payload: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def table(rows: list[dict], columns: list[str]) -> str:
    """A Markdown table, so the output pastes straight into the README."""

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
