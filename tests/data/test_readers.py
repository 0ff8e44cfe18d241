"""Readers: every format from small hand-written files (plain and gzip), errors, real data."""

from __future__ import annotations

import gzip
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoprec.data.clean import CleanPolicy
from shoprec.data.readers import FORMATS, LoadedData, load, load_demo, retail_category, sniff_format
from shoprec.errors import ConfigError, DataError, EmptyDataError, MalformedFileError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=[False, True], ids=["plain", "gzip"])
def gz(request) -> bool:
    return request.param


def write(path: Path, text: str, gz: bool = False, encoding: str = "utf-8") -> Path:
    """Write `text`; gzip it (adding .gz to the name) when asked."""
    data = text.encode(encoding)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def events(loaded: LoadedData) -> list[tuple]:
    f = loaded.interactions.frame
    return list(zip(f["user"], f["item"], f["event"].astype(str), f["timestamp"]))


def assert_malformed(
    exc: pytest.ExceptionInfo, path: Path, line: int | None, *fragments: str
) -> None:
    message = str(exc.value)
    assert exc.value.path == str(path) and exc.value.line == line
    assert message.startswith(f"{path}, line {line}: " if line else f"{path}: ")
    for fragment in fragments:
        assert fragment in message, message


def test_formats_are_the_published_list():
    assert FORMATS == (
        "sequence",
        "s3rec",
        "movielens",
        "movielens-100k",
        "online-retail",
        "taobao",
        "amazon-json",
        "llmrank",
        "shoprec",
        "csv",
        "parquet",
    )


# --- sequence ------------------------------------------------------------------------------------


def test_sequence_keeps_file_order_with_line_numbers_as_time(tmp_path, gz):
    path = write(tmp_path / "seq.txt", "1 10\n1 11\n\n2 10\r\n2 12 \n", gz)
    loaded = load(path, "sequence")
    assert events(loaded) == [
        ("1", "10", "purchase", 1),
        ("1", "11", "purchase", 2),
        ("2", "10", "purchase", 4),
        ("2", "12", "purchase", 5),
    ]
    assert loaded.report.rows_read == loaded.report.rows_kept == 4
    data = loaded.dataset()
    assert data.items.id_of(data.history(data.users.index(["1"])[0])).tolist() == ["10", "11"]


def test_gzip_is_detected_by_magic_bytes_not_the_name(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(gzip.compress(b"1 10\n1 11\n"))
    assert len(load(path, "sequence").interactions) == 2


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (
            "1 10\n1 11\n2 10 3\n",
            3,
            "expected 2 space-separated integers 'user item', got '2 10 3'",
        ),
        ("1 10\n1 11 3 4 5\n", 2, "got '1 11 3 4 5'"),
        ("1 10\n7\n", 2, "got '7'"),
        ("1 10\n1 x\n", 2, "item must be an integer, got 'x'"),
        ("1 10\nNA 3\n", 2, "user must be an integer, got 'NA'"),
        ("1 10\n1 2.5\n", 2, "item must be an integer, got '2.5'"),
    ],
)
def test_a_malformed_sequence_file_names_file_line_and_problem(tmp_path, gz, text, line, fragment):
    path = write(tmp_path / "seq.txt", text, gz)
    with pytest.raises(MalformedFileError) as exc:
        load(path, "sequence")
    assert_malformed(exc, path, line, fragment)


def test_a_truncated_gzip_file_is_malformed(tmp_path):
    path = tmp_path / "seq.txt.gz"
    path.write_bytes(gzip.compress(b"1 10\n" * 1000)[:40])
    with pytest.raises(MalformedFileError, match=str(path)):
        load(path, "sequence")


# --- s3rec ---------------------------------------------------------------------------------------


def test_s3rec_lines_become_one_event_per_item_in_order(tmp_path, gz):
    path = write(tmp_path / "Beauty.txt", "1 5 6 7\n2 6 8\n", gz)
    loaded = load(path, "s3rec")
    assert events(loaded) == [
        ("1", "5", "purchase", 0),
        ("1", "6", "purchase", 1),
        ("1", "7", "purchase", 2),
        ("2", "6", "purchase", 3),
        ("2", "8", "purchase", 4),
    ]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("1 5 6\n3\n", 2, "expected 'user item item ...' with at least one item"),
        ("1 5 6\n\n2 7 x 8\n", 3, "item must be an integer, got 'x'"),
        ("u1 5 6\n", 1, "user must be an integer, got 'u1'"),
    ],
)
def test_a_malformed_s3rec_file_names_the_line(tmp_path, text, line, fragment):
    path = write(tmp_path / "Beauty.txt", text)
    with pytest.raises(MalformedFileError) as exc:
        load(path, "s3rec")
    assert_malformed(exc, path, line, fragment)


