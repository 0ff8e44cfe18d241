"""Shop exports: the UCI Online Retail (and Online Retail II) invoice lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shoprec.data.clean import CleanPolicy, _missing, clean, to_float
from shoprec.data.readers._files import _read_csv_text, _require_columns, _shoprec_catalogue
from shoprec.data.readers._loaded import LoadedData
from shoprec.data.schema import Catalogue, Interactions, QualityReport
from shoprec.errors import EmptyDataError

RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
)
RETAIL_ALIASES = {"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}
"""Online Retail II (2009-2011) names the same columns differently."""

RETAIL_SERVICE_CODES = frozenset(
    {"POST", "DOT", "C2", "M", "D", "S", "B", "BANK CHARGES", "AMAZONFEE", "CRUK"}
)
"""Stock codes that are services, not products: postage, carriage, manual, discount, samples,
bad-debt adjustment, bank charges, Amazon fees, charity commission. Gift vouchers (gift_*) too."""

_CATEGORY_MODIFIERS = frozenset(
    [
        "RED",
        "PINK",
        "BLUE",
        "GREEN",
        "WHITE",
        "BLACK",
        "CREAM",
        "IVORY",
        "GOLD",
        "SILVER",
        "YELLOW",
        "ORANGE",
        "PURPLE",
        "BROWN",
        "GREY",
        "GRAY",
        "NATURAL",
        "PASTEL",
        "COLOUR",
        "COLOURS",
        "COLOURED",
        "ASSORTED",
        "MULTI",
        "DESIGN",
        "DESIGNS",
        "RETROSPOT",
        "POLKADOT",
        "SPOT",
        "SPOTS",
        "SPOTTY",
        "PAISLEY",
        "FLORAL",
        "STRIPE",
        "STRIPES",
        "VINTAGE",
        "RETRO",
        "SMALL",
        "LARGE",
        "MEDIUM",
        "MINI",
        "JUMBO",
        "GIANT",
        "BIG",
        "TALL",
        "CM",
        "TIER",
        "SET",
        "OF",
        "AND",
        "WITH",
        "IN",
        "THE",
        "FOR",
        "TO",
        "A",
        "S",
        "X",
    ]
)
"""Trailing words of Online Retail descriptions that name a colour, pattern or size, not a kind."""


def retail_category(titles: pd.Series) -> pd.Series:
    """A product kind read from an Online Retail description, which has no category column.

    The rule: the last word (letters only) that is not a colour, pattern, size or filler word
    (`_CATEGORY_MODIFIERS`), put in the singular (-IES -> -Y; -XES/-CHES/-SHES/-SSES lose -ES;
    another final S is dropped unless doubled). "WHITE HANGING HEART T-LIGHT HOLDER" -> "HOLDER",
    "LUNCH BAG RED RETROSPOT" -> "BAG", "SET OF 3 CAKE TINS" -> "TIN". Empty title -> "".
    """
    words = titles.fillna("").astype(str).str.upper().str.findall(r"[A-Z]+").explode()
    words = words[words.notna()]
    kinds = words[~words.isin(_CATEGORY_MODIFIERS)]
    last = kinds.groupby(level=0).last()
    fallback = words.groupby(level=0).last()  # every word is a modifier: take the last one
    kind = last.reindex(titles.index).fillna(fallback.reindex(titles.index)).fillna("").astype(str)
    kind = kind.str.replace(r"IES$", "Y", regex=True)
    kind = kind.str.replace(r"(X|CH|SH|SS)ES$", r"\1", regex=True)
    kind = kind.str.replace(r"(?<=[^S])S$", "", regex=True)
    return kind


def read_online_retail(path: Path, policy: CleanPolicy, catalogue: Path | None) -> LoadedData:
    """UCI Online Retail: invoice lines of identified customers become purchase events.

    Policy, applied in this order (each row counted once, under the first rule it meets):

    * ``cancellations``: InvoiceNo starting with "C". Dropped; with
      ``CleanPolicy(cancellations="net")`` the cancelled units are also taken off the same
      customer's latest purchases of the item (``purchases_cancelled`` dropped,
      ``purchases_reduced`` repaired).
    * ``stock_adjustments``: a negative quantity on a non-"C" invoice (price 0, no customer).
      Dropped.
    * ``non_product_lines``: service stock codes (RETAIL_SERVICE_CODES, gift_*). Dropped unless
      ``CleanPolicy(drop_non_products=False)``.
    * ``missing_customer``: no CustomerID, so no shopper to learn from. Dropped.
    * then `clean`'s findings (bad dates, exact duplicates, ...).

    Events: user = CustomerID, item = StockCode, timestamp = InvoiceDate (shop-local time read
    as UTC), value = Quantity. Catalogue, from the kept lines: title = the latest non-empty
    Description, price = median UnitPrice above 0, category = `retail_category(title)`.
    """
    raw = _read_csv_text(path, ",", numeric=("Quantity", "UnitPrice", "Price"))
    raw.columns = [RETAIL_ALIASES.get(str(c).strip(), str(c).strip()) for c in raw.columns]
    _require_columns(path, raw, RETAIL_COLUMNS)
    report = QualityReport(source=str(path), rows_read=len(raw))
    invoice = raw["InvoiceNo"].fillna("").str.strip().str.upper()
    quantity = pd.Series(to_float(raw["Quantity"]), index=raw.index)
    code = raw["StockCode"].fillna("").str.strip()
    # Exports through float columns write 17850.0 for customer 17850.
    customer = raw["CustomerID"].str.strip().str.removesuffix(".0")
    no_customer = _missing(customer)

    keep = np.ones(len(raw), bool)

    def rule(finding: str, mask: np.ndarray, action: str = "dropped") -> np.ndarray:
        hit = mask & keep
        if hit.any():
            report.add(finding, int(hit.sum()), action)
        keep[hit] = False
        return hit

    cancelled = rule(
        "cancellations",
        invoice.str.startswith("C").to_numpy(),
        "netted" if policy.cancellations == "net" else "dropped",
    )
    rule("stock_adjustments", (quantity < 0).to_numpy())
    if policy.drop_non_products:
        upper = code.str.upper()
        rule(
            "non_product_lines",
            (upper.isin(RETAIL_SERVICE_CODES) | upper.str.startswith("GIFT_")).to_numpy(),
        )
    rule("missing_customer", no_customer)

    frame = pd.DataFrame(
        {"user": customer, "item": code, "timestamp": raw["InvoiceDate"], "value": raw["Quantity"]}
    )[keep]
    events, report = clean(frame, str(path), policy, report=report)
    if policy.cancellations == "net":
        returns = cancelled & ~no_customer
        events = _net_cancellations(
            events,
            pd.DataFrame(
                {"user": customer[returns], "item": code[returns], "units": -quantity[returns]}
            ),
            report,
        )
    if len(events) == 0:
        raise EmptyDataError(f"{path}: no usable purchases ({report.counts}).")
    if catalogue:
        cat = _shoprec_catalogue(catalogue)
    else:
        lines = raw.loc[events.index, ["Description", "UnitPrice"]].assign(
            item=events["item"].to_numpy(), timestamp=events["timestamp"].to_numpy()
        )
        lines["Description"] = lines["Description"].str.strip().replace("", np.nan)
        lines["UnitPrice"] = pd.Series(to_float(lines["UnitPrice"]), index=lines.index).where(
            lambda p: p > 0
        )
        lines = lines.sort_values("timestamp", kind="stable")
        grouped = lines.groupby("item", sort=False)
        cat = pd.DataFrame(
            {"title": grouped["Description"].last(), "price": grouped["UnitPrice"].median()}
        )
        cat["category"] = retail_category(cat["title"])
        cat = cat.rename_axis("item").reset_index()
    return LoadedData(
        Interactions.from_frame(events, "online_retail"), Catalogue.from_frame(cat), report
    )


def _net_cancellations(
    events: pd.DataFrame, returns: pd.DataFrame, report: QualityReport
) -> pd.DataFrame:
    """Take cancelled units off each customer's latest purchases of the same item."""
    cancelled = returns.groupby(["user", "item"])["units"].sum()
    key = pd.MultiIndex.from_arrays([events["user"], events["item"]])
    to_cancel = cancelled.reindex(key).fillna(0).to_numpy()
    units = events["value"].fillna(0).to_numpy()
    # Newest first within each (user, item): a return most likely undoes the latest order.
    order = np.lexsort(
        (-events["timestamp"].to_numpy(), events["item"].to_numpy(), events["user"].to_numpy())
    )
    ordered = pd.Series(units[order])
    users, items = events["user"].to_numpy()[order], events["item"].to_numpy()[order]
    starts = np.concatenate([[False], (users[1:] != users[:-1]) | (items[1:] != items[:-1])])
    groups = np.cumsum(starts)  # rows are sorted by (user, item): each run is one group
    before = ordered.groupby(groups).cumsum().to_numpy() - units[order]  # units newer than this row
    taken = np.clip(to_cancel[order] - before, 0, units[order])
    net = np.empty_like(units)
    net[order] = units[order] - taken
    gone = (net <= 0) & (units > 0)
    reduced = (net < units) & ~gone
    if gone.any():
        report.add("purchases_cancelled", int(gone.sum()), "dropped")
    if reduced.any():
        report.add("purchases_reduced", int(reduced.sum()), "repaired")
    events = events.assign(value=np.where(reduced, net, events["value"].to_numpy()))[~gone]
    report.rows_kept = len(events)
    return events
