"""k-anonymity for shoppers' attributes: generalise quasi-identifiers, suppress what is left.

Attributes such as gender, age, occupation and zip code (ML-1M's users.dat) are quasi-identifiers:
none names a shopper, but together they often single one out (Sweeney: zip + birth date + sex
identify most Americans). A table is k-anonymous when every combination of quasi-identifier
values it shows is shared by at least k rows.

`k_anonymise` uses full-domain generalisation with a greedy search (in the spirit of Datafly,
Sweeney 2002): while more than `max_suppression` of the rows sit in groups smaller than k, the
quasi-identifier whose next generalisation leaves the fewest rows at risk moves one level up its
hierarchy (zip 48067 -> 4806* -> 480** ..., age 25 -> 25-34 -> 35+ ...); ties go to the column
with more distinct values. The rows still in small groups are then suppressed (removed), and
the report says what each column became, how many rows were suppressed and the group sizes
before and after.

A hierarchy is a list of functions, one per level above the original, each mapping the original
column to its generalised values (as strings); the last level is usually "*" (fully suppressed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.errors import ConfigError, DataError, MalformedFileError, check_float, check_int

Level = Callable[[pd.Series], pd.Series]

ML1M_QUASI_IDENTIFIERS: tuple[str, ...] = ("gender", "age", "occupation", "zip")
ML1M_AGE_GROUPS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}


def read_ml1m_users(path: str | Path) -> pd.DataFrame:
    """ML-1M users.dat[.gz] (UserID::Gender::Age::Occupation::Zip-code) as a frame with the
    columns user, gender, age (the dataset's age-group code), occupation (code) and zip (str)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such users file.")
    import gzip

    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    rows = []
    with opener(path, "rt", encoding="latin-1") as fh:  # type: ignore[operator]
        for number, line in enumerate(fh, start=1):
            line = line.rstrip("\n\r")
            if not line:
                continue
            parts = line.split("::")
            if len(parts) != 5:
                raise MalformedFileError(
                    path, number, f"expected 5 '::'-separated fields (UserID::Gender::Age::"
                    f"Occupation::Zip-code), got {len(parts)}"
                )
            rows.append(parts)
    frame = pd.DataFrame(rows, columns=["user", "gender", "age", "occupation", "zip"])
    try:
        frame["age"] = frame["age"].astype(int)
        frame["occupation"] = frame["occupation"].astype(int)
    except ValueError as exc:
        raise MalformedFileError(path, None, f"age and occupation must be integers ({exc})") from None
    return frame


# ---- hierarchies -------------------------------------------------------------------------------
def zip_hierarchy(digits: int = 5) -> list[Level]:
    """Zip codes truncated one digit per level (48067 -> 4806* -> ... -> *****)."""

    def level(keep: int) -> Level:
        def f(s: pd.Series) -> pd.Series:
            head = s.astype(str).str.slice(0, digits).str.slice(0, keep)
            return head + "*" * (digits - keep)

        return f

    return [level(keep) for keep in range(digits - 1, -1, -1)]


def band_hierarchy(bands: Sequence[Sequence[tuple[float, float, str]]]) -> list[Level]:
    """Numeric values mapped to labelled bands, one band list per level; then "*".

    bands: for each level, (low, high, label) triples covering the values, low <= v < high.
    """

    def level(spec: Sequence[tuple[float, float, str]]) -> Level:
        def f(s: pd.Series) -> pd.Series:
            v = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
            out = np.full(len(v), "*", dtype=object)
            for low, high, label in spec:
                out[(v >= low) & (v < high)] = label
            return pd.Series(out, index=s.index)

        return f

    return [level(spec) for spec in bands] + [suppress]


def suppress(s: pd.Series) -> pd.Series:
    """The top of every hierarchy: the value is hidden."""
    return pd.Series("*", index=s.index)


ML1M_AGE_HIERARCHY = band_hierarchy(
    [
        [(0, 25, "<25"), (25, 35, "25-34"), (35, 50, "35-49"), (50, 200, "50+")],
        [(0, 35, "<35"), (35, 200, "35+")],
    ]
)
"""ML-1M age codes (1, 18, 25, 35, 45, 50, 56) -> 4 bands -> 2 bands -> *."""


ML1M_OCCUPATION_GROUPS = {
    "student": (4, 10),
    "professional": (1, 6, 7, 11, 12, 15, 17),
    "creative": (2, 20),
    "office-service": (3, 5, 14),
    "manual": (8, 18),
    "not-employed": (9, 13, 19),
    "other": (0, 16),
}
"""ML-1M's 21 occupation codes in 7 broad groups (the first level of their hierarchy)."""


def mapping_hierarchy(groups: dict[str, Sequence[object]]) -> list[Level]:
    """Values mapped to named groups (unlisted values -> "*"), then "*"."""
    lookup = {str(v): name for name, values in groups.items() for v in values}

    def f(s: pd.Series) -> pd.Series:
        return s.astype(str).map(lookup).fillna("*")

    return [f, suppress]


def default_hierarchies() -> dict[str, list[Level]]:
    """Hierarchies for ML-1M's quasi-identifiers: zip by prefix, age by bands, occupation by
    group; gender (and any other column) is kept or hidden."""
    return {
        "zip": zip_hierarchy(5),
        "age": ML1M_AGE_HIERARCHY,
        "occupation": mapping_hierarchy(ML1M_OCCUPATION_GROUPS),
        "gender": [suppress],
    }


# ---- the check and the algorithm ---------------------------------------------------------------
def group_sizes(frame: pd.DataFrame, quasi_identifiers: Sequence[str]) -> np.ndarray:
    """For each row, the number of rows sharing its quasi-identifier values."""
    if len(frame) == 0:
        return np.empty(0, np.int64)
    cols = list(quasi_identifiers)
    codes = pd.DataFrame({c: pd.factorize(frame[c].astype(str))[0] for c in cols})
    return codes.groupby(cols, sort=False)[cols[0]].transform("size").to_numpy(np.int64)


def is_k_anonymous(frame: pd.DataFrame, quasi_identifiers: Sequence[str], k: int) -> bool:
    """True when every combination of quasi-identifier values occurs at least k times."""
    sizes = group_sizes(frame, quasi_identifiers)
    return bool(len(sizes) == 0 or sizes.min() >= k)


@dataclass
class KAnonymityReport:
    """What `k_anonymise` changed, column by column, and what it suppressed."""

    k: int
    quasi_identifiers: list[str]
    rows_before: int
    rows_after: int
    rows_suppressed: int
    levels: dict[str, int]
    distinct_before: dict[str, int]
    distinct_after: dict[str, int]
    smallest_group_before: int
    smallest_group_after: int
    rows_at_risk_before: int  # rows in groups smaller than k before anything was done
    groups_after: int
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class KAnonymityResult:
    """The released table (generalised, suppressed rows removed) and the report."""

    frame: pd.DataFrame
    report: KAnonymityReport
    suppressed: pd.Index  # index labels of the suppressed rows in the input


def k_anonymise(
    frame: pd.DataFrame,
    quasi_identifiers: Sequence[str] = ML1M_QUASI_IDENTIFIERS,
    k: int = 5,
    hierarchies: dict[str, list[Level]] | None = None,
    max_suppression: float = 0.02,
) -> KAnonymityResult:
    """Generalise and suppress until the table is k-anonymous over `quasi_identifiers`.

    hierarchies: column -> levels (default `default_hierarchies()`, or [suppress] for a column
        it does not name). max_suppression: the share of rows, in [0, 1], that may be removed
        instead of generalising further.
    """
    where = "k_anonymise"
    k = check_int("k", k, 1, 1_000_000, where)
    check_float("max_suppression", max_suppression, 0.0, 1.0, where)
    qis = list(quasi_identifiers)
    missing = [c for c in qis if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"The 'quasi_identifiers' parameter of {where} names columns the table lacks: "
            f"{missing}. The table has {list(frame.columns)}."
        )
    if not qis:
        raise ConfigError(f"The 'quasi_identifiers' parameter of {where} must name at least one column.")
    hier = dict(default_hierarchies())
    hier.update(hierarchies or {})
    hier = {c: list(hier.get(c, [suppress])) for c in qis}
    original = frame[qis].astype(str)
    levels = {c: 0 for c in qis}

    def view() -> pd.DataFrame:
        out = pd.DataFrame(index=frame.index)
        for c in qis:
            out[c] = original[c] if levels[c] == 0 else hier[c][levels[c] - 1](frame[c]).astype(str)
        return out

    current = view()
    sizes_before = group_sizes(current, qis)
    allowed = int(np.floor(max_suppression * len(frame)))
    while True:
        sizes = group_sizes(current, qis)
        at_risk = int((sizes < k).sum())
        if at_risk <= allowed:
            break
        candidates = [c for c in qis if levels[c] < len(hier[c])]
        if not candidates:
            break  # every column fully generalised; the rest is suppressed
        best = None
        for c in candidates:
            levels[c] += 1
            trial = view()
            levels[c] -= 1
            score = (int((group_sizes(trial, qis) < k).sum()), -current[c].nunique(), qis.index(c))
            if best is None or score < best[0]:
                best = (score, c, trial)
        levels[best[1]] += 1
        current = best[2]
    sizes = group_sizes(current, qis)
    small = sizes < k
    released = frame.loc[~small].copy()
    for c in qis:
        released[c] = current.loc[~small, c]
    changes = []
    for c in qis:
        before, after = original[c].nunique(), released[c].nunique()
        if levels[c]:
            changes.append(
                f"{c}: generalised {levels[c]} level(s) of {len(hier[c])} ({before} -> {after} distinct values)"
            )
    if small.any():
        changes.append(f"suppressed {int(small.sum())} row(s) left in groups smaller than k={k}")
    report = KAnonymityReport(
        k=k,
        quasi_identifiers=qis,
        rows_before=len(frame),
        rows_after=len(released),
        rows_suppressed=int(small.sum()),
        levels=dict(levels),
        distinct_before={c: int(original[c].nunique()) for c in qis},
        distinct_after={c: int(released[c].nunique()) for c in qis},
        smallest_group_before=int(sizes_before.min()) if len(sizes_before) else 0,
        smallest_group_after=int(sizes[~small].min()) if (~small).any() else 0,
        rows_at_risk_before=int((sizes_before < k).sum()),
        groups_after=int(released.groupby(qis).ngroups) if len(released) else 0,
        changes=changes,
    )
    return KAnonymityResult(released, report, frame.index[small])


__all__ = [
    "ML1M_AGE_HIERARCHY",
    "ML1M_QUASI_IDENTIFIERS",
    "KAnonymityReport",
    "KAnonymityResult",
    "band_hierarchy",
    "default_hierarchies",
    "group_sizes",
    "is_k_anonymous",
    "k_anonymise",
    "mapping_hierarchy",
    "read_ml1m_users",
    "suppress",
    "zip_hierarchy",
]