# --- movielens -----------------------------------------------------------------------------------

MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Amélie (2001)::Comedy|Romance\n3::Heat (1995)::Action\n"


def test_movielens_ratings_with_movies_beside_them(tmp_path, gz):
    path = write(
        tmp_path / "ratings.dat", "1::2::5::978300760\n1::1::3::978302109\n2::3::4::978301968\n", gz
    )
    write(tmp_path / "movies.dat", MOVIES, gz, encoding="latin-1")
    loaded = load(path, "movielens")
    assert events(loaded) == [
        ("1", "2", "rating", 978300760),
        ("1", "1", "rating", 978302109),
        ("2", "3", "rating", 978301968),
    ]
    assert loaded.interactions.frame["value"].tolist() == [5.0, 3.0, 4.0]
    cat = loaded.catalogue.frame.set_index("item")
    assert cat.loc["2", "title"] == "Amélie (2001)" and cat.loc["2", "category"] == "Comedy"
    assert cat.loc["1", "category"] == "Animation"


def test_movielens_pairs_use_file_order_and_an_explicit_catalogue(tmp_path):
    path = write(tmp_path / "pairs.dat", "1::2\n1::1\n2::3\n")
    other = tmp_path / "meta"
    other.mkdir()
    movies = write(other / "films.dat", MOVIES, encoding="latin-1")
    loaded = load(path, "movielens", catalogue=movies)
    assert events(loaded) == [
        ("1", "2", "rating", 1),
        ("1", "1", "rating", 2),
        ("2", "3", "rating", 3),
    ]
    assert np.isnan(loaded.interactions.frame["value"]).all()
    assert len(loaded.catalogue) == 3
    assert load(path, "movielens").catalogue is None  # nothing beside it


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("1::2::5\n", 1, "expected 'UserID::MovieID::Rating::Timestamp', got '1::2::5'"),
        ("1::2::5::978300760\n1:2::5::978300760\n", 2, "got '1:2::5::978300760'"),
        ("1::2::5::978300760\n1::b::5::978300760\n", 2, "item must be an integer, got 'b'"),
    ],
)
def test_a_malformed_ratings_file_names_the_line(tmp_path, text, line, fragment):
    path = write(tmp_path / "ratings.dat", text)
    with pytest.raises(MalformedFileError) as exc:
        load(path, "movielens")
    assert_malformed(exc, path, line, fragment)


def test_movielens_100k_with_u_item_beside_it(tmp_path, gz):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n", gz)
    flags = ["0"] * 19
    action = flags.copy()
    action[1] = action[2] = "1"
    items = (
        f"242|Kolya (1996)|24-Jan-1997||http://x|{'|'.join(action)}\n"
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{'|'.join(flags)}\n"
    )
    write(tmp_path / "u.item", items, gz, encoding="latin-1")
    loaded = load(path, "movielens-100k")
    assert events(loaded) == [
        ("196", "242", "rating", 881250949),
        ("186", "302", "rating", 891717742),
    ]
    cat = loaded.catalogue.frame.set_index("item")
    assert cat.loc["242", "category"] == "Action" and cat.loc["302", "category"] == ""
    assert cat.loc["302", "title"] == "L.A. Confidential (1997)"


def test_a_malformed_u_data_names_the_line(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\n")
    with pytest.raises(MalformedFileError) as exc:
        load(path, "movielens-100k")
    assert_malformed(exc, path, 2, "expected 4 tab-separated fields")


# --- online retail -------------------------------------------------------------------------------

RETAIL_HEADER = (
    "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
)
RETAIL_ROWS = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",  # duplicate
    '536366,22633,"HAND WARMER, RED",6,2010-12-01 08:28:00,1.85,17850.0,United Kingdom',
    "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,13047,United Kingdom",
    "536368,85123A,CREAM HANGING HEART T-LIGHT HOLDER,2,2010-12-02 09:00:00,2.95,13047,United Kingdom",
    "C536379,22633,HAND WARMER UNION JACK,-1,2010-12-01 09:41:00,1.85,17850,United Kingdom",  # cancellation
    "536414,22139,,-56,2010-12-01 11:52:00,0,,United Kingdom",  # stock adjustment
    "536370,POST,POSTAGE,3,2010-12-01 08:45:00,18,12583,France",  # service line
    "536544,21773,DECORATIVE ROSE BATHROOM BOTTLE,1,2010-12-01 14:32:00,2.51,,United Kingdom",  # no customer
    "536545,21774,DECORATIVE CATS BATHROOM BOTTLE,1,someday,2.51,13047,United Kingdom",  # bad date
]


