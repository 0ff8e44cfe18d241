"""Fixed-layout research formats: sequence, s3rec, movielens, movielens-100k, taobao,
amazon-json and llmrank (RecBole atomic files). The format table is in `shoprec.data.readers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.clean import CleanPolicy
from shoprec.data.readers._files import (
    _beside,
    _compression,
    _decode,
    _finish,
    _first_line,
    _integers,
    _read_bytes,
    _read_lines,
    _read_table,
    _require_columns,
    _shoprec_catalogue,
)
from shoprec.data.readers._loaded import LoadedData
from shoprec.errors import EmptyDataError, MalformedFileError

TAOBAO_WINDOW = ("2017-11-25T00:00:00+08:00", "2017-12-03T23:59:59+08:00")
"""The span the Tianchi UserBehavior dataset documents; the raw file has a few rows outside it."""

TAOBAO_EVENTS = {"pv": "view", "cart": "cart", "fav": "favourite", "buy": "purchase"}


def _read_sequence(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    frame = _read_table(
        path,
        " ",
        ["user", "item"],
        "2 space-separated integers 'user item'",
        int_columns=("user", "item"),
    )
    frame["timestamp"] = frame.index.to_numpy(np.int64)  # the line number keeps the order
    cat = _shoprec_catalogue(catalogue) if catalogue else None
    return _finish(path, frame, policy, cat, ordinal_time=True)


def _explode_tokens(path: Path, users: pd.Series, tokens: pd.Series, integer: bool) -> pd.DataFrame:
    """One row per token of each line, with the global position as the time."""
    lengths = tokens.str.len().to_numpy()
    items = tokens.explode()
    if integer:
        items = _integers(path, items, "item")
    return pd.DataFrame(
        {
            "user": np.repeat(users.to_numpy(), lengths),
            "item": items.to_numpy(),
            "timestamp": np.arange(len(items), dtype=np.int64),
        }
    )


def _read_s3rec(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    tokens = _read_lines(path).str.split()
    short = (tokens.str.len() < 2).to_numpy()
    if short.any():
        line = int(tokens.index[np.argmax(short)])
        raise MalformedFileError(path, line, "expected 'user item item ...' with at least one item")
    users = _integers(path, tokens.str[0], "user")
    frame = _explode_tokens(path, users, tokens.str[1:], integer=True)
    cat = _shoprec_catalogue(catalogue) if catalogue else None
    return _finish(path, frame, policy, cat, ordinal_time=True)


def _movies_dat(path: Path) -> pd.DataFrame:
    lines = _read_lines(path, encoding="latin-1")
    parts = lines.str.split("::", n=2, expand=True)
    if parts.shape[1] < 3 or parts[2].isna().any():
        line = (
            int(lines.index[np.argmax(parts.isna().any(axis=1).to_numpy())]) if len(parts) else None
        )
        raise MalformedFileError(path, line, "expected 'MovieID::Title::Genres'")
    return pd.DataFrame(
        {
            "item": _integers(path, parts[0], "MovieID").astype(str),
            "title": parts[1],
            "category": parts[2].str.split("|").str[0],
        }
    )


def _read_movielens(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    first = _first_line(path) or ""
    n_fields = first.count("::") + 1
    if n_fields == 4:
        names = ["user", "_1", "item", "_2", "value", "_3", "timestamp"]
        layout = "'UserID::MovieID::Rating::Timestamp'"
        ints = ("user", "item", "timestamp")
    elif n_fields == 2:
        names, layout, ints = ["user", "_1", "item"], "'UserID::MovieID'", ("user", "item")
    else:
        raise MalformedFileError(
            path, 1, f"expected 'UserID::MovieID::Rating::Timestamp', got {first[:200]!r}"
        )
    # Split on single colons so pandas' fast C parser does the work; the '::' separators leave
    # empty fields in between, which must stay empty.
    frame = _read_table(path, ":", names, layout, int_columns=ints)
    if n_fields == 2:
        frame["timestamp"] = frame.index.to_numpy(np.int64)
    frame["event"] = "rating"
    movies = catalogue or _beside(path, ["movies.dat"])
    cat = _movies_dat(movies) if movies else None
    return _finish(path, frame, policy, cat, ordinal_time=n_fields == 2)


ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def _u_item(path: Path) -> pd.DataFrame:
    names = [
        "item",
        "title",
        "release",
        "video",
        "url",
        *[f"g{i}" for i in range(len(ML100K_GENRES))],
    ]
    frame = _read_table(
        path,
        "|",
        names,
        "24 '|'-separated fields",
        int_columns=("item",),
        optional=("title", "release", "video", "url"),
        encoding="latin-1",
    )
    flags = frame[names[5:]].to_numpy() == "1"
    first = np.where(flags.any(axis=1), np.argmax(flags, axis=1), -1)
    genres = np.append(np.array(ML100K_GENRES, dtype=object), "")
    return pd.DataFrame(
        {"item": frame["item"].astype(str), "title": frame["title"], "category": genres[first]}
    )


def _read_movielens_100k(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    frame = _read_table(
        path,
        "\t",
        ["user", "item", "value", "timestamp"],
        "4 tab-separated fields 'user item rating timestamp'",
        int_columns=("user", "item", "timestamp"),
    )
    frame["event"] = "rating"
    items = catalogue or _beside(path, ["u.item"])
    return _finish(path, frame, policy, _u_item(items) if items else None)


def _read_taobao(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    names = ["user", "item", "category", "event", "timestamp"]
    frame = _read_table(
        path,
        ",",
        names,
        "'user_id,item_id,category_id,behavior_type,timestamp'",
        int_columns=("user", "item", "category", "timestamp"),
    )
    if policy.min_timestamp is None and policy.max_timestamp is None:
        policy = policy.with_window(*TAOBAO_WINDOW)
    # The format's own event names; anything else is left for the policy to count and drop.
    frame["event"] = frame["event"].replace(TAOBAO_EVENTS)
    if catalogue:
        cat = _shoprec_catalogue(catalogue)
    else:
        cat = pd.DataFrame({"item": frame["item"], "category": frame["category"].astype(str)})
    return _finish(path, frame.drop(columns="category"), policy, cat)


def _read_amazon_json(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    try:
        raw = pd.read_json(path, lines=True, dtype=False, compression=_compression(path))
    except (ValueError, TypeError) as exc:
        raise _json_error(path, exc) from None
    if not isinstance(raw, pd.DataFrame) or raw.empty:
        raise EmptyDataError(f"{path}: the file holds no reviews.")
    if "reviewerID" in raw.columns:  # Amazon 2014 / 2018
        needed = {
            "user": "reviewerID",
            "item": "asin",
            "value": "overall",
            "timestamp": "unixReviewTime",
        }
        scale = 1
    else:  # Amazon 2023: ms timestamps
        item = "parent_asin" if "parent_asin" in raw.columns else "asin"
        needed = {"user": "user_id", "item": item, "value": "rating", "timestamp": "timestamp"}
        scale = 1000
    _require_columns(path, raw, list(needed.values()), None)
    # Keep only what is needed: names and review texts are direct identifiers or personal data.
    frame = pd.DataFrame({ours: raw[theirs] for ours, theirs in needed.items()})
    del raw
    if scale != 1:
        frame["timestamp"] = pd.to_numeric(frame["timestamp"], errors="coerce") / scale
    frame["event"] = "rating"
    cat = _shoprec_catalogue(catalogue) if catalogue else None
    return _finish(path, frame, policy, cat)


def _json_error(path: Path, exc: Exception) -> MalformedFileError:
    """Find the first line that is not a JSON object (only runs once parsing has failed)."""
    text = _decode(path, _read_bytes(path), "utf-8")
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            return MalformedFileError(
                path, number, f"not valid JSON ({err.msg} at column {err.colno})"
            )
        if not isinstance(record, dict):
            return MalformedFileError(
                path, number, f"expected a JSON object, got {type(record).__name__}"
            )
    return MalformedFileError(path, None, f"cannot be read as JSON lines: {exc}")


def _atomic_header(path: Path) -> list[str]:
    first = _first_line(path) or ""
    return [field.split(":")[0].strip() for field in first.split("\t")]


def _read_llmrank(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    header = _atomic_header(path)
    if "user_id" not in header or "item_id" not in header:
        raise MalformedFileError(
            path,
            1,
            f"expected a RecBole header with 'user_id:token' and 'item_id:token', got {header}",
        )
    frame = _read_table(
        path,
        "\t",
        header,
        f"{len(header)} tab-separated fields {header}",
        optional=("item_id_list",),
        skip=1,
    )
    if "item_id_list" in header:
        # History then target: the full chronological sequence. Tokens are ids, not integers.
        history = frame["item_id_list"].fillna("")
        tokens = (history + " " + frame["item_id"]).str.split()
        events = _explode_tokens(path, frame["user_id"], tokens, integer=False)
        ordinal = True
    else:
        events = pd.DataFrame({"user": frame["user_id"], "item": frame["item_id"]})
        if "rating" in header:
            events["value"], events["event"] = frame["rating"], "rating"
        ordinal = "timestamp" not in header
        events["timestamp"] = frame.index.to_numpy(np.int64) if ordinal else frame["timestamp"]
    items = catalogue or _recbole_item_file(path)
    return _finish(
        path, events, policy, _recbole_items(items) if items else None, ordinal_time=ordinal
    )


def _recbole_item_file(path: Path) -> Path | None:
    """`<dataset>.item` beside the .inter file: Games-6k.test.inter -> Games-6k.item, Games.item."""
    stem = path.name.split(".")[0]
    names = [f"{stem}.item", f"{stem.rsplit('-', 1)[0]}.item"]
    found = _beside(path, names)
    if found is None:
        others = sorted(path.parent.glob("*.item")) + sorted(path.parent.glob("*.item.gz"))
        found = others[0] if len(others) == 1 else None
    return found


def _recbole_items(path: Path) -> pd.DataFrame:
    header = _atomic_header(path)
    if "item_id" not in header:
        raise MalformedFileError(
            path, 1, f"expected a RecBole header with 'item_id:token', got {header}"
        )
    frame = _read_table(path, "\t", header, f"{len(header)} tab-separated fields {header}", skip=1)
    columns = {"item_id": "item", "title": "title", "categories": "category", "price": "price"}
    return frame[[c for c in columns if c in frame.columns]].rename(columns=columns)
