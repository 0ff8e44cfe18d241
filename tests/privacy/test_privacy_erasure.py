"""Erasure: after forget(user), nothing that identifies the shopper remains in stored files."""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from privacy_helpers import SECRET, raw_events

from shoprec.data.dataset import Dataset
from shoprec.errors import ConfigError
from shoprec.models.base import Recommender
from shoprec.models.registry import make_model
from shoprec.privacy.erasure import forget, forget_in_dataset, forget_in_model_file
from shoprec.privacy.ingest import ingest, write_log
from shoprec.privacy.pseudonym import Pseudonymizer
from shoprec.privacy.sharded import ShardedRecommender

NEW_SECRET = "rotated-privacy-tests-secret-abcdef0123456789"


def _encodings(text: str) -> list[bytes]:
    # npz stores str arrays as UTF-32; CSV as UTF-8. Look for every plausible encoding.
    return [text.encode(enc) for enc in ("utf-8", "utf-16-le", "utf-32-le")]


def _contents(path: Path) -> list[bytes]:
    """The file's bytes, and the decompressed bytes of a gzip file or of each zip (npz) member."""
    blob = path.read_bytes()
    out = [blob]
    if blob[:2] == b"\x1f\x8b":
        out.append(gzip.decompress(blob))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            out += [zf.read(name) for name in zf.namelist()]
    return out


def _found(paths: list[Path], needles: list[str]) -> list[tuple[str, str]]:
    hits = []
    for path in paths:
        blobs = _contents(path)
        for needle in needles:
            if any(enc in blob for blob in blobs for enc in _encodings(needle)):
                hits.append((path.name, needle))
    return hits


MODELS = {
    "dp-mf.npz": ("dp-mf", {"factors": 4, "epochs": 2}),
    "dp-mf-private.npz": ("dp-mf", {"factors": 4, "epochs": 3, "batch_size": 2, "target_epsilon": 3.0}),
    "als.npz": ("als", {"factors": 4, "iterations": 2}),
    "item-knn.npz": ("item-knn", {"weighting": "events"}),
    "transformer.npz": ("transformer", {"d": 8, "n_layers": 1, "max_len": 5, "epochs": 1, "device": "cpu"}),
    "dp-transformer.npz": ("dp-transformer", {"d": 8, "n_layers": 1, "max_len": 5, "epochs": 1}),
    "sisa.npz": ("sisa", {"base": "dp-mf", "n_shards": 2, "base_params": {"factors": 4, "epochs": 2}}),
}


@pytest.fixture(scope="module")
def _stored_template(tmp_path_factory):
    """The shop as stored, built once: a pseudonymised log and a model of each kind."""
    import torch

    torch.set_num_threads(1)
    raw = raw_events()
    log, _ = ingest(raw, Pseudonymizer.from_secret(SECRET, key_id="k2026"), user_column="customer_id")
    folder = tmp_path_factory.mktemp("stored")
    data = Dataset.from_interactions(log)
    paths = [write_log(log, folder / "events.csv.gz")]
    for filename, (name, params) in MODELS.items():
        paths.append(make_model(name, **params).fit(data).save(folder / filename))
    return data, paths


@pytest.fixture
def stored_shop(_stored_template, tmp_path):
    """A fresh copy of the stored shop for each test (forget edits files in place)."""
    data, paths = _stored_template
    return data, [Path(shutil.copy(p, tmp_path / p.name)) for p in paths]


def test_after_forget_no_file_holds_the_raw_id_or_any_pseudonym(stored_shop, raw_events):
    data, paths = stored_shop
    old = Pseudonymizer.from_secret(SECRET, key_id="k2026")
    # The key was rotated since the data was written: the current key is new, the old one kept.
    rotated = Pseudonymizer([("k2027", NEW_SECRET.encode()), ("k2026", SECRET.encode())])
    needles = ["CUST-1000", old("CUST-1000"), rotated("CUST-1000")]
    assert {p for p, _ in _found(paths, [old("CUST-1000")])} == {p.name for p in paths}

    report = forget("CUST-1000", pseudonymizer=rotated, logs=[paths[0]], artefacts=paths[1:])

    assert _found(paths, needles) == []
    assert report.log_rows_removed[str(paths[0])] == 5
    assert all(a.users_removed == 1 for a in report.artefacts)
    # Other shoppers are still there and every model still loads and recommends for them.
    bob = old("CUST-1001")
    assert {p for p, _ in _found(paths, [bob])} == {p.name for p in paths}
    for path in paths[1:]:
        model = Recommender.load(path)
        assert len(model.users_) == data.n_users - 1
        assert len(model.recommend(bob, k=2)) == 2


def test_the_report_states_what_happened_to_shared_weights(stored_shop, pseudonymizer):
    _, paths = stored_shop
    report = forget("CUST-1002", pseudonymizer=pseudonymizer, artefacts=paths[1:])
    policy = {Path(a.path).name: a.shared_weights for a in report.artefacts}
    assert policy["dp-mf-private.npz"].startswith("kept: trained with user-level (")
    assert policy["sisa.npz"].startswith("retrained shards [")
    assert policy["als.npz"].startswith("retrain required")
    assert sorted(Path(p).name for p in report.retrain_required) == [
        "als.npz", "dp-mf.npz", "dp-transformer.npz", "item-knn.npz", "transformer.npz"
    ]
    assert "CUST" not in str(report.as_dict())


def test_sharded_forget_equals_training_without_the_shopper(tiny_shop):
    params = {"base": "ease", "n_shards": 3, "base_params": {"l2": 1.0}}
    model = ShardedRecommender(**params).fit(tiny_shop)
    retrained = model.forget(["u2"])
    assert len(retrained) == 1  # only u2's shard
    fresh = ShardedRecommender(**params).fit(forget_in_dataset(tiny_shop, ["u2"]))
    np.testing.assert_allclose(model.score_history(["i1", "i5"]), fresh.score_history(["i1", "i5"]), rtol=1e-6)
    assert "u2" not in model.users_
    assert model.recommend("u1", k=3) == fresh.recommend("u1", k=3)


def test_forgetting_an_unknown_shopper_changes_nothing(stored_shop):
    _, paths = stored_shop
    before = [p.read_bytes() for p in paths]
    report = forget("k2026.nobody", logs=[paths[0]], artefacts=paths[1:])
    assert report.log_rows_removed[str(paths[0])] == 0
    assert all(a.users_removed == 0 for a in report.artefacts)
    assert [p.read_bytes() for p in paths] == before


def test_a_model_with_undeclared_per_shopper_state_is_refused(tiny_shop, tmp_path, monkeypatch):
    from shoprec.models import mf

    path = make_model("als", factors=2, iterations=1).fit(tiny_shop).save(tmp_path / "als.npz")
    monkeypatch.delattr(mf._Factorisation, "per_user_state")
    with pytest.raises(ConfigError, match="per-shopper state is not declared"):
        forget_in_model_file(path, ["u1"])


def test_forget_needs_an_id():
    with pytest.raises(ConfigError, match="non-empty shopper id"):
        forget("")