def retail_file(tmp_path: Path, rows=RETAIL_ROWS, gz: bool = False, name="retail.csv") -> Path:
    return write(tmp_path / name, RETAIL_HEADER + "\n".join(rows) + "\n", gz)


def test_online_retail_counts_every_dropped_line_by_reason(tmp_path, gz):
    loaded = load(retail_file(tmp_path, gz=gz), "online-retail")
    report = loaded.report
    assert report.rows_read == 10 and report.rows_kept == 4
    assert report.counts == {
        "cancellations": 1,
        "stock_adjustments": 1,
        "non_product_lines": 1,
        "missing_customer": 1,
        "unparseable_timestamp": 1,
        "exact_duplicates": 1,
    }
    assert set(report.actions.values()) == {"dropped"}
    assert events(loaded) == [
        ("17850", "85123A", "purchase", 1291191960),
        ("17850", "22633", "purchase", 1291192080),
        ("13047", "84879", "purchase", 1291192440),
        ("13047", "85123A", "purchase", 1291280400),
    ]
    assert loaded.interactions.frame["value"].tolist() == [6, 6, 32, 2]


def test_online_retail_catalogue_has_latest_title_median_price_and_a_category(tmp_path):
    cat = load(retail_file(tmp_path), "online-retail").catalogue.frame.set_index("item")
    assert sorted(cat.index) == ["22633", "84879", "85123A"]  # only items of kept events
    assert cat.loc["85123A", "title"] == "CREAM HANGING HEART T-LIGHT HOLDER"  # the latest
    assert cat.loc["85123A", "price"] == pytest.approx((2.55 + 2.95) / 2)
    assert cat.loc["85123A", "category"] == "HOLDER"
    assert cat.loc["22633", "category"] == "WARMER"  # "RED" is a colour, not a kind
    assert cat.loc["84879", "category"] == "ORNAMENT"


def test_online_retail_can_keep_service_lines(tmp_path):
    loaded = load(
        retail_file(tmp_path), "online-retail", clean_policy=CleanPolicy(drop_non_products=False)
    )
    assert "POST" in set(loaded.interactions.frame["item"])
    assert "non_product_lines" not in loaded.report.counts


def test_online_retail_netting_takes_cancelled_units_off_the_latest_purchases(tmp_path):
    rows = [
        "1,A1,RED MUG,6,2011-01-01 10:00:00,1,100,UK",
        "2,A1,RED MUG,4,2011-01-02 10:00:00,1,100,UK",
        "3,B1,BLUE BAG,2,2011-01-02 10:00:00,1,100,UK",
        "4,A1,RED MUG,3,2011-01-02 10:00:00,1,200,UK",
        "C5,A1,RED MUG,-5,2011-01-03 10:00:00,1,100,UK",
        "C6,B1,BLUE BAG,-2,2011-01-03 10:00:00,1,100,UK",
    ]
    loaded = load(
        retail_file(tmp_path, rows), "online-retail", clean_policy=CleanPolicy(cancellations="net")
    )
    frame = loaded.interactions.frame
    # Customer 100 returned 5 mugs: the 4 of Jan 2 go, the 6 of Jan 1 become 5; the bag goes.
    assert list(zip(frame["user"], frame["item"], frame["value"])) == [
        ("100", "A1", 5.0),
        ("200", "A1", 3.0),
    ]
    report = loaded.report
    assert report.counts == {"cancellations": 2, "purchases_cancelled": 2, "purchases_reduced": 1}
    assert report.actions == {
        "cancellations": "netted",
        "purchases_cancelled": "dropped",
        "purchases_reduced": "repaired",
    }
    assert report.rows_read == report.rows_kept + 4


def test_online_retail_without_required_columns_is_malformed(tmp_path):
    path = write(tmp_path / "retail.csv", "InvoiceNo,StockCode,Quantity\n1,A,3\n")
    with pytest.raises(MalformedFileError) as exc:
        load(path, "online-retail")
    assert_malformed(
        exc,
        path,
        1,
        "missing the required columns ['Description', 'InvoiceDate', 'UnitPrice', 'CustomerID']",
    )


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        ("WHITE HANGING HEART T-LIGHT HOLDER", "HOLDER"),
        ("LUNCH BAG RED RETROSPOT", "BAG"),
        ("SET OF 3 CAKE TINS ", "TIN"),
        ("REGENCY CAKESTAND 3 TIER", "CAKESTAND"),
        ("SET 7 BABUSHKA NESTING BOXES", "BOX"),
        ("PACK OF 72 RETROSPOT CAKE CASES", "CASE"),
        ("FELTCRAFT BUTTERFLY HEARTS", "HEART"),
        ("JAM MAKING SET WITH JARS", "JAR"),
        ("RED", "RED"),
        ("", ""),
    ],
)
def test_retail_category_is_the_last_word_that_names_a_kind(title, kind):
    assert retail_category(pd.Series([title])).tolist() == [kind]


