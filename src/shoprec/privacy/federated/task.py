"""The federated model and the work a client does, without Flower (so it is testable alone and
the centralised reference runs the very same code).

Model: matrix factorisation with a softmax (multinomial) likelihood. Item factors Q (n_items x d)
and item biases b are shared: clients train them locally and the server averages them (FedAvg).
Each shopper's factor u lives only on the client that holds the shopper: it is created there,
trained there, kept in the client's state between rounds, and never sent.
Score of item i for a shopper: u . q_i + b_i. Loss of a shopper: mean over their (most recent
`max_items_per_user`) training items of -log softmax(scores)[item].

With `reconstruct_steps` > 0 a shopper's factor is not kept at all: whenever a client trains or
scores, it fits each of its shoppers' factors afresh to their own history against the item
parameters it was sent (Federated Reconstruction, Singhal et al., NeurIPS 2021). Under DP-FedAvg
with one shopper per client, a client takes part in a few rounds at most, so a kept factor would be
nearly untrained; a reconstructed one is as good as the item side, and any history, a shopper's
who never took part included, is scored the same way (joint DP: only the item side is released).

Client data: a partition file (`write_partitions`) with, per local shopper, the training
history, the validation item and the test item (leave-one-out). It holds no shopper ids at all:
the client only needs its shoppers' positions.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from shoprec.data.split import Split
from shoprec.errors import ConfigError, DataError, check_choice, check_float, check_int

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class FedConfig:
    """Local training settings (the same for federated clients and the centralised reference).

    factors: d; local_epochs: passes over the client's shoppers per round; lr: local step size;
    batch_size: shoppers per local step; max_items_per_user: training items per shopper used
    (most recent); seed: initialisation and shuffling.
    optimizer: "adam" or "sgd" for the local steps. Adam moves every item parameter by about
        `lr` whatever its gradient, so a client's update is mostly about items it never saw;
        SGD's update is its gradient, which is what DP-FedAvg's clipping should bound.
    reconstruct_steps: 0 keeps each shopper's factor in the client between rounds and trains it
        with the items; > 0 fits it afresh from zero with this many full-batch Adam steps on the
        shopper's own loss (item parameters fixed) before training and before scoring, and then
        trains only the item parameters.
    reconstruct_lr: Adam's step size for the reconstruction.
    """

    factors: int = 32
    local_epochs: int = 1
    lr: float = 0.01
    batch_size: int = 64
    max_items_per_user: int = 50
    seed: int = 0
    optimizer: str = "adam"
    reconstruct_steps: int = 0
    reconstruct_lr: float = 0.1

    def __post_init__(self) -> None:
        where = "FedConfig"
        check_int("factors", self.factors, 1, 4096, where)
        check_int("local_epochs", self.local_epochs, 1, 10_000, where)
        check_float("lr", self.lr, 1e-8, 1e4, where)  # SGD on a mean loss may take large steps
        check_int("batch_size", self.batch_size, 1, 1_000_000, where)
        check_int("max_items_per_user", self.max_items_per_user, 1, 100_000, where)
        check_int("seed", self.seed, 0, 2**31 - 1, where)
        check_choice("optimizer", self.optimizer, OPTIMIZERS, where)
        check_int("reconstruct_steps", self.reconstruct_steps, 0, 100_000, where)
        check_float("reconstruct_lr", self.reconstruct_lr, 1e-8, 10.0, where)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClientData:
    """One client's shoppers: training histories (CSR), validation and test items (-1: none)."""

    n_items: int
    indptr: np.ndarray
    items: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def histories(self) -> list[np.ndarray]:
        return np.split(self.items, self.indptr[1:-1]) if self.n_users else []

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(fh, n_items=np.array(self.n_items), indptr=self.indptr, items=self.items,
                     valid=self.valid, test=self.test)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClientData:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"No client data file at {path}.")
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as npz:
            return cls(int(npz["n_items"]), npz["indptr"], npz["items"], npz["valid"], npz["test"])


def client_data(split: Split, users: np.ndarray) -> ClientData:
    """The ClientData of the given users (dense indices) of a leave-one-out split."""
    train = split.train
    hist = [train.history(u) for u in users]
    lengths = np.array([len(h) for h in hist], np.int64)

    def one(m, u):
        row = m.indices[m.indptr[u] : m.indptr[u + 1]]
        return int(row[0]) if len(row) else -1

    return ClientData(
        train.n_items,
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.concatenate(hist).astype(np.int64) if len(hist) and lengths.sum() else np.empty(0, np.int64),
        np.array([one(split.valid, u) for u in users], np.int64),
        np.array([one(split.test, u) for u in users], np.int64),
    )


