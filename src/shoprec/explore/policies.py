"""Bandit policies over candidate pools: greedy, epsilon-greedy, UCB, softmax, LinUCB, linear
Thompson sampling, and the dynamic policy that weighs exploration per shopper and request.

Every policy shares one learner (`shoprec.explore.state`): the posterior mean reward of a candidate
is the calibrated model score plus a per-item residual plus the shopper's linear correction over
item embeddings, updated online from every feedback event. Policies differ only in how they fill
the exploration slots of a slate (`shoprec.explore.slate`):

=========  ==============================================================================  =======
policy     exploration slots                                                               weight
=========  ==============================================================================  =======
greedy     none: the posterior-mean ranking                                                0
egreedy    each of the budget's slots explores with probability w; items uniform at random  epsilon
ucb        candidates whose mean + c w sd(item residual) beats the exploit top-k           1
softmax    Plackett-Luce sample with temperature tau w (Gumbel top-k)                      1
linucb     candidates whose mean + alpha w sd(posterior) beats the exploit top-k            1
thompson   candidates whose value under a posterior draw (sd scaled by w) beats it          1
dynamic    Thompson (or LinUCB, egreedy: `explorer`) with w from `explore.weighting`        rule
=========  ==============================================================================  =======

A per-request override replaces w. For UCB, LinUCB, Thompson and softmax, n_e is the number of
candidates outside the exploit top-k that the policy's values put in its own top-k, capped by the
budget. Propensities are exact for greedy, egreedy, ucb, linucb and dynamic with the LinUCB or
egreedy explorer; for Thompson, softmax and dynamic with the Thompson explorer they are Monte-Carlo
estimates from `SlateConfig.propensity_samples` draws S, the
realised draw included: (1 + matches among S other draws) / (S + 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from shoprec.errors import ConfigError, DataError
from shoprec.explore.config import POLICY_KINDS, PolicyConfig, examination
from shoprec.explore.learned import LevelBandit
from shoprec.explore.pools import Candidates
from shoprec.explore.slate import (
    SlateBatch,
    assemble,
    calibrated_rerank,
    explore_positions,
    mmr_rerank,
)
from shoprec.explore.state import (
    Calibrator,
    ItemStats,
    ShopperStates,
    check_features,
    log_rank,
    normalise_rows,
    observe_jointly,
    sigmoid,
)
from shoprec.explore.weighting import check_override, exploration_weight

__all__ = ["POLICY_KINDS", "Policy", "PolicyConfig", "examination"]

_MC_CHUNK = 50  # Monte-Carlo slates drawn at once when estimating propensities

@dataclass
class _Context:
    """What a policy computed for a batch of requests before drawing slates."""

    rows: np.ndarray
    states: ShopperStates  # the states `rows` index into
    candidates: Candidates
    valid: np.ndarray
    z: np.ndarray
    repeat: np.ndarray
    mean: np.ndarray  # posterior mean click logit at an examined slot (-inf where invalid)
    var_user: np.ndarray
    var_item: np.ndarray
    exploit_order: np.ndarray
    outside: np.ndarray
    weight: np.ndarray
    signals: dict[str, np.ndarray]


class Policy:
    """A policy with its learned state for a population of shoppers (row = shopper index).

    item_features (I, d): item embeddings (rows are scaled to unit norm); history_length (n,),
    history_mean (n, d): what is known about each shopper before any feedback; item_categories
    (I,) int codes and category_mix (n, n_cat) for calibrated re-ranking.
    """

    def __init__(
        self,
        config: PolicyConfig,
        item_features: np.ndarray,
        n_shoppers: int,
        history_length: np.ndarray | None = None,
        history_mean: np.ndarray | None = None,
        item_categories: np.ndarray | None = None,
        category_mix: np.ndarray | None = None,
    ) -> None:
        if not isinstance(config, PolicyConfig):
            raise ConfigError(f"Policy expects a PolicyConfig. Got {type(config).__name__} instead.")
        self.config = config
        self.features = normalise_rows(check_features(item_features))
        mean = None if history_mean is None else normalise_rows(np.asarray(history_mean, np.float64))
        self.shoppers = ShopperStates.new(n_shoppers, self.features.shape[1], config.bandit, history_length, mean)
        self.items = ItemStats.new(len(self.features), config.bandit)
        self.calibrator = Calibrator.new(config.bandit)
        self.exam = examination(config.slate.k)
        self.positions = explore_positions(config.slate.k, config.slate.explore_budget, config.slate.first_explore_slot)
        self.item_categories = None if item_categories is None else np.asarray(item_categories, np.int64)
        self.category_mix = None if category_mix is None else np.asarray(category_mix, np.float64)
        self.payoff_total = np.zeros(4)  # over shoppers whose states live outside (see observe)
        self.levels = LevelBandit(config.levels) if config.kind == "learned" else None
        if config.slate.calibration > 0 and (self.item_categories is None or self.category_mix is None):
            raise ConfigError("Calibrated re-ranking (calibration > 0) needs item_categories and category_mix.")

    @property
    def name(self) -> str:
        return self.config.name

    def add_items(self, features: np.ndarray, categories: np.ndarray | None = None) -> None:
        """Append new items (their indices continue after the existing ones)."""
        feats = normalise_rows(check_features(features))
        if feats.shape[1] != self.features.shape[1]:
            raise DataError(f"New item features must have {self.features.shape[1]} dimensions. Got {feats.shape[1]}.")
        self.features = np.concatenate([self.features, feats])
        self.items.extend(len(feats), self.config.bandit)
        if self.item_categories is not None:
            cats = np.full(len(feats), -1) if categories is None else np.asarray(categories, np.int64)
            self.item_categories = np.concatenate([self.item_categories, cats])

    # ---- scoring ---------------------------------------------------------------------------
    def _context(self, shoppers: np.ndarray, candidates: Candidates, scores: np.ndarray,
                 override: float | np.ndarray | None, repeat: np.ndarray | None = None,
                 states: ShopperStates | None = None) -> _Context:
        cfg = self.config
        states = self.shoppers if states is None else states
        rows = np.asarray(shoppers, np.int64)
        if rows.ndim != 1 or len(rows) != len(candidates) or np.shape(scores) != candidates.items.shape:
            raise DataError(
                f"shoppers {np.shape(rows)}, candidates {candidates.items.shape} and scores {np.shape(scores)} "
                "must describe the same requests (scores: one per candidate)."
            )
        if len(rows) and (rows.min() < 0 or rows.max() >= len(states)):
            raise DataError(f"Shopper indices must be in [0, {len(states)}).")
        valid = candidates.valid
        if (candidates.items >= len(self.features)).any():
            raise DataError(f"Candidate items must be indices below {len(self.features)} (the known items).")
        idx = np.maximum(candidates.items, 0)
        x = self.features[idx]
        scores = np.asarray(scores, np.float64)
        z = log_rank(scores, valid) if cfg.score_scaling == "rank" else np.where(valid, scores, 0.0)
        repeat = np.zeros(valid.shape) if repeat is None else np.where(valid, np.asarray(repeat, np.float64), 0.0)
        if repeat.shape != valid.shape:
            raise DataError(f"repeat must have the candidates' shape {valid.shape}. Got {repeat.shape} instead.")
        theta = states.theta[rows]
        cov = states.cov[rows]
        mean = self.calibrator.predict(z, repeat) + self.items.mean[idx] + (x @ theta[:, :, None])[:, :, 0]
        var_user = np.maximum(((x @ cov) * x).sum(axis=2), 0.0)
        var_item = self.items.var(idx)
        mean = np.where(valid, mean, -np.inf)
        k = cfg.slate.k
        if cfg.slate.calibration > 0:
            cats = np.where(valid, self.item_categories[idx], -1)
            exploit_order = calibrated_rerank(sigmoid(mean), cats, self.category_mix[rows], valid, k, cfg.slate.calibration)
        else:
            exploit_order = mmr_rerank(sigmoid(mean), x, valid, k, cfg.slate.mmr_lambda)
        if exploit_order.shape[1] < k:
            exploit_order = np.pad(exploit_order, ((0, 0), (0, k - exploit_order.shape[1])), constant_values=-1)
        outside = valid.copy()
        r = np.repeat(np.arange(len(rows)), k)
        e = exploit_order.ravel()
        outside[r[e >= 0], e[e >= 0]] = False
        weight, signals = self._weight(rows, valid, var_user, override, states)
        return _Context(rows, states, candidates, valid, z, repeat, mean, var_user, var_item, exploit_order, outside,
                        weight, signals)

    def population_payoff(self, states: ShopperStates | None = None) -> np.ndarray:
        """The payoff counters (4,) summed over every shopper: the population's verdict on
        exploration that smooths each shopper's own. Over `self.shoppers` when the policy holds
        the population; for states kept elsewhere (the service's store), the running total that
        `observe` maintains."""
        if states is None or states is self.shoppers:
            return self.shoppers.payoff.sum(axis=0)
        return self.payoff_total

    def _weight(self, rows, valid, var_user, override, states: ShopperStates):
        cfg = self.config
        n = len(rows)
        if cfg.kind in ("dynamic", "learned"):
            count = np.maximum(valid.sum(axis=1), 1)
            ratio = np.where(valid, var_user, 0.0).sum(axis=1) / count / cfg.bandit.prior_sd**2
            s = states
            args = (s.n_history[rows] + s.n_positive[rows], ratio, s.recent[rows], s.longterm[rows], s.payoff[rows])
            if cfg.kind == "learned":
                return self.levels.weight(*args, override=override, population_payoff=self.population_payoff(states))
            return exploration_weight(*args, cfg.weighting, override, population_payoff=self.population_payoff(states))
        base = {"greedy": 0.0, "egreedy": cfg.epsilon}.get(cfg.kind, 1.0)
        w = np.full(n, base)
        if override is not None and cfg.kind != "greedy":
            o = check_override(override, n)
            w = np.where(np.isnan(o), w, o)
        return w, {}

    # ---- drawing slates --------------------------------------------------------------------
    def _values(self, ctx: _Context, rng: np.random.Generator, draws: int) -> np.ndarray | None:
        """Exploration values (draws, n, C) of value-based policies; None for greedy / egreedy."""
        cfg, w = self.config, ctx.weight[None, :, None]
        kind = cfg.kind if cfg.kind != "dynamic" else cfg.explorer
        if kind in ("greedy", "egreedy", "learned"):  # dynamic's egreedy explorer too
            return None
        if kind == "ucb":
            v = ctx.mean + cfg.ucb_c * w[0] * np.sqrt(ctx.var_item)
            return np.broadcast_to(v, (draws, *v.shape))
        if kind == "linucb":
            v = ctx.mean + cfg.alpha * w[0] * np.sqrt(ctx.var_user + ctx.var_item)
            return np.broadcast_to(v, (draws, *v.shape))
        if kind == "softmax":
            gumbel = -np.log(-np.log(rng.random((draws, *ctx.mean.shape), dtype=np.float32) + 1e-12) + 1e-12)
            tau = cfg.temperature * w
            prob = np.where(ctx.valid, sigmoid(ctx.mean), -np.inf)
            return np.where(tau > 0, prob / np.where(tau > 0, tau, 1.0) + gumbel, ctx.mean)
        # Thompson: theta ~ N(theta, (scale w)^2 cov), beta ~ N(beta, (scale w)^2 var_item).
        idx = np.maximum(ctx.candidates.items, 0)
        x = self.features[idx]
        chol = np.linalg.cholesky(ctx.states.cov[ctx.rows] + 1e-12 * np.eye(self.features.shape[1]))
        eps = rng.standard_normal((draws, len(ctx.rows), self.features.shape[1]), dtype=np.float32)
        dtheta = np.einsum("nde,sne->snd", chol, eps)
        noise = np.matmul(x[None], dtheta[..., None])[..., 0] + np.sqrt(ctx.var_item) * rng.standard_normal(
            (draws, *ctx.mean.shape), dtype=np.float32)
        return ctx.mean + cfg.thompson_scale * w * noise

    def _draw(self, ctx: _Context, rng: np.random.Generator, draws: int) -> tuple[np.ndarray, np.ndarray]:
        """`draws` independent slates: (draws, n, k) candidate columns and explored flags."""
        cfg = self.config
        k, budget = cfg.slate.k, len(self.positions)
        n, c = ctx.mean.shape
        n_outside = ctx.outside.sum(axis=1)
        cap = np.minimum(budget, n_outside)
        values = self._values(ctx, rng, draws)
        if values is None:
            if cfg.epsilon_greedy:
                n_explore = rng.binomial(np.broadcast_to(cap, (draws, n)), np.broadcast_to(ctx.weight, (draws, n)))
                if cfg.explore_order == "ucb":
                    keys = np.broadcast_to(np.where(ctx.outside, self._ucb_keys(ctx), -1.0), (draws, n, c))
                else:
                    keys = np.where(ctx.outside, rng.random((draws, n, c)), -1.0)
            else:
                n_explore = np.zeros((draws, n), np.int64)
                keys = np.full((draws, n, c), -1.0)
        else:
            keys = np.where(ctx.valid, values, -np.inf)
            kk = min(k, c)
            top = np.argpartition(-keys, kk - 1, axis=2)[..., :kk] if kk < c else np.broadcast_to(np.arange(c), (draws, n, c))
            in_top_outside = np.take_along_axis(np.broadcast_to(ctx.outside, keys.shape), top, axis=2)
            in_top_outside &= np.isfinite(np.take_along_axis(keys, top, axis=2))
            n_explore = np.minimum(in_top_outside.sum(axis=2), cap)
            keys = np.where(ctx.outside, keys, -np.inf)
        b = min(max(budget, 1), c)
        part = np.argpartition(-keys, b - 1, axis=2)[..., :b] if b < c else np.broadcast_to(np.arange(c), keys.shape)
        part = np.take_along_axis(part, np.argsort(-np.take_along_axis(keys, part, axis=2), axis=2, kind="stable"), axis=2)
        ok = np.take_along_axis(keys, part, axis=2) > (-1.0 if values is None else -np.inf)
        explore_order = np.where(ok, part, -1)
        slots, explored = assemble(
            np.tile(ctx.exploit_order, (draws, 1)), explore_order.reshape(draws * n, b),
            n_explore.reshape(-1), self.positions, k)
        return slots.reshape(draws, n, k), explored.reshape(draws, n, k)

    def _ucb_keys(self, ctx: _Context) -> np.ndarray:
        """(n, C) keys in (0, 1] ordering the candidates by LinUCB value (higher first)."""
        v = np.where(ctx.valid, ctx.mean + self.config.alpha * np.sqrt(ctx.var_user + ctx.var_item), -np.inf)
        order = np.argsort(-v, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(v.shape[1])[None, :], axis=1)
        return 1.0 / (1.0 + rank)

    def _egreedy_distribution(self, ctx: _Context) -> np.ndarray:
        """Exact (n, k, C) marginals of epsilon-greedy: a binomial number of exploration slots,
        each showing a uniformly random candidate from outside the exploit top-k, or (explore
        order "ucb") the next outside candidate in LinUCB order."""
        from scipy.stats import binom

        k, budget = self.config.slate.k, len(self.positions)
        n, c = ctx.mean.shape
        n_outside = ctx.outside.sum(axis=1)
        cap = np.minimum(budget, n_outside)
        uniform = ctx.outside / np.maximum(n_outside, 1)[:, None]
        dist = np.zeros((n, k, c))
        rows = np.arange(n)[:, None]
        rank = np.full(k, k + 1)
        rank[self.positions] = np.arange(len(self.positions))
        jj = np.broadcast_to(np.arange(k), (n, k))
        for m in range(budget + 1):
            pm = np.where(m <= cap, binom.pmf(m, cap, ctx.weight), 0.0)
            if not pm.any():
                continue
            n_explore = np.minimum(m, cap)
            if self.config.explore_order == "ucb":
                keys = np.where(ctx.outside, self._ucb_keys(ctx), -1.0)
                order = np.argsort(-keys, axis=1, kind="stable")[:, :budget]
                order = np.where(np.take_along_axis(keys, order, axis=1) > 0, order, -1)
                slots, _ = assemble(ctx.exploit_order, order, n_explore, self.positions, k)
                onehot = np.zeros((n, k, c))
                ok = slots >= 0
                onehot[np.broadcast_to(rows, (n, k))[ok], jj[ok], slots[ok]] = 1.0
                dist += pm[:, None, None] * onehot
                continue
            slots, _ = assemble(ctx.exploit_order, np.zeros((n, 0), np.int64), n_explore, self.positions, k)
            is_explore = rank[None, :] < n_explore[:, None]
            onehot = is_explore[:, :, None] * uniform[:, None, :]
            exploit_slots = ~is_explore & (slots >= 0)
            onehot[np.broadcast_to(rows, (n, k))[exploit_slots], jj[exploit_slots], slots[exploit_slots]] = 1.0
            dist += pm[:, None, None] * onehot
        return dist

    # ---- public ----------------------------------------------------------------------------
    def recommend(
        self,
        shoppers: np.ndarray,
        candidates: Candidates,
        scores: np.ndarray,
        rng: np.random.Generator,
        override: float | np.ndarray | None = None,
        propensities: bool = True,
        repeat: np.ndarray | None = None,
        states: ShopperStates | None = None,
    ) -> SlateBatch:
        """One slate per request. shoppers (n,): shopper rows; scores (n, C): the exploitation
        model's scores of the candidates; override: exploration weight(s) in [0, 1] (NaN = none);
        repeat (n, C): how much each shopper was recently shown each candidate (decayed,
        examination-weighted impressions), which the calibrator learns to discount.
        propensities=False skips the Monte-Carlo propensities of randomised policies (NaN then).
        states: shopper states kept outside the policy (the service's, one row per request);
        default: the policy's own population, `self.shoppers`."""
        ctx = self._context(shoppers, candidates, scores, override, repeat, states)
        own, own_explored = self._draw(ctx, rng, 1)
        own, own_explored = own[0], own_explored[0]
        n, k = own.shape
        rows = np.arange(n)[:, None]
        n_valid = ctx.valid.sum(axis=1)
        mix = self.config.uniform_mix
        slots, explored = own, own_explored
        if mix > 0:
            # With probability `uniform_mix` the whole slate is a uniformly random draw of the
            # candidates (a logging policy with full support).
            keys = np.where(ctx.valid, rng.random(ctx.valid.shape), -1.0)
            uniform = np.argsort(-keys, axis=1, kind="stable")[:, :k]
            uniform = np.where(np.take_along_axis(keys, uniform, axis=1) >= 0, uniform, -1)
            if uniform.shape[1] < k:
                uniform = np.pad(uniform, ((0, 0), (0, k - uniform.shape[1])), constant_values=-1)
            use = rng.random(n) < mix
            slots = np.where(use[:, None], uniform, own)
            explored = np.where(use[:, None], uniform >= 0, own_explored)
        shown = slots >= 0
        col = np.maximum(slots, 0)
        # The policy's own probability of showing each shown item in its slot.
        prop = (slots == own).astype(np.float64)
        if self.config.epsilon_greedy:
            dist = self._egreedy_distribution(ctx)
            prop = dist[rows, np.arange(k)[None, :], col]
        elif self.config.monte_carlo:
            if propensities:
                matches = (slots == own).astype(np.float64)
                total = self.config.slate.propensity_samples
                for start in range(0, total, _MC_CHUNK):
                    more, _ = self._draw(ctx, rng, min(_MC_CHUNK, total - start))
                    matches += (more == slots[None]).sum(axis=0)
                prop = matches / (total + 1.0)
                if mix == 0:
                    prop = np.maximum(prop, 1.0 / (total + 1.0))
            else:
                prop = np.full((n, k), np.nan)
        prop = (1 - mix) * prop + mix / np.maximum(n_valid, 1)[:, None]
        prop = np.where(shown, np.clip(prop, 0.0, 1.0), np.nan)
        items = np.where(shown, candidates.items[rows, col], -1)
        return SlateBatch(
            shoppers=ctx.rows, items=items, columns=slots,
            scores=np.where(shown, sigmoid(ctx.mean[rows, col]), np.nan), propensities=prop, explored=explored,
            source=np.where(shown, candidates.source[rows, col], -1),
            interest=np.where(shown, candidates.interest[rows, col], -1),
            weight=ctx.weight, weight_signals=ctx.signals, policy=self.name,
            model_z=np.where(shown, ctx.z[rows, col], 0.0),
            repeat=np.where(shown, ctx.repeat[rows, col], 0.0),
        )

    def action_distribution(
        self,
        shoppers: np.ndarray,
        candidates: Candidates,
        scores: np.ndarray,
        rng: np.random.Generator,
        n_samples: int | None = None,
        override: float | np.ndarray | None = None,
        repeat: np.ndarray | None = None,
    ) -> np.ndarray:
        """(n, k, C): the probability that the policy, in its current state, shows candidate c in
        slot j. Exact for greedy, egreedy, ucb, linucb and dynamic-linucb; a Monte-Carlo mean of
        n_samples draws (default `propensity_samples`) for Thompson and softmax."""
        ctx = self._context(shoppers, candidates, scores, override, repeat)
        n, c = ctx.mean.shape
        k = self.config.slate.k
        mix = self.config.uniform_mix
        uniform = mix * ctx.valid[:, None, :] / np.maximum(ctx.valid.sum(axis=1), 1)[:, None, None]
        if self.config.epsilon_greedy:
            return np.clip((1 - mix) * self._egreedy_distribution(ctx) + uniform, 0.0, 1.0)
        draws = 1 if not self.config.monte_carlo else (n_samples or self.config.slate.propensity_samples)
        dist = np.zeros((n, k, c))
        rows = np.broadcast_to(np.arange(n)[:, None], (n, k))
        jj = np.broadcast_to(np.arange(k), (n, k))
        for start in range(0, draws, _MC_CHUNK):
            slots, _ = self._draw(ctx, rng, min(_MC_CHUNK, draws - start))
            for s in slots:
                ok = s >= 0
                np.add.at(dist, (rows[ok], jj[ok], s[ok]), 1.0)
        return np.clip((1 - mix) * dist / draws + uniform, 0.0, 1.0)

    def feedback(self, slates: SlateBatch, rewards: np.ndarray) -> None:
        """Learn from the rewards (n, k) of shown slates, each in [0, 1] (0 = skip; 1 for a click,
        cart or purchase, or whatever event rewards you chose). Empty slots are ignored."""
        rewards = np.asarray(rewards, np.float64)
        if rewards.shape != slates.items.shape:
            raise DataError(f"rewards must have the slates' shape {slates.items.shape}. Got {rewards.shape} instead.")
        shown = slates.items >= 0
        n, k = slates.items.shape
        if self.levels is not None and "level" in slates.weight_signals:
            # The level bandit learns from each request's reward at the level it used.
            self.levels.update(slates.weight_signals, np.where(shown, rewards, 0.0).sum(axis=1))
        self.observe(
            np.repeat(slates.shoppers, k)[shown.ravel()], slates.items[shown],
            np.broadcast_to(np.arange(k), (n, k))[shown], rewards[shown],
            slates.explored[shown], slates.model_z[shown], slates.repeat[shown])

    def observe(self, shoppers: np.ndarray, items: np.ndarray, slots: np.ndarray, rewards: np.ndarray,
                explored: np.ndarray, model_z: np.ndarray, repeat: np.ndarray | None = None,
                states: ShopperStates | None = None, refit_calibrator: bool = True, jointly: bool = False) -> None:
        """Learn from single feedback events (the service's path): shopper rows, item indices, the
        0-based slots they were shown in, rewards in [0, 1], exploratory flags, and the score
        feature and repeat exposure the slate carried (`model_z`, `repeat`).

        states: shopper states kept outside the policy (updated in place; the population payoff
        total follows them); default `self.shoppers`. refit_calibrator=False only buffers the
        events for the calibrator's next refit (a service observing a few events at a time).
        jointly: the events all belong to one shopper and update them in one Laplace step
        (`shoprec.explore.state.observe_jointly`) rather than one after another."""
        external = states is not None and states is not self.shoppers
        states = self.shoppers if states is None else states
        r = np.asarray(rewards, np.float64)
        if not (np.isfinite(r) & (r >= 0) & (r <= 1)).all():
            raise DataError("rewards must be numbers in [0, 1] (0 = skip, 1 = click, cart or purchase).")
        rows = np.asarray(shoppers, np.int64)
        items = np.asarray(items, np.int64)
        z = np.asarray(model_z, np.float64)
        rep = np.zeros_like(z) if repeat is None else np.asarray(repeat, np.float64)
        exam = self.exam[np.minimum(np.asarray(slots, np.int64), len(self.exam) - 1)]
        x = self.features[items]
        # Each part learns with the others held at their current values.
        g = self.calibrator.predict(z, rep)
        beta = self.items.mean[items]
        xt = np.einsum("nd,nd->n", x, states.theta[rows])
        self.calibrator.observe(z, rep, beta + xt, exam, r, refit=refit_calibrator)
        self.items.observe(items, g + xt, exam, r)
        touched = np.unique(rows)
        before = states.payoff[touched].sum(axis=0) if external else None
        if jointly and len(np.unique(rows)) == 1:
            observe_jointly(states, int(rows[0]), x, g + beta, exam, r, np.asarray(explored, bool), self.config.bandit)
        else:
            states.observe(rows, x, g + beta, exam, r, np.asarray(explored, bool), self.config.bandit)
        if external:
            self.payoff_total += states.payoff[touched].sum(axis=0) - before  # in place: policies may share it

    # ---- persistence -----------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Learned state as plain arrays (shoppers/..., items/..., calibrator/..., features)."""
        out = {"features": self.features, "payoff_total": self.payoff_total}
        if self.levels is not None:
            out.update({f"levels/{k}": v for k, v in self.levels.to_arrays().items()})
        for prefix, part in (("shoppers", self.shoppers), ("items", self.items), ("calibrator", self.calibrator)):
            out.update({f"{prefix}/{k}": v for k, v in part.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, config: PolicyConfig, arrays: dict[str, np.ndarray]) -> Policy:
        """A policy with `config` and the state saved by `to_arrays`."""
        if "features" not in arrays:
            raise DataError("Policy.from_arrays: missing the 'features' array.")
        policy = cls(config, arrays["features"], 0)

        def part(prefix):
            return {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

        policy.shoppers = ShopperStates.from_arrays(part("shoppers"))
        policy.items = ItemStats.from_arrays(part("items"))
        policy.calibrator = Calibrator.from_arrays(part("calibrator"))
        policy.payoff_total = np.asarray(arrays.get("payoff_total", np.zeros(4)), np.float64)
        if policy.levels is not None and any(k.startswith("levels/") for k in arrays):
            policy.levels = LevelBandit.from_arrays(part("levels"), config.levels)
        return policy

    def with_config(self, **changes) -> Policy:
        """A copy of this policy (same learned state) with some config fields changed."""
        return Policy.from_arrays(replace(self.config, **changes), self.to_arrays())