# --- taobao --------------------------------------------------------------------------------------


def test_taobao_maps_behaviours_drops_unknown_ones_and_keeps_the_dataset_window(tmp_path, gz):
    rows = [
        "1,10,100,pv,1511544070",
        "1,11,100,cart,1511544080",
        "1,11,100,fav,1511544090",
        "2,12,101,buy,1511544100",
        "2,13,101,share,1511544110",
        "2,12,101,pv,1505117799",
    ]
    path = write(tmp_path / "UserBehavior.csv", "\n".join(rows) + "\n", gz)
    loaded = load(path, "taobao")
    assert events(loaded) == [
        ("1", "10", "view", 1511544070),
        ("1", "11", "cart", 1511544080),
        ("1", "11", "favourite", 1511544090),
        ("2", "12", "purchase", 1511544100),
    ]
    assert loaded.report.counts == {"unknown_event": 1, "timestamp_out_of_range": 1}
    cat = loaded.catalogue.frame.set_index("item")
    assert cat.loc["12", "category"] == "101" and len(cat) == 4
    wider = load(path, "taobao", min_timestamp="2017-09-01")
    assert wider.report.counts == {"unknown_event": 1} and len(wider.interactions) == 5


def test_a_malformed_taobao_file_names_the_line(tmp_path):
    path = write(
        tmp_path / "UserBehavior.csv", "1,10,100,pv,1511544070\nuser,10,100,pv,1511544070\n"
    )
    with pytest.raises(MalformedFileError) as exc:
        load(path, "taobao")
    assert_malformed(exc, path, 2, "user must be an integer, got 'user'")


# --- amazon json ---------------------------------------------------------------------------------


def review(user, asin, overall, when, name="Jane Q. Doe"):
    return json.dumps(
        {
            "reviewerID": user,
            "asin": asin,
            "reviewerName": name,
            "helpful": [0, 0],
            "reviewText": "Great strings",
            "overall": overall,
            "summary": "ok",
            "unixReviewTime": when,
            "reviewTime": "02 28, 2014",
        }
    )


def test_amazon_reviews_become_ratings_and_never_keep_names(tmp_path, gz):
    lines = [
        review("A2IBPI20UZIR0U", "0739079891", 5.0, 1393545600),
        "",
        review("A14VAT5EAX3D9S", "1384719342", 3.0, 1363392000, name="Jake"),
    ]
    loaded = load(
        write(tmp_path / "Musical_Instruments_5.json", "\n".join(lines) + "\n", gz), "amazon-json"
    )
    frame = loaded.interactions.frame
    assert events(loaded) == [
        ("A2IBPI20UZIR0U", "0739079891", "rating", 1393545600),
        ("A14VAT5EAX3D9S", "1384719342", "rating", 1363392000),
    ]
    assert frame["value"].tolist() == [5.0, 3.0]
    assert list(frame.columns) == ["user", "item", "event", "timestamp", "value"]
    assert not frame.astype(str).isin(["Jane Q. Doe", "Jake", "Great strings"]).any().any()


def test_amazon_2023_reviews_use_milliseconds(tmp_path):
    line = json.dumps(
        {
            "user_id": "AG",
            "parent_asin": "B01",
            "rating": 4.0,
            "timestamp": 1588687728923,
            "title": "x",
        }
    )
    loaded = load(write(tmp_path / "reviews.jsonl", line + "\n"), "amazon-json")
    assert events(loaded) == [("AG", "B01", "rating", 1588687728)]


@pytest.mark.parametrize(
    ("lines", "line", "fragment"),
    [
        (
            [
                review("A", "B", 5.0, 1393545600),
                review("C", "D", 4.0, 1393545600),
                '{"reviewerID": "E", "asin": ',
            ],
            3,
            "not valid JSON",
        ),
        ([review("A", "B", 5.0, 1393545600), "[1, 2]"], 2, "expected a JSON object, got list"),
    ],
)
def test_a_malformed_json_line_is_named(tmp_path, lines, line, fragment):
    path = write(tmp_path / "reviews.json", "\n".join(lines) + "\n")
    with pytest.raises(MalformedFileError) as exc:
        load(path, "amazon-json")
    assert_malformed(exc, path, line, fragment)