def partition_users(n_users: int, n_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Shoppers dealt at random into n_clients nearly equal parts."""
    check_int("n_clients", n_clients, 1, 1_000_000, "partition_users")
    if n_clients > n_users:
        raise ConfigError(f"Cannot split {n_users} shoppers over {n_clients} clients.")
    order = np.random.default_rng(seed).permutation(n_users)
    return [np.sort(part) for part in np.array_split(order, n_clients)]


def write_partitions(split: Split, n_clients: int, directory: str | Path, seed: int = 0) -> list[Path]:
    """One `client-<i>.npz` per client in `directory` (what each SuperNode is given)."""
    users = np.flatnonzero(np.diff(split.train.indptr) > 0)
    parts = partition_users(len(users), n_clients, seed)
    return [client_data(split, users[p]).save(Path(directory) / f"client-{i}.npz") for i, p in enumerate(parts)]


# ---- the model ---------------------------------------------------------------------------------
def init_item_params(n_items: int, config: FedConfig) -> list[np.ndarray]:
    """[item factors (n_items, d), item biases (n_items,)], seeded by config.seed."""
    rng = np.random.default_rng(config.seed)
    return [
        (rng.standard_normal((n_items, config.factors)) * 0.1).astype(np.float32),
        np.zeros(n_items, np.float32),
    ]


def init_user_factors(n_users: int, config: FedConfig, salt: int = 0) -> np.ndarray:
    rng = np.random.default_rng([config.seed, 7919, salt])
    return (rng.standard_normal((n_users, config.factors)) * 0.1).astype(np.float32)


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield torch
    finally:
        torch.set_num_threads(before)


def _pad(histories: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(histories), width), np.int64)
    for r, h in enumerate(histories):
        h = np.asarray(h, np.int64)[-width:]
        out[r, width - len(h) :] = h + 1
    return out


def local_train(
    item_params: list[np.ndarray],
    user_factors: np.ndarray,
    data: ClientData,
    config: FedConfig,
    round_seed: int = 0,
    threads: int = 1,
) -> tuple[list[np.ndarray], np.ndarray, float]:
    """`config.local_epochs` of local steps on the client's shoppers; returns (item params, user
    factors, mean loss). Shoppers without training items are left untouched. With
    `reconstruct_steps` the given factors are ignored: each shopper's is reconstructed from their
    history first and held fixed while the item parameters train."""
    users = np.flatnonzero(np.diff(data.indptr) > 0)
    if len(users) == 0:
        return [p.copy() for p in item_params], user_factors.copy(), math.nan
    hist = data.histories()
    rows = _pad([hist[u] for u in users], config.max_items_per_user)
    reconstructing = config.reconstruct_steps > 0
    start_factors = (reconstruct_factors(item_params, rows, config, threads) if reconstructing
                     else user_factors[users])
    with _torch_threads(threads) as torch:
        gen = torch.Generator().manual_seed(int(config.seed) * 1_000_003 + int(round_seed))
        q = torch.tensor(item_params[0], requires_grad=True)
        b = torch.tensor(item_params[1], requires_grad=True)
        u_all = torch.tensor(start_factors, requires_grad=not reconstructing)
        trained = [q, b] if reconstructing else [q, b, u_all]
        opt = (torch.optim.Adam(trained, lr=config.lr) if config.optimizer == "adam"
               else torch.optim.SGD(trained, lr=config.lr))
        x = torch.as_tensor(rows)
        total, count = 0.0, 0
        for _ in range(config.local_epochs):
            order = torch.randperm(len(users), generator=gen)
            for start in range(0, len(users), config.batch_size):
                idx = order[start : start + config.batch_size]
                loss_per = _loss(torch, u_all[idx], q, b, x[idx], data.n_items)
                loss = loss_per.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss_per.detach().sum())
                count += len(idx)
        new_users = user_factors.copy()
        new_users[users] = u_all.detach().numpy()
        return [q.detach().numpy().copy(), b.detach().numpy().copy()], new_users, total / max(count, 1)


def reconstruct_factors(
    item_params: list[np.ndarray], rows: np.ndarray, config: FedConfig, threads: int = 1, block: int = 2048
) -> np.ndarray:
    """Each shopper's factor fitted to their own items against fixed item parameters.

    rows: (n, width) padded item indices + 1 (`_pad`), one shopper per row. From zero,
    `reconstruct_steps` full-batch Adam steps on the sum of the shoppers' losses: every loss
    involves only its own shopper's factor and Adam works coordinate by coordinate, so each
    factor gets exactly the steps it would get alone. A row of padding only has a zero loss, so
    its factor stays at zero (its scores are the item biases). Blocks of `block` shoppers bound
    the memory.
    """
    out = np.zeros((len(rows), config.factors), np.float32)
    if config.reconstruct_steps == 0 or len(rows) == 0:
        return out
    with _torch_threads(threads) as torch:
        q = torch.as_tensor(np.asarray(item_params[0], np.float32))
        b = torch.as_tensor(np.asarray(item_params[1], np.float32))
        for start in range(0, len(rows), block):
            x = torch.as_tensor(rows[start : start + block])
            u = torch.zeros(len(x), config.factors, requires_grad=True)
            opt = torch.optim.Adam([u], lr=config.reconstruct_lr)
            for _ in range(config.reconstruct_steps):
                loss = _loss(torch, u, q, b, x, q.shape[0]).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            out[start : start + len(x)] = u.detach().numpy()
    return out


def reconstruct_for_histories(
    item_params: list[np.ndarray], histories: list[np.ndarray], config: FedConfig, threads: int = 1
) -> np.ndarray:
    """`reconstruct_factors` for histories of item indices (oldest first), e.g. to score
    shoppers who never took part (their own device would do the same)."""
    return reconstruct_factors(item_params, _pad(histories, config.max_items_per_user), config, threads)


def _loss(torch, u, q, b, items, n_items):
    logits = u @ q.T + b
    targets = torch.zeros(items.shape[0], n_items + 1)
    targets.scatter_(1, items, 1.0)
    targets = targets[:, 1:]
    log_p = torch.log_softmax(logits, dim=1)
    return -(log_p * targets).sum(dim=1) / targets.sum(dim=1).clamp(min=1.0)


def evaluate_local(
    item_params: list[np.ndarray], user_factors: np.ndarray, data: ClientData, k: int = 10,
    config: FedConfig | None = None,
) -> dict[str, float]:
    """Sums over the client's shoppers with a test item: NDCG@k, HR@k (full ranking, training
    and validation items masked, ties counted for the target) and the number evaluated. With a
    `config` that reconstructs, the factors are reconstructed from the histories first."""
    users = np.flatnonzero(data.test >= 0)
    out = {"ndcg_sum": 0.0, "hr_sum": 0.0, "n": float(len(users))}
    if len(users) == 0:
        return out
    q, b = item_params
    hist = data.histories()
    if config is not None and config.reconstruct_steps > 0:
        user_factors = user_factors.copy()
        user_factors[users] = reconstruct_for_histories(item_params, [hist[u] for u in users], config)
    for start in range(0, len(users), 1024):
        block = users[start : start + 1024]
        scores = user_factors[block] @ q.T + b
        for r, u in enumerate(block):
            seen = hist[u]
            if data.valid[u] >= 0:
                seen = np.append(seen, data.valid[u])
            scores[r, seen] = -np.inf
        target = scores[np.arange(len(block)), data.test[block]]
        rank = (scores > target[:, None]).sum(axis=1)
        hit = rank < k
        out["ndcg_sum"] += float(np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0).sum())
        out["hr_sum"] += float(hit.sum())
    return out


@dataclass
class ReconstructingScorer:
    """The federation's released item parameters, scoring any history as a shopper's own device
    would: their factor reconstructed from their items alone, then `u . q + b` over the catalogue
    (nothing about the shopper leaves the scorer). `score_histories` is the hook the evaluation
    and the membership-inference attack read."""

    item_params: list[np.ndarray]
    config: FedConfig

    def score_histories(self, histories: list[np.ndarray], events=None) -> np.ndarray:
        factors = reconstruct_for_histories(self.item_params, histories, self.config)
        return factors @ self.item_params[0].T + self.item_params[1]


def train_centralised(
    split: Split, config: FedConfig, epochs: int, *, threads: int = 1, on_epoch=None
) -> list[dict[str, float]]:
    """The same model trained on all shoppers in one place, `epochs` passes; returns per-epoch
    {"epoch", "loss", "NDCG@10", "HR@10"} evaluated as the federated run is."""
    users = np.flatnonzero(np.diff(split.train.indptr) > 0)
    data = client_data(split, users)
    params = init_item_params(data.n_items, config)
    factors = init_user_factors(data.n_users, config, salt=0)
    one_epoch = FedConfig(**{**config.as_dict(), "local_epochs": 1})
    log = []
    for epoch in range(1, epochs + 1):
        params, factors, loss = local_train(params, factors, data, one_epoch, round_seed=epoch, threads=threads)
        m = evaluate_local(params, factors, data, config=config)
        entry = {"epoch": epoch, "loss": loss, "NDCG@10": m["ndcg_sum"] / max(m["n"], 1), "HR@10": m["hr_sum"] / max(m["n"], 1)}
        log.append(entry)
        if on_epoch is not None:
            on_epoch(dict(entry))
    return log


__all__ = [
    "ClientData",
    "FedConfig",
    "ReconstructingScorer",
    "client_data",
    "evaluate_local",
    "init_item_params",
    "init_user_factors",
    "local_train",
    "partition_users",
    "reconstruct_factors",
    "reconstruct_for_histories",
    "train_centralised",
    "write_partitions",
]
