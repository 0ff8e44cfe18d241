"""Off-policy estimators checked against a simulated store's truth.

A logging policy writes impressions with its propensities; each target policy's value is
estimated from that log (IPS, SNIPS, DM, DR, and replay for uniform logs) and compared with its
true value on the same requests, which the simulator knows.
"""

from __future__ import annotations

import numpy as np

from shoprec.errors import DataError, EmptyDataError
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
) -> dict[str, dict[str, dict]]:
    """Log `rounds` rounds of `logger`, estimate each target's value from that log with IPS,
    SNIPS, DM and DR (and replay when the logger is uniform, uniform_mix = 1), and compare with
    the simulator's truth.

    A target is a Policy in the state it is in (for example at the end of its own online run; a
    PolicyConfig starts from the prior), frozen: its value is the expected clicks per slate,
    sum_j sum_a target(a | j) * exam_j * P(click on a), on the logged requests, as the Open
    Bandit Pipeline defines a synthetic policy's true value. The reward model of DM and DR is a
    logistic regression on the logged impressions (score feature, repeat exposure, item
    embedding, item embedding x the shopper's history mean, slot).
    Returns {target: {estimator: Estimate.as_dict(truth)}}.
    """
    log = simulate(store, logger, rounds, seed, record_log=True).log
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
    out: dict[str, dict[str, dict]] = {}
    for target in targets:
        pol = target if isinstance(target, Policy) else fresh_policy(store, target)
        cfg = pol.config
        dist = np.concatenate([pol.action_distribution(shopper[c], cand.take(c), scores[c], rng, n_samples,
                                                       repeat=repeat[c]) for c in pieces])
        truth = float((dist * true_q).sum(axis=(1, 2)).mean())
        pe = dist[rows, slot, columns]
        opts = {"n_bootstrap": n_bootstrap, "seed": seed}
        estimates = [ips(rewards, propensities, pe, **opts), snips(rewards, propensities, pe, **opts),
                     direct_method(dist, hat, **opts), doubly_robust(rewards, columns, propensities, dist, hat, **opts)]
        out[cfg.name] = {e.estimator: e.as_dict(truth) for e in estimates}
        if logger.uniform_mix == 1.0:
            chosen = np.concatenate([pol.recommend(shopper[c], cand.take(c), scores[c], rng, propensities=False,
                                                   repeat=repeat[c]).columns for c in pieces])
            try:
                out[cfg.name]["replay"] = replay(rewards, columns, chosen, propensities, **opts).as_dict(truth)
            except DataError as exc:  # too few matching events in a small log: say so, do not fail
                out[cfg.name]["replay"] = {"skipped": str(exc), "truth": truth}
    return out