def test_json_without_the_needed_fields_is_malformed(tmp_path):
    path = write(tmp_path / "reviews.json", json.dumps({"reviewerID": "A", "asin": "B"}) + "\n")
    with pytest.raises(MalformedFileError) as exc:
        load(path, "amazon-json")
    assert_malformed(exc, path, None, "missing the required columns ['overall', 'unixReviewTime']")


# --- llmrank / RecBole ---------------------------------------------------------------------------


def test_llmrank_history_plus_target_is_the_sequence_with_titles_beside_it(tmp_path, gz):
    inter = "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t0 1 2\t3\n1\t\t1\n2\t4\t0\n"
    path = write(tmp_path / "Games-6k.test.inter", inter, gz)
    write(
        tmp_path / "Games.item",
        'item_id:token\ttitle:token_seq\n0\tFire Emblem\n1\tGBA "6-Pak" Case\n'
        "2\tZelda\n3\tMario\n4\tTetris\n",
        gz,
    )
    loaded = load(path, "llmrank")
    assert events(loaded) == [
        ("0", "0", "purchase", 0),
        ("0", "1", "purchase", 1),
        ("0", "2", "purchase", 2),
        ("0", "3", "purchase", 3),
        ("1", "1", "purchase", 4),
        ("2", "4", "purchase", 5),
        ("2", "0", "purchase", 6),
    ]
    assert loaded.catalogue.lookup(["1", "3"]) == ['GBA "6-Pak" Case', "Mario"]


def test_recbole_plain_inter_files_with_rating_and_timestamp(tmp_path):
    path = write(
        tmp_path / "ml.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t4\t978300760\n2\t11\t5\t978300761\n",
    )
    loaded = load(path, "llmrank")
    assert events(loaded) == [("1", "10", "rating", 978300760), ("2", "11", "rating", 978300761)]
    assert loaded.interactions.frame["value"].tolist() == [4.0, 5.0] and loaded.catalogue is None


def test_a_malformed_inter_file_names_the_line(tmp_path):
    path = write(
        tmp_path / "x.inter",
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t1 2\t3\n1\t2\n",
    )
    with pytest.raises(MalformedFileError) as exc:
        load(path, "llmrank")
    assert_malformed(exc, path, 3, "expected 3 tab-separated fields")
    bad_header = write(tmp_path / "y.inter", "uid\titem\n1\t2\n")
    with pytest.raises(MalformedFileError) as exc:
        load(bad_header, "llmrank")
    assert_malformed(exc, bad_header, 1, "expected a RecBole header")


# --- shoprec, csv, parquet -----------------------------------------------------------------------


def test_shoprec_format_reads_events_and_the_catalogue_beside_them(tmp_path, gz):
    path = write(
        tmp_path / "shop_events.csv",
        "user,item,timestamp,value\n007,A,1300000000,2\n008,B,2011-03-13T07:06:40Z,1\n",
        gz,
    )
    write(
        tmp_path / "shop_catalogue.csv",
        'item,title,category,price\nA,"Mug, red",kitchen,3.5\nB,Rake,garden,\n',
        gz,
    )
    loaded = load(path, "shoprec")
    assert events(loaded) == [
        ("007", "A", "purchase", 1300000000),
        ("008", "B", "purchase", 1300000000),
    ]
    assert loaded.catalogue.lookup(["A"]) == ["Mug, red"]
    assert np.isnan(loaded.catalogue.frame.set_index("item").loc["B", "price"])
    assert len(load(tmp_path, "shoprec").interactions) == 2  # a folder holding one *events.csv


def test_csv_with_a_mapping_reads_only_the_mapped_columns(tmp_path, gz):
    text = (
        "customer_id,sku,type,ts,qty,email\n"
        "c1,0042,view,2011-01-01 10:00:00,,a@b.c\nc1,0042,addtocart,2011-01-01 10:01:00,1,a@b.c\n"
        "c2,0043,purchase,1293876000,2,x@y.z\nc2,0044,wish,1293876001,,x@y.z\n"
    )
    mapping = {
        "user": "customer_id",
        "item": "sku",
        "event": "type",
        "timestamp": "ts",
        "value": "qty",
    }
    loaded = load(write(tmp_path / "log.csv", text, gz), "csv", mapping=mapping)
    assert events(loaded) == [
        ("c1", "0042", "view", 1293876000),
        ("c1", "0042", "cart", 1293876060),
        ("c2", "0043", "purchase", 1293876000),
    ]
    assert loaded.report.counts == {"events_renamed": 1, "unknown_event": 1}
    assert not loaded.interactions.frame.astype(str).isin(["a@b.c"]).any().any()


