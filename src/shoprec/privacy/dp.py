"""User-level differentially private training (DP-SGD with Opacus).

The unit protected is the shopper: a training example is one shopper's whole history (bounded to
`max_items_per_user` events, so that nobody contributes more than that), shoppers are drawn by
Poisson sampling with rate q = batch_size / n_shoppers, each shopper's gradient is clipped to
`max_grad_norm` and Gaussian noise of standard deviation `noise_multiplier * max_grad_norm` is
added to the sum. The accountant (RDP by default) turns (q, noise, steps) into (epsilon, delta).

Budgets:
- `target_epsilon` is what the caller asks for; `None` or `math.inf` trains without privacy (the
  reference line: same model, same batches, no clipping and no noise) and reports epsilon = inf.
- `target_delta` defaults to `default_delta(n) = 1 / n ** 1.1` for n shoppers: below 1/n, as it
  must be (a delta of 1/n allows publishing one shopper's data outright).
- A budget that cannot be met is refused before training with a `ConfigError` that says why:
  epsilon <= 0 or NaN, delta outside (0, 1/n), or a noise multiplier beyond
  `max_noise_multiplier` (noise that large means the model would learn nothing, so the caller
  should train fewer epochs, sample fewer shoppers per step or accept a larger epsilon).
  After training, the accountant's epsilon is checked against the target once more; a run that
  overshot (which the calibration should never allow) raises instead of returning.

Every run returns a `PrivacyReport` (`shoprec.privacy.accountant`, with the budget checks and the
noise calibration) that models store beside their weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shoprec.errors import ConfigError, check_choice, check_float, check_int, require_extra
from shoprec.privacy.accountant import (
    ACCOUNTANTS,
    DEFAULT_MAX_NOISE_MULTIPLIER,
    EPSILON_TOLERANCE,
    PrivacyReport,
    accountant_epsilon,
    accountant_kwargs,
    check_budget,
    is_private,
    noise_multiplier_for,
    quiet_opacus_warnings,
)

__all__ = ["OPTIMIZERS", "DPConfig", "train_per_user"]

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class DPConfig:
    """The privacy hyperparameters every user-level DP-SGD model shares.

    Args:
        target_epsilon: the privacy budget; None or inf trains without privacy (the reference).
        target_delta: None -> 1 / n ** 1.1 for n training shoppers; else in (0, 1/n).
        max_grad_norm: per-shopper clipping norm C (> 0).
        max_noise_multiplier: refuse budgets that would need more noise than this.
        accountant: "rdp", "prv" or "gdp" (Opacus' accountants).
    """

    target_epsilon: float | None = None
    target_delta: float | None = None
    max_grad_norm: float = 1.0
    max_noise_multiplier: float = DEFAULT_MAX_NOISE_MULTIPLIER
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        where = type(self).__name__
        check_float("max_grad_norm", self.max_grad_norm, 1e-6, 1e6, where)
        check_float("max_noise_multiplier", self.max_noise_multiplier, 0.0, 1e6, where)
        check_choice("accountant", self.accountant, ACCOUNTANTS, where)
        if self.target_epsilon is not None:
            check_budget(self.target_epsilon, None, 2, where)  # type and sign; delta checked at fit

    @property
    def private(self) -> bool:
        return is_private(self.target_epsilon)

    def privacy_kwargs(self) -> dict[str, Any]:
        """These settings as the keyword arguments of `train_per_user`."""
        return {
            "target_epsilon": self.target_epsilon, "target_delta": self.target_delta,
            "max_grad_norm": float(self.max_grad_norm), "accountant": self.accountant,
            "max_noise_multiplier": float(self.max_noise_multiplier),
        }


def train_per_user(
    module,
    tensors: tuple,
    *,
    target_epsilon: float | None,
    target_delta: float | None,
    max_grad_norm: float,
    batch_size: int,
    epochs: int,
    lr: float,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    accountant: str = "rdp",
    max_noise_multiplier: float = DEFAULT_MAX_NOISE_MULTIPLIER,
    max_items_per_user: int | None = None,
    seed: int = 0,
    where: str = "DP-SGD",
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[PrivacyReport, list[dict[str, Any]]]:
    """Train `module` with one example per shopper, privately unless the epsilon is None/inf.

    module: an nn.Module whose forward(*batch) returns one loss per example, shape (B,); only
        modules Opacus can compute per-sample gradients for (Linear, Embedding, LayerNorm, ...).
    tensors: equally long tensors, row r = shopper r's (bounded) history in some encoding.
    batch_size: expected shoppers per step; the Poisson sample rate is 1 / ceil(n / batch_size).
    optimizer: "adam" or "sgd" (with momentum 0.9); under DP both see the clipped, noised gradient.
    Returns the PrivacyReport and a per-epoch log [{"epoch", "loss", "epsilon"}].
    Raises ConfigError before training when the budget cannot be met (see module docstring).
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    n = len(tensors[0])
    batch_size = check_int("batch_size", batch_size, 1, 10_000_000, where)
    epochs = check_int("epochs", epochs, 0, 100_000, where)
    check_float("lr", lr, 1e-8, 10.0, where)
    check_choice("optimizer", optimizer, OPTIMIZERS, where)
    check_choice("accountant", accountant, ACCOUNTANTS, where)
    max_grad_norm = check_float("max_grad_norm", max_grad_norm, 1e-6, 1e6, where)
    check_float("max_noise_multiplier", max_noise_multiplier, 0.0, 1e6, where)
    epsilon, delta = check_budget(target_epsilon, target_delta, n, where)
    private = math.isfinite(epsilon)

    generator = torch.Generator().manual_seed(int(seed))
    dataset = TensorDataset(*tensors)
    loader = DataLoader(dataset, batch_size=min(batch_size, max(n, 1)), shuffle=True, generator=generator)
    steps_per_epoch = len(loader)
    params = [p for p in module.parameters() if p.requires_grad]
    make_opt = (
        (lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay))
        if optimizer == "adam"
        else (lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9, weight_decay=weight_decay))
    )
    opt = make_opt(params)
    log: list[dict[str, Any]] = []
    if n == 0 or epochs == 0:
        return _report(private, epsilon, delta, 0.0, max_grad_norm, None, 0, 0, n, max_items_per_user,
                       accountant), log

    if not private:
        module.train()
        for epoch in range(epochs):
            total = 0.0
            for batch in loader:
                opt.zero_grad(set_to_none=True)
                loss = module(*batch).mean()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch[0])
            entry = {"epoch": epoch + 1, "loss": total / n, "epsilon": math.inf}
            log.append(entry)
            if on_epoch is not None:
                on_epoch(dict(entry))
        module.eval()
        return _report(False, epsilon, delta, 0.0, None, None, epochs * steps_per_epoch, epochs, n,
                       max_items_per_user, None), log

    require_extra("opacus", "privacy")
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise ConfigError(f"{where}: the network is not compatible with DP-SGD: {errors}")
    sample_rate = 1.0 / steps_per_epoch
    total_steps = epochs * steps_per_epoch
    sigma = noise_multiplier_for(
        epsilon, delta, sample_rate, total_steps,
        accountant=accountant, max_noise_multiplier=max_noise_multiplier, where=where,
    )
    with quiet_opacus_warnings():
        engine = PrivacyEngine(accountant=accountant)
        noise_gen = torch.Generator().manual_seed(int(seed) + 1)
        dp_module, dp_opt, dp_loader = engine.make_private(
            module=module,
            optimizer=opt,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=max_grad_norm,
            poisson_sampling=True,
            noise_generator=noise_gen,
        )
        dp_module.train()
        for epoch in range(epochs):
            total, seen = 0.0, 0
            for batch in dp_loader:
                dp_opt.zero_grad(set_to_none=True)
                size = len(batch[0])
                # Sum / max(size, 1): an empty Poisson batch still takes a (pure-noise) step,
                # as the accountant assumes, instead of producing NaN.
                losses = dp_module(*batch)
                loss = losses.sum() / max(size, 1)
                loss.backward()
                dp_opt.step()
                total += float(losses.detach().sum())
                seen += size
            spent = accountant_epsilon(sigma, sample_rate, (epoch + 1) * steps_per_epoch, delta, accountant)
            entry = {"epoch": epoch + 1, "loss": total / max(seen, 1), "epsilon": spent}
            log.append(entry)
            if on_epoch is not None:
                on_epoch(dict(entry))
        # The engine's own accountant saw every step; it must agree with the planned figure.
        spent = max(
            float(engine.accountant.get_epsilon(delta=delta, **accountant_kwargs(accountant))),
            accountant_epsilon(sigma, sample_rate, total_steps, delta, accountant),
        )
        dp_module._close()  # removes Opacus' hooks and per-sample gradients from the network
    module.eval()
    if spent > epsilon + EPSILON_TOLERANCE:
        raise ConfigError(
            f"{where}: the run spent epsilon={spent:.4f}, more than the requested {epsilon:g}; "
            f"the weights are not released."
        )
    return _report(True, spent, delta, sigma, max_grad_norm, sample_rate, total_steps, epochs, n,
                   max_items_per_user, accountant, target_epsilon=epsilon), log


def _report(private, epsilon, delta, sigma, clip, rate, steps, epochs, n, max_items, accountant,
            target_epsilon=math.inf) -> PrivacyReport:
    return PrivacyReport(
        mechanism="dp-sgd" if private else "none",
        epsilon=float(epsilon) if private else math.inf,
        delta=float(delta) if private else 0.0,
        unit="user",
        target_epsilon=float(target_epsilon),
        noise_multiplier=float(sigma),
        max_grad_norm=None if clip is None else float(clip),
        sample_rate=None if rate is None else float(rate),
        steps=int(steps),
        epochs=int(epochs),
        n_users=int(n),
        max_items_per_user=None if max_items is None else int(max_items),
        accountant=accountant,
    )
