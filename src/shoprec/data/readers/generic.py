"""Our own layout (shoprec: *events.csv[.gz] and *catalogue.csv[.gz]) and any CSV or Parquet log
read through a `mapping` from our column names to the file's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.clean import CleanPolicy
from shoprec.data.readers._files import (
    _beside,
    _csv_header,
    _finish,
    _read_csv_text,
    _shoprec_catalogue,
)
from shoprec.data.readers._loaded import LoadedData
from shoprec.errors import ConfigError, DataError, MalformedFileError, require_extra

MAPPING_KEYS = ("user", "item", "event", "timestamp", "value", "title", "category", "price")
"""Our column names that `mapping` may map (the last three build a catalogue from the log)."""


def _read_shoprec(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    if path.is_dir():
        path = _events_in_dir(path)
    if catalogue is None:
        catalogue = (
            _beside(path, [path.name.removesuffix(".gz").replace("events", "catalogue")])
            if "events" in path.name
            else None
        )
    return _read_generic(path, policy, catalogue, {}, parquet=False)


def _events_in_dir(folder: Path, required: bool = True) -> Path | None:
    found = sorted(folder.glob("*events.csv")) + sorted(folder.glob("*events.csv.gz"))
    if len(found) != 1:
        if not required:
            return None
        raise DataError(
            f"{folder}: expected one *events.csv[.gz] file, found {[p.name for p in found]}."
        )
    return found[0]


def _read_csv(
    path: Path, policy: CleanPolicy, catalogue: Path | None, mapping: dict[str, str]
) -> LoadedData:
    return _read_generic(path, policy, catalogue, mapping, parquet=False)


def _read_parquet(
    path: Path, policy: CleanPolicy, catalogue: Path | None, mapping: dict[str, str]
) -> LoadedData:
    return _read_generic(path, policy, catalogue, mapping, parquet=True)


def _read_generic(
    path: Path, policy: CleanPolicy, catalogue: Path | None, mapping: dict[str, str], parquet: bool
) -> LoadedData:
    unknown = sorted(set(mapping) - set(MAPPING_KEYS))
    if unknown:
        raise ConfigError(
            f"The 'mapping' parameter of load maps our column names {list(MAPPING_KEYS)} to the "
            f"file's. Got unknown keys {unknown} instead."
        )
    if parquet:
        require_extra("pyarrow", "parquet")
        import pyarrow.parquet as pq

        try:
            header = list(pq.ParquetFile(path).schema_arrow.names)
        except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
            raise MalformedFileError(path, None, f"cannot be read as Parquet: {exc}") from None
    else:
        header, sep = _csv_header(path)
    columns = {ours: mapping.get(ours, ours) for ours in MAPPING_KEYS}
    required = [
        columns["user"],
        columns["item"],
        *(mapping[k] for k in mapping if k not in ("user", "item")),
    ]
    missing = [c for c in dict.fromkeys(required) if c not in header]
    if missing:
        raise MalformedFileError(
            path,
            None if parquet else 1,
            f"missing the required columns {missing} (mapping {mapping or 'none'}); found {header}",
        )
    present = {ours: theirs for ours, theirs in columns.items() if theirs in header}
    # Only the mapped columns are read: other columns may hold personal data we do not need.
    wanted = list(dict.fromkeys(present.values()))
    if parquet:
        raw = pd.read_parquet(path, columns=wanted)
    else:
        numbers = tuple(present[k] for k in ("timestamp", "value", "price") if k in present)
        raw = _read_csv_text(path, sep, numeric=numbers, usecols=wanted)
    frame = pd.DataFrame(
        {ours: raw[theirs] for ours, theirs in present.items() if ours in MAPPING_KEYS[:5]}
    )
    ordinal = "timestamp" not in frame.columns
    if ordinal:
        frame["timestamp"] = np.arange(len(frame), dtype=np.int64)
    if catalogue:
        cat = _shoprec_catalogue(catalogue)
    elif {"title", "category", "price"} & set(present):
        cat = pd.DataFrame(
            {
                ours: raw[present[ours]]
                for ours in ("item", "title", "category", "price")
                if ours in present
            }
        )
    else:
        cat = None
    del raw
    return _finish(path, frame, policy, cat, ordinal_time=ordinal)