def test_csv_without_events_or_times_defaults_to_purchases_in_file_order(tmp_path):
    loaded = load(write(tmp_path / "log.tsv", "user\titem\nu1\ti1\nu1\ti2\n"), "csv")
    assert events(loaded) == [("u1", "i1", "purchase", 0), ("u1", "i2", "purchase", 1)]


def test_csv_can_carry_catalogue_columns(tmp_path):
    text = "user,item,timestamp,name,price\nu1,i1,1300000000,Mug,3\nu2,i1,1300000001,Red mug,3.5\n"
    loaded = load(write(tmp_path / "log.csv", text), "csv", mapping={"title": "name"})
    assert loaded.catalogue.lookup(["i1"]) == ["Red mug"]


def test_csv_missing_a_mapped_column_is_malformed(tmp_path):
    path = write(tmp_path / "log.csv", "customer_id,sku\nc1,1\n")
    with pytest.raises(MalformedFileError) as exc:
        load(path, "csv", mapping={"user": "customer_id", "item": "sku", "timestamp": "ts"})
    assert_malformed(
        exc, path, 1, "missing the required columns ['ts']", "found ['customer_id', 'sku']"
    )


def test_parquet_with_a_mapping_and_datetime_column(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "log.parquet"
    pd.DataFrame(
        {"cid": [1, 2], "sku": ["A", "B"], "ts": pd.to_datetime(["2011-01-01", "2011-01-02"])}
    ).to_parquet(path)
    loaded = load(path, "parquet", mapping={"user": "cid", "item": "sku", "timestamp": "ts"})
    assert events(loaded) == [
        ("1", "A", "purchase", 1293840000),
        ("2", "B", "purchase", 1293926400),
    ]


def test_a_file_that_is_not_parquet_is_malformed(tmp_path):
    pytest.importorskip("pyarrow")
    path = write(tmp_path / "log.parquet", "user,item\n")
    with pytest.raises(MalformedFileError, match="cannot be read as Parquet"):
        load(path, "parquet")


# --- load() itself -------------------------------------------------------------------------------


def test_load_validates_its_arguments(tmp_path):
    path = write(tmp_path / "seq.txt", "1 2\n")
    with pytest.raises(
        ConfigError, match=r"The 'format' parameter of load must be one of \['sequence'"
    ):
        load(path, "excel")
    with pytest.raises(ConfigError, match=r"only applies to the formats \['csv', 'parquet'\]"):
        load(path, "sequence", mapping={"user": "u"})
    with pytest.raises(ConfigError, match=r"Got unknown keys \['customer'\]"):
        load(write(tmp_path / "log.csv", "u,i\n1,2\n"), "csv", mapping={"customer": "u"})


def test_a_missing_file_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.txt'}: no such log file"):
        load(tmp_path / "nope.txt", "sequence")
    with pytest.raises(DataError, match="no such catalogue file"):
        load(write(tmp_path / "seq.txt", "1 2\n"), "sequence", catalogue=tmp_path / "cat.csv")


def test_an_empty_result_is_an_empty_data_error_with_the_findings(tmp_path):
    with pytest.raises(EmptyDataError, match="no usable interactions"):
        load(write(tmp_path / "seq.txt", ""), "sequence")
    path = write(tmp_path / "log.csv", "user,item,timestamp\nu1,i1,5\n")
    with pytest.raises(EmptyDataError, match="timestamp_out_of_range: 1"):
        load(path, "csv")


def test_loaded_data_becomes_a_dataset_with_its_catalogue(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::2::5::978300760\n")
    write(tmp_path / "movies.dat", MOVIES, encoding="latin-1")
    data = load(path, "movielens").dataset()
    assert (
        len(data) == 1 and data.n_items == 3 and data.catalogue is not None
    )  # catalogue items count


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("seq.txt", "1 1\n1 2\n", "sequence"),
        ("Beauty.txt", "1 1 2 3\n", "s3rec"),
        ("ratings.dat", "1::2::5::978300760\n", "movielens"),
        ("u1.base", "1\t2\t3\t4\n", "movielens-100k"),
        ("r.csv", RETAIL_HEADER, "online-retail"),
        ("UserBehavior.csv", "1,2,3,pv,1511544070\n", "taobao"),
        ("x.json", '{"asin": "1"}\n', "amazon-json"),
        ("Games.test.inter", "user_id:token\n", "llmrank"),
        ("shop_events.csv", "user,item,timestamp\n", "shoprec"),
        ("log.csv", "a,b\n", "csv"),
        ("log.parquet", "", "parquet"),
        ("notes.txt", "hello\n", None),
    ],
)
def test_sniff_format_guesses_obvious_cases(tmp_path, name, text, expected):
    assert sniff_format(write(tmp_path / name, text)) == expected


