"""Off-policy estimators checked against a simulated store's truth.

A logging policy writes impressions with its propensities; each target policy's value is
estimated from that log (IPS, SNIPS, DM, DR, and replay for uniform logs) and compared with its
true value on the same requests, which the simulator knows.

Two kinds of target. A target policy given on its own (`targets`) is frozen in the state it is
given in, while the logger learns online: once the logger's ranking has moved away from the
target's, much of what the target would show was never logged in that slot, and no estimator
can recover it (deficient support). A shadow weight (`shadow_weights`) asks the question a shop
asks of its own log: what would the same model, in the logger's own state at each request, have
earned with its exploration weight fixed at w (0: greedy), that is, only the exploration
differs. That is also what `shoprec ope --policy greedy,fixed:EPS` estimates from the service's
impressions.
"""

from __future__ import annotations

import numpy as np

from shoprec.errors import ConfigError, DataError, EmptyDataError, check_choice, check_float
from shoprec.evaluate.ope import RewardModel, direct_method, doubly_robust, ips, replay, snips
from shoprec.explore.config import PolicyConfig
from shoprec.explore.policies import Policy
from shoprec.explore.state import normalise_rows
from shoprec.simulation.run import fresh_policy, simulate
from shoprec.simulation.store import SimulatedStore

__all__ = ["off_policy_validation"]


def off_policy_validation(
    store: SimulatedStore,
    logger: PolicyConfig,
    targets: list[PolicyConfig | Policy],
    rounds: int,
    seed: int = 0,
    n_samples: int = 100,
    n_bootstrap: int = 500,
    chunk: int = 1000,
    shadow_weights: tuple[float, ...] = (),
    bootstrap: str = "requests",
) -> dict[str, dict[str, dict]]:
    """Log `rounds` rounds of `logger`, estimate each target's value from that log with IPS,
    SNIPS, DM and DR (and replay when the logger is uniform, uniform_mix = 1), and compare with
    the simulator's truth.

    shadow_weights: exploration weights w in [0, 1]; each adds the target "weight:w", the
    logger's own policy in its state at each request with its weight overridden by w (its
    uniform_mix, if any, kept; exact distributions, so the logger must be an epsilon-greedy kind:
    egreedy, or dynamic or learned with epsilon-greedy slots).

    A target is a Policy in the state it is in (for example at the end of its own online run; a
    PolicyConfig starts from the prior), frozen: its value is the expected clicks per slate,
    sum_j sum_a target(a | j) * exam_j * P(click on a), on the logged requests, as the Open
    Bandit Pipeline defines a synthetic policy's true value. The reward model of DM and DR is a
    logistic regression on the logged impressions (score feature, repeat exposure, item
    embedding, item embedding x the shopper's history mean, slot).
    bootstrap: what the intervals resample, "requests" (each logged slate on its own) or
    "shoppers" (all of a shopper's slates together: a cluster bootstrap, since one shopper's
    rounds share their preferences).
    Returns {target: {estimator: Estimate.as_dict(truth)}}.
    """
    check_choice("bootstrap", bootstrap, ("requests", "shoppers"), "off_policy_validation")
    weights = tuple(check_float("shadow weight", w, 0.0, 1.0, "off_policy_validation") for w in shadow_weights)
    if weights and not logger.epsilon_greedy:
        raise ConfigError(f"shadow_weights need a logger with epsilon-greedy slots (exact distributions); "
                          f"{logger.name!r} is not one.")
    shadow_parts: list[list[np.ndarray]] = [[] for _ in weights]

    def shadow(t, pol, rows, cand, scores, repeat) -> None:
        for part, w in zip(shadow_parts, weights):
            part.append(pol.action_distribution(rows, cand, scores, None, override=w, repeat=repeat)
                        .astype(np.float32))

    log = simulate(store, logger, rounds, seed, record_log=True, shadow=shadow if weights else None).log
    keep = (log.columns >= 0).all(axis=1)
    n_req, k = int(keep.sum()), log.columns.shape[1]
    if n_req == 0:
        raise EmptyDataError("The logging run showed no complete slate to evaluate from.")
    cand = log.candidates.take(keep)
    shopper, scores, repeat, columns = log.shopper[keep], log.scores[keep], log.repeat[keep], log.columns[keep]
    rewards, propensities = log.rewards[keep], log.propensities[keep]
    rows = np.arange(n_req)[:, None]
    slot = np.arange(k)[None, :]
    x = store.features[np.maximum(cand.items, 0)]
    profile = normalise_rows(store.history_mean)[shopper]
    feats = np.concatenate([scores[..., None], repeat[..., None], x, x * profile[:, None, :]], axis=2)
    model = RewardModel().fit(feats[rows, columns].reshape(n_req * k, -1), np.tile(np.arange(k), n_req),
                              rewards.ravel(), k)
    hat = np.where(cand.valid[:, None, :], np.moveaxis(model.predict(feats), 2, 1), 0.0)
    true_q = log.exam[None, :, None] * log.q_true[keep][:, None, :]
    rng = np.random.default_rng([seed, 3])
    pieces = [np.arange(s, min(s + chunk, n_req)) for s in range(0, n_req, chunk)]
    opts = {"n_bootstrap": n_bootstrap, "seed": seed, "groups": shopper if bootstrap == "shoppers" else None}

    def estimate(dist: np.ndarray) -> dict[str, dict]:
        truth = float((dist * true_q).sum(axis=(1, 2)).mean())
        pe = dist[rows, slot, columns]
        estimates = [ips(rewards, propensities, pe, **opts), snips(rewards, propensities, pe, **opts),
                     direct_method(dist, hat, **opts), doubly_robust(rewards, columns, propensities, dist, hat, **opts)]
        return {e.estimator: e.as_dict(truth) for e in estimates}

    out: dict[str, dict[str, dict]] = {}
    for w, part in zip(weights, shadow_parts):
        width = cand.items.shape[1]
        dist = np.concatenate([np.pad(d, ((0, 0), (0, 0), (0, width - d.shape[2]))) for d in part])[keep]
        out[f"weight:{w:g}"] = estimate(dist.astype(np.float64))
    for target in targets:
        pol = target if isinstance(target, Policy) else fresh_policy(store, target)
        cfg = pol.config
        dist = np.concatenate([pol.action_distribution(shopper[c], cand.take(c), scores[c], rng, n_samples,
                                                       repeat=repeat[c]) for c in pieces])
        out[cfg.name] = estimate(dist)
        truth = out[cfg.name]["ips"]["truth"]
        if logger.uniform_mix == 1.0:
            chosen = np.concatenate([pol.recommend(shopper[c], cand.take(c), scores[c], rng, propensities=False,
                                                   repeat=repeat[c]).columns for c in pieces])
            try:
                out[cfg.name]["replay"] = replay(rewards, columns, chosen, propensities, **opts).as_dict(truth)
            except DataError as exc:  # too few matching events in a small log: say so, do not fail
                out[cfg.name]["replay"] = {"skipped": str(exc), "truth": truth}
    return out