# --- the bundled demo shop -----------------------------------------------------------------------


def test_the_demo_shop_loads_quickly_with_its_catalogue():
    t0 = time.perf_counter()
    loaded = load_demo()
    seconds = time.perf_counter() - t0
    inter = loaded.interactions
    assert (len(inter), inter.n_users, inter.n_items) == (386_282, 4_335, 3_660)
    assert set(inter.frame["event"].astype(str)) == {"purchase"}
    assert loaded.report.counts == {}
    assert len(loaded.catalogue) == 3_660 and (loaded.catalogue.frame["title"] != "").all()
    assert loaded.catalogue.lookup(["85099B", "84879"]) == [
        "JUMBO BAG RED RETROSPOT",
        "ASSORTED COLOUR BIRD ORNAMENT",
    ]
    assert loaded.catalogue.lookup(["85099B"], "category") == ["BAG"]
    print(f"load_demo: {seconds:.2f}s")  # shown with -s; timings are never asserted


def test_the_demo_files_fit_the_budget_and_credit_the_source():
    demo = ROOT / "src" / "shoprec" / "demo"
    assert sum(p.stat().st_size for p in demo.glob("*.csv.gz")) <= 3_000_000
    readme = (demo / "README.md").read_text()
    assert "Online Retail, Daqing Chen, UCI Machine Learning Repository, CC BY 4.0" in readme
    assert "Chen, D., Sain, S. L. & Guo, K. (2012)" in readme and "19(3)" in readme
    assert "python scripts/build_demo_shop.py" in readme


def test_the_demo_build_script_merges_invoice_lines_and_shrinks_to_fit(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "build_demo_shop", ROOT / "scripts" / "build_demo_shop.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = [
        f"{i},{item},ITEM {item} MUG,1,2011-01-0{1 + i % 5} 10:00:00,1.5,{100 + user},UK"
        for i, (user, item) in enumerate(
            (u, it) for u in range(6) for it in range(6) if (u + it) % 5
        )
    ]
    assert rows[0] == "0,1,ITEM 1 MUG,1,2011-01-01 10:00:00,1.5,100,UK"
    # The same product on the same invoice again: merged, quantities summed.
    rows.append("999,1,ITEM 1 MUG,2,2011-01-01 10:00:00,1.5,100,UK")
    # A one-off customer, whom a 2-core removes.
    rows.append("998,2,ITEM 2 MUG,1,2011-01-03 10:00:00,1.5,777,UK")
    source = retail_file(tmp_path, rows, gz=True)
    out = tmp_path / "demo"
    assert script.main([str(source), "--out", str(out)]) == 0
    loaded = load(out / "online_retail_events.csv.gz", "shoprec")
    frame = loaded.interactions.frame
    assert len(frame) == len(rows) - 1 and len(loaded.catalogue) == 6
    assert frame.loc[(frame["user"] == "100") & (frame["item"] == "1"), "value"].tolist() == [3.0]
    assert "k-core k=1" in capsys.readouterr().out
    size = sum(p.stat().st_size for p in out.glob("*.csv.gz"))
    assert script.main([str(source), "--out", str(out), "--max-bytes", str(size - 1)]) == 0
    assert "k-core k=2" in capsys.readouterr().out
    assert "777" not in set(
        load(out / "online_retail_events.csv.gz", "shoprec").interactions.frame["user"]
    )
    with pytest.raises(SystemExit, match="--max-bytes 10 is too small"):
        script.main([str(source), "--out", str(out), "--max-bytes", "10"])


# --- real datasets (README figures) --------------------------------------------------------------


def counts(loaded: LoadedData) -> tuple[int, int, int]:
    inter = loaded.interactions
    return len(inter), inter.n_users, inter.n_items


@pytest.mark.realdata
@pytest.mark.slow
def test_real_sasrec_ml1m(shared_datasets):
    loaded = load(shared_datasets / "sasrec" / "ml-1m.txt.gz", "sequence")
    assert counts(loaded) == (999_611, 6_040, 3_416)


@pytest.mark.realdata
def test_real_bert4rec_beauty(shared_datasets):
    loaded = load(shared_datasets / "bert4rec" / "beauty.txt.gz", "sequence")
    assert counts(loaded) == (353_962, 40_226, 54_542)
    assert loaded.interactions.frame.groupby("user").size().min() == 5


@pytest.mark.realdata
def test_real_s3rec_beauty(shared_datasets):
    assert counts(load(shared_datasets / "s3rec" / "Beauty.txt.gz", "s3rec")) == (
        198_502,
        22_363,
        12_101,
    )


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ml1m_pairs_with_movies(shared_datasets):
    loaded = load(shared_datasets / "ml-1m" / "ratings.user-movie-pairs.dat.gz", "movielens")
    assert counts(loaded) == (1_000_209, 6_040, 3_706)
    assert len(loaded.catalogue) == 3_883
    assert loaded.catalogue.lookup(["1"]) == ["Toy Story (1995)"]


@pytest.mark.realdata
def test_real_ml1m_ratings_of_users_1_to_2999(shared_datasets):
    loaded = load(shared_datasets / "ml-1m" / "ratings.users-1-2999.dat.gz", "movielens")
    frame = loaded.interactions.frame
    assert len(frame) == 487_650 and loaded.interactions.n_users == 2_999
    assert frame["value"].value_counts().sort_index().tolist() == [
        27_472,
        53_838,
        127_216,
        170_579,
        108_545,
    ]
    first, last = pd.to_datetime([frame["timestamp"].min(), frame["timestamp"].max()], unit="s")
    assert (str(first.date()), str(last.date())) == ("2000-10-04", "2003-02-27")


@pytest.mark.realdata
def test_real_ml100k(shared_datasets):
    loaded = load(shared_datasets / "ml-100k" / "u.data.gz", "movielens-100k")
    assert counts(loaded) == (100_000, 943, 1_682)
    assert len(loaded.catalogue) == 1_682
    assert loaded.catalogue.frame.set_index("item").loc["1", "category"] == "Animation"


@pytest.mark.realdata
def test_real_online_retail(shared_datasets):
    report = load(
        shared_datasets / "online-retail" / "online_retail.csv.gz", "online-retail"
    ).report
    assert report.rows_read == 541_909
    assert report.counts["cancellations"] == 9_288 and report.counts["stock_adjustments"] == 1_336
    # 135,080 lines lack a customer; those that are cancellations or adjustments count there.
    assert report.counts["missing_customer"] < 135_080
    assert report.rows_read == report.rows_kept + sum(report.counts.values())
    assert report.rows_kept == 391_142


@pytest.mark.realdata
def test_real_taobao_head4321_drops_its_out_of_range_row(shared_datasets):
    loaded = load(
        shared_datasets / "taobao-userbehavior-sample" / "UserBehavior.head4321.csv.gz", "taobao"
    )
    assert loaded.report.rows_read == 4_321
    assert loaded.report.counts == {"timestamp_out_of_range": 1}
    assert loaded.interactions.n_users == 43 and len(loaded.catalogue) == 3_276


@pytest.mark.realdata
def test_real_taobao_flink_sample(shared_datasets):
    loaded = load(
        shared_datasets
        / "taobao-userbehavior-sample"
        / "UserBehavior.flink-course-head110k.csv.gz",
        "taobao",
    )
    assert counts(loaded) == (110_300, 66_454, 84_793)
    assert loaded.catalogue.frame["category"].nunique() == 3_913
    by_event = loaded.interactions.frame["event"].value_counts()
    assert [by_event[e] for e in ("view", "cart", "favourite", "purchase")] == [
        98_361,
        6_063,
        3_383,
        2_493,
    ]


@pytest.mark.realdata
def test_real_llmrank_games(shared_datasets):
    loaded = load(shared_datasets / "amazon-games-llmrank" / "Games-6k.test.inter.gz", "llmrank")
    assert counts(loaded) == (440_264, 50_546, 16_859)
    assert len(loaded.catalogue) == 16_859 and loaded.catalogue.lookup(["0"]) == [
        "Fire Emblem: The Sacred Stones"
    ]


@pytest.mark.realdata
def test_real_amazon_musical_instruments(shared_datasets):
    loaded = load(
        shared_datasets / "amazon-musical-instruments-5core" / "Musical_Instruments_5.json.gz",
        "amazon-json",
    )
    assert counts(loaded) == (10_261, 1_429, 900)
    assert loaded.interactions.frame["value"].value_counts().sort_index().tolist() == [
        217,
        250,
        772,
        2_084,
        6_938,
    ]
