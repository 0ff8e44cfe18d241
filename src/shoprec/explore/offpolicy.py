"""Off-policy evaluation of exploration policies on the service's own log of slates.

The service logs every shown item with its slot and the logging policy's propensity (the
probability of showing that item in that slot), and `shoprec.evaluate.ope` turns such a log into
IPS, SNIPS, DM and DR estimates once it has the target policy's probability of each logged
action. This module computes those probabilities for the targets that the log can answer for:

- `logged`: the logging policy itself (weight 1 everywhere). IPS equals the observed mean
  reward per slate; a sanity check of the pipeline, and the baseline to compare others with.
- `greedy`: no exploration, the same learner in the same state. Every slate is assembled by
  `shoprec.explore.slate.assemble`: exploit slots show the exploit list *in order*, skipping the
  exploration slots, so an exploit slot after an exploration slot shows the exploit list's item
  one rank higher than its slot. Greedy shows exploit rank j in slot j. Its probability of the
  logged item in slot j is therefore 1 when neither slot j nor any slot above it explored, and 0
  otherwise (an explored slot shows an item outside the exploit top-k; a shifted exploit slot
  shows another rank). This is exact for every logging policy the service runs, not an
  approximation, and needs no knowledge of the exploration budget.
- `fixed:EPS`: epsilon-greedy at a fixed rate EPS per budget slot, choosing exploratory items the
  way the logging policy did. Only computable on slates logged by an epsilon-greedy policy (the
  service's "fixed" rule, label `egreedy:...`, its default "fitted" rule, label `fitted`, whose
  weight varies per request but whose slots explore the same way, and the "learned" rule, label
  `learned`): their
  number of exploration slots is Binomial(budget, w), w the logged `weight`, and given that an
  exploration slot explores, which item it shows does not depend on w. So in an explored slot
  the weight is P_EPS(slot explores) / P_w(slot explores), and in an exploit slot the target
  probability is P_EPS(slot shows that exploit rank), both worked out over the binomial. A
  dynamic (Thompson or LinUCB) log gives no such factorisation (its number of exploration slots
  and their items come from the same posterior draw), and the probability that a uniform
  explorer shows an item needs the number of candidates outside the exploit top-k, which is not
  logged: `fixed:EPS` refuses those logs. The binomial's n is min(explore budget, candidates
  outside the exploit top-k); the log holds neither, so the budget is given (the service's
  setting) and n is taken per slate as the largest value that reproduces the slate's logged
  propensities (a slate served at weight 0 cannot tell, and gets the budget). No fitting n (the
  budget given is not the service's) is an error naming the slate, not a silent bias.

What the log cannot answer: a target that ranks the candidates differently (another model, other
diversity), since only the shown items and not the candidate list are logged, and the long-run
value of a policy that would have learned from its own feedback: every estimate is the value of
the target acting on the learner *as it was when each slate was served*.

Items placed by rule (a new item in a liked category, logged without a score feature `z`) are the
same under every exploration policy: weight 1. DM and DR use `RewardModel` (a logistic
regression with a per-slot intercept) on the logit of the logged score (the learner's predicted
click rate) and the explored flag. Where a target shows an item the slate did not log, the
reward model stands in: an exploration slot gets the mean prediction over the log's explored
items (a draw of what exploration shows, exact in expectation for uniform epsilon-greedy logs),
and an exploit rank pushed off the logged slate by exploration gets the prediction of the
slate's last exploit item (ranked below it, its score is at most that item's, so this leans
high). IPS and SNIPS use neither approximation. The bootstrap intervals hold the reward model
fixed: DM's interval is the spread over slates of the model's predictions, not the model's error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shoprec.errors import ConfigError, DataError, EmptyDataError, check_choice, check_float
from shoprec.evaluate.ope import Estimate, RewardModel, direct_method, doubly_robust, ips, snips
from shoprec.explore.online import OnlineConfig
from shoprec.explore.slate import explore_positions

__all__ = [
    "SUPPORT_WARNING",
    "TARGETS",
    "LoggedSlates",
    "OffPolicyReport",
    "TargetPolicy",
    "evaluate_logged",
    "is_epsilon_greedy",
    "target_probabilities",
]

TARGETS: tuple[str, ...] = ("logged", "greedy", "fixed:EPS")
SUPPORT_WARNING = 0.5
"""A share of logged slots with zero target probability at or above this gets a warning: the
estimate then rests on the few slates where the target agreed with the log."""
PROPENSITY_TOLERANCE = 1e-6


def is_epsilon_greedy(label: str) -> bool:
    """Whether a logged `policy` label is an epsilon-greedy rule (fixed `egreedy:EPS`, `fitted`
    or `learned`)."""
    return explores_uniformly(label) or label == "learned"


def explores_uniformly(label: str) -> bool:
    """Whether a logged `policy` label's exploration slots draw uniformly from the candidates
    outside the exploit top-k (`egreedy:EPS` and `fitted`; `learned` fills them in LinUCB order)."""
    return label.startswith("egreedy") or label == "fitted"


@dataclass(frozen=True)
class TargetPolicy:
    """A policy to evaluate on the log: "logged", "greedy" or "fixed" (with `epsilon` in [0, 1])."""

    kind: str
    epsilon: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> TargetPolicy:
        """'logged', 'greedy' or 'fixed:EPS' (EPS a number in [0, 1])."""
        kind, sep, value = str(spec).strip().partition(":")
        if kind in ("logged", "greedy") and not sep:
            return cls(kind)
        if kind == "fixed":
            try:
                eps = float(value)
            except ValueError:
                raise ConfigError(f"The target policy {spec!r} needs a number EPS in [0, 1] after 'fixed:'. "
                                  f"Got {value!r} instead.") from None
            if not 0.0 <= eps <= 1.0:
                raise ConfigError(f"The target policy {spec!r} needs a number EPS in [0, 1] after 'fixed:'. "
                                  f"Got {eps} instead.")
            return cls("fixed", eps)
        raise ConfigError(f"Unknown target policy {spec!r}; the log can evaluate {list(TARGETS)}.")

    @property
    def name(self) -> str:
        return f"fixed:{self.epsilon:g}" if self.kind == "fixed" else self.kind


@dataclass(frozen=True)
class LoggedSlates:
    """n logged slates, padded to k slots; every array (n, k) unless said otherwise.

    shown: the slot holds a logged item (slates are filled from slot 0). propensity: the logging
    policy's probability of that item in that slot (1 where not shown). explored: exploratory.
    rule: placed by a rule, not by the policy. score: the learner's predicted click rate. reward:
    0 or 1. weight (n,): the slate's exploration weight (NaN where not logged). policy (n,): the
    logging policy's label. shopper (n,) or None: who was shown each slate (the intervals then
    resample shoppers, whose slates are not independent of each other).
    """

    shown: np.ndarray
    propensity: np.ndarray
    explored: np.ndarray
    rule: np.ndarray
    score: np.ndarray
    reward: np.ndarray
    weight: np.ndarray
    policy: np.ndarray
    shopper: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.shown)
        if len(shape) != 2:
            raise DataError(f"LoggedSlates arrays must be (slates, slots). Got shown of shape {shape} instead.")
        for name in ("propensity", "explored", "rule", "score", "reward"):
            if np.shape(getattr(self, name)) != shape:
                raise DataError(f"LoggedSlates.{name} must have shape {shape}. Got {np.shape(getattr(self, name))}.")
        for name in ("weight", "policy") + (("shopper",) if self.shopper is not None else ()):
            if np.shape(getattr(self, name)) != shape[:1]:
                raise DataError(f"LoggedSlates.{name} must have one entry per slate ({shape[0]}).")
        p = np.where(self.shown, self.propensity, 1.0)
        if not (np.isfinite(p) & (p > 0) & (p <= 1 + 1e-9)).all():
            bad = np.flatnonzero(~(np.isfinite(p) & (p > 0) & (p <= 1 + 1e-9)).any(axis=1))[0]
            raise DataError(f"Logged propensities must be in (0, 1]; slate {int(bad)} has {self.propensity[bad].tolist()}.")
        if len(shape) and shape[1] and (np.diff(self.shown.astype(np.int8), axis=1) > 0).any():
            raise DataError("Each logged slate must fill its slots from slot 0 without gaps.")

    def __len__(self) -> int:
        return len(self.shown)

    @property
    def n_slots(self) -> int:
        return int(self.shown.sum())


@dataclass
class OffPolicyReport:
    """One target's estimates on one log, with the diagnostics of its weights."""

    target: str
    estimates: dict[str, Estimate | None]
    n_slates: int
    n_slots: int
    observed: float  # mean reward per slate in the log
    ess: float  # effective sample size of the slot weights, (sum w)^2 / sum w^2
    zero_share: float  # share of logged slots the target would never show as logged
    max_weight: float
    weights: np.ndarray = field(repr=False)  # (n, k): target / logging probability of each logged action
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "target": self.target, "n_slates": self.n_slates, "n_slots": self.n_slots, "observed": self.observed,
            "estimates": {k: (None if v is None else v.as_dict()) for k, v in self.estimates.items()},
            "ess": self.ess, "ess_share": self.ess / self.n_slots if self.n_slots else 0.0,
            "zero_target_share": self.zero_share, "max_weight": self.max_weight, "warnings": list(self.warnings),
        }


# ---- target probabilities -------------------------------------------------------------------
def _layout(k: int, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the service's slates of k slots: the exploration positions' patterns. Returns
    explores (m+1, k) bool, whether slot j explores when m slots do; exploit_rank (m+1, k), the
    exploit rank slot j shows then; and the positions in the order they are used."""
    slate = OnlineConfig(explore_budget=budget).policy_config(k).slate  # the service's own layout
    positions = explore_positions(k, slate.explore_budget, slate.first_explore_slot)
    rank_of_slot = np.full(k, k + 1)
    rank_of_slot[positions] = np.arange(len(positions))
    m = np.arange(len(positions) + 1)[:, None]
    explores = rank_of_slot[None, :] < m
    exploit_rank = np.arange(k)[None, :] - np.cumsum(explores, axis=1)
    return explores, exploit_rank, positions


def _pattern_probabilities(eps: np.ndarray, k: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Epsilon-greedy at rates eps (n,) on slates of k slots: P(slot j explores) (n, k) and
    P(slot j shows exploit rank r) (n, k, k)."""
    from scipy.stats import binom

    explores, exploit_rank, positions = _layout(k, budget)
    cap = len(positions)
    pmf = binom.pmf(np.arange(cap + 1)[None, :], cap, np.asarray(eps, np.float64)[:, None])
    p_explore = pmf @ explores
    rank_onehot = (exploit_rank[:, :, None] == np.arange(k)[None, None, :]) & ~explores[:, :, None]
    p_rank = np.einsum("nm,mjr->njr", pmf, rank_onehot.astype(np.float64))
    return p_explore, p_rank


def _logged_ranks(log: LoggedSlates) -> np.ndarray:
    """The exploit rank each logged exploit slot shows: its slot minus the explored slots above it."""
    explored = log.explored & log.shown
    return np.arange(log.shown.shape[1])[None, :] - np.cumsum(explored, axis=1)


def _targets(log: LoggedSlates, target: TargetPolicy, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target probability of each logged action (n, k), P(target explores slot j) (n, k),
    P(target shows exploit rank r in slot j) (n, k, k)). Not used for `logged`."""
    n, k = log.shown.shape
    explores = target.kind == "fixed" and target.epsilon > 0
    if explores:
        not_eg = sorted({str(p) for p in log.policy if not is_epsilon_greedy(str(p))})
        if not_eg:
            raise DataError(
                f"fixed:EPS can only be evaluated on slates of an epsilon-greedy policy (labels 'egreedy:...', "
                f"'fitted' or 'learned'); the log also holds slates of {not_eg}. Select them with --policy-logged, or "
                "evaluate 'greedy', which every log supports.")
        if np.isnan(np.asarray(log.weight, np.float64)).any():
            raise DataError("fixed:EPS needs each slate's logged exploration weight; some slates have none.")
    ranks = np.clip(_logged_ranks(log), 0, k - 1)
    p_logged = np.zeros((n, k))
    p_explore = np.zeros((n, k))
    p_rank = np.zeros((n, k, k))
    sizes = log.shown.sum(axis=1)
    for size in np.unique(sizes[sizes > 0]):  # a handful of slate sizes and caps: vectorised within each
        s = int(size)
        group = np.flatnonzero(sizes == size)
        # Greedy never explores, whatever the cap: cap 0 gives it exploit rank j in slot j.
        caps = _caps(log, group, s, budget) if explores else np.zeros(len(group), np.int64)
        for cap in np.unique(caps):
            rows = group[caps == cap]
            cols = np.arange(s)
            pe, pr = _pattern_probabilities(np.full(len(rows), target.epsilon if explores else 0.0), s, int(cap))
            p_explore[np.ix_(rows, cols)] = pe
            p_rank[np.ix_(rows, cols, cols)] = pr
            exploit_p = np.take_along_axis(pr, ranks[rows, :s, None], axis=2)[:, :, 0]
            explore_p = np.zeros_like(exploit_p)  # greedy never shows an item outside the exploit top-k
            if explores:
                pe_log, _ = _pattern_probabilities(np.asarray(log.weight, np.float64)[rows], s, int(cap))
                # The item an exploration slot shows, given that it explores, is the logging policy's
                # choice: only the probability of exploring that slot changes.
                safe = np.where(pe_log > 0, pe_log, 1.0)
                explore_p = np.where(pe_log > 0, pe * log.propensity[rows, :s] / safe, 0.0)
            p_logged[rows, :s] = np.where(log.explored[rows, :s], explore_p, exploit_p)
    policy_slot = log.shown & ~log.rule
    p_logged = np.where(log.rule & log.shown, log.propensity, np.where(policy_slot, p_logged, 0.0))
    return np.clip(p_logged, 0.0, 1.0), p_explore, p_rank


def _caps(log: LoggedSlates, rows: np.ndarray, s: int, budget: int) -> np.ndarray:
    """Per slate of s slots, the number of slots that could explore: min(budget, candidates
    outside the exploit top-k), the n of its binomial. The log does not hold the candidates, so
    the cap is the largest in [0, budget] that reproduces the slate's logged propensities: the
    exploit slots' exactly; an explored slot's as P(slot explores) / outside candidates (uniform
    order, `egreedy` and `fitted`: exactly with cap outside candidates when cap < budget, at most with cap
    when cap = budget) or as P(slot explores) (LinUCB order, `learned`). None fitting is an error:
    the budget given is not the service's."""
    b = len(_layout(s, budget)[2])
    slot = log.shown[rows, :s] & ~log.rule[rows, :s]
    explored = log.explored[rows, :s] & slot
    exploit = slot & ~explored
    p0 = log.propensity[rows, :s]
    ranks = np.clip(_logged_ranks(log)[rows, :s], 0, s - 1)
    labels, label_of = np.unique(log.policy[rows].astype(str), return_inverse=True)
    uniform = np.array([explores_uniformly(str(label)) for label in labels], bool)[label_of][:, None]
    weight = np.asarray(log.weight, np.float64)[rows]
    fits = np.zeros((len(rows), b + 1), bool)
    tol = PROPENSITY_TOLERANCE
    for cap in range(b + 1):
        pe, pr = _pattern_probabilities(weight, s, cap)
        expected = np.take_along_axis(pr, ranks[:, :, None], axis=2)[:, :, 0]
        per_item = pe / max(cap, 1)
        uniform_ok = np.abs(per_item - p0) <= tol if cap < b else p0 <= per_item + tol
        explored_ok = (pe > 0) & np.where(uniform, uniform_ok, np.abs(pe - p0) <= tol)
        ok = np.where(exploit, np.abs(expected - p0) <= tol, True) & np.where(explored, explored_ok, True)
        fits[:, cap] = ok.all(axis=1)
    if not fits.any(axis=1).all():
        i = int(np.flatnonzero(~fits.any(axis=1))[0])
        raise DataError(
            f"The logged propensities of slate {int(rows[i])} ({s} slots, weight {weight[i]:g}: "
            f"{np.round(p0[i], 6).tolist()}, explored {explored[i].astype(int).tolist()}) do not follow epsilon-greedy "
            f"with an explore budget of {budget}; pass the service's explore budget (--explore-budget, "
            "SHOPREC_EXPLORE_BUDGET), or evaluate 'greedy', which does not depend on it.")
    return b - np.argmax(fits[:, ::-1], axis=1)


def target_probabilities(log: LoggedSlates, target: TargetPolicy, explore_budget: int = 3) -> np.ndarray:
    """(n, k): the target's probability of showing each logged item in its logged slot (0 where
    nothing was shown). explore_budget: the service's most exploratory slots per slate."""
    if target.kind == "logged":
        return np.where(log.shown, log.propensity, 0.0)
    return _targets(log, target, explore_budget)[0]


# ---- the reward model and the direct method -------------------------------------------------
def _features(log: LoggedSlates) -> np.ndarray:
    """(n, k, 2): logit of the learner's predicted click rate, and the explored flag."""
    p = np.clip(np.nan_to_num(np.asarray(log.score, np.float64), nan=0.5), 1e-6, 1 - 1e-6)
    return np.stack([np.log(p / (1 - p)), log.explored.astype(np.float64)], axis=-1)


def _dm_inputs(log: LoggedSlates, target: TargetPolicy, budget: int, model: RewardModel,
               p_logged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """target_dist and reward_hat (n, k, k + 2) over the slate's logged items, plus an
    exploration stand-in (column k) and a stand-in for exploit ranks the slate did not show
    (column k + 1); see the module docstring."""
    n, k = log.shown.shape
    feats = _features(log)
    hat_items = np.where(log.shown[:, :, None], model.predict(feats), 0.0)  # (n, item column, slot)
    hat = np.zeros((n, k, k + 2))
    hat[:, :, :k] = np.transpose(hat_items, (0, 2, 1))
    explored_rows = log.shown & log.explored
    if explored_rows.any():
        hat[:, :, k] = model.predict(feats[explored_rows]).mean(axis=0)[None, :]
    else:  # no exploration logged: an average item, marked explored
        stand_in = feats[log.shown].copy()
        stand_in[:, 1] = 1.0
        hat[:, :, k] = model.predict(stand_in).mean(axis=0)[None, :]
    dist = np.zeros((n, k, k + 2))
    jj = np.arange(k)
    if target.kind == "logged":
        # The logged item is one draw of the logging policy in its slot: its prediction stands for
        # the policy's expected reward there, the rest of the slot's mass included.
        hat[:, jj, k] = hat[:, jj, jj]
        dist[:, jj, jj] = np.where(log.shown, log.propensity, 0.0)
        dist[:, jj, k] = np.where(log.shown, 1.0 - log.propensity, 0.0)
        return dist, hat
    _, p_explore, p_rank = _targets(log, target, budget)
    exploit = log.shown & ~log.explored & ~log.rule
    ranks = _logged_ranks(log)
    column_of_rank = np.full((n, k), -1)
    i, j = np.nonzero(exploit)
    column_of_rank[i, ranks[i, j]] = j
    last_exploit = np.where(exploit.any(axis=1), k - 1 - np.argmax(exploit[:, ::-1], axis=1), -1)
    hat[:, :, k + 1] = np.where((last_exploit >= 0)[:, None],
                                hat[np.arange(n)[:, None], jj[None, :], np.maximum(last_exploit, 0)[:, None]],
                                hat[:, :, k])
    to_column = np.zeros((n, k, k + 2))  # exploit rank -> the column that shows it (or the stand-in)
    r_i, r_r = np.nonzero(column_of_rank >= 0)
    to_column[r_i, r_r, column_of_rank[r_i, r_r]] = 1.0
    r_i, r_r = np.nonzero(column_of_rank < 0)
    to_column[r_i, r_r, k + 1] = 1.0
    dist = np.einsum("njr,nrc->njc", p_rank, to_column)
    explored = log.shown & log.explored
    dist[:, jj, jj] += np.where(explored, p_logged, 0.0)
    dist[:, jj, k] = np.maximum(p_explore - np.where(explored, p_logged, 0.0), 0.0)
    rule = log.shown & log.rule
    dist[rule] = 0.0
    ri, rj = np.nonzero(rule)
    dist[ri, rj, rj] = 1.0
    dist[~log.shown] = 0.0
    return np.clip(dist, 0.0, 1.0), hat


# ---- the report -----------------------------------------------------------------------------
def evaluate_logged(log: LoggedSlates, target: TargetPolicy, explore_budget: int = 3, *,
                    n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                    l2: float = 1.0, resample: str = "shoppers") -> OffPolicyReport:
    """IPS, SNIPS, DM and DR estimates of `target`'s reward per slate on the logged slates, with
    percentile bootstrap intervals and the diagnostics of the weights.

    resample: "shoppers" (each shopper's slates resampled together, where the log names the
    shoppers: a shopper's slates share their tastes, and resampling them one by one makes the
    interval too narrow) or "slates" (each slate on its own).

    explore_budget: the service's explore budget (it fixes which slots can explore; only
    `fixed:EPS` depends on it). l2: the reward model's regularisation. DM and DR are None (with
    a warning) when the log has no reward or nothing but rewards, since no reward model can be
    fitted then."""
    if not isinstance(target, TargetPolicy):
        raise ConfigError(f"evaluate_logged expects a TargetPolicy. Got {type(target).__name__} instead.")
    check_float("level", level, 0.5, 0.999, "evaluate_logged")
    if len(log) == 0 or log.n_slots == 0:
        raise EmptyDataError("The log holds no slates to evaluate on.")
    shown = log.shown
    p0 = np.where(shown, log.propensity, 1.0)
    reward = np.where(shown, log.reward, 0.0)
    p_target = target_probabilities(log, target, explore_budget)
    check_choice("resample", resample, ("shoppers", "slates"), "evaluate_logged")
    groups = log.shopper if resample == "shoppers" else None
    boot = {"n_bootstrap": n_bootstrap, "level": level, "seed": seed, "groups": groups}
    estimates: dict[str, Estimate | None] = {
        "ips": ips(reward, p0, p_target, **boot),
        "snips": snips(reward, p0, p_target, **boot),
    }
    warnings: list[str] = []
    k = shown.shape[1]
    try:
        model = RewardModel(l2).fit(_features(log)[shown], np.nonzero(shown)[1], reward[shown], k)
    except DataError as exc:
        estimates.update(dm=None, dr=None)
        warnings.append(f"dm and dr skipped: {exc}")
    else:
        dist, hat = _dm_inputs(log, target, explore_budget, model, p_target)
        actions = np.broadcast_to(np.arange(k), shown.shape)
        estimates["dm"] = direct_method(dist, hat, **boot)
        estimates["dr"] = doubly_robust(reward, actions, p0, dist, hat, **boot)
    w = (p_target / p0)[shown]
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0
    zero_share = float((w == 0).mean())
    if zero_share >= SUPPORT_WARNING:
        warnings.append(
            f"{zero_share:.0%} of the logged slots have zero probability under {target.name}: the estimates rest on "
            f"{int((w > 0).sum())} slots (effective sample size {ess:.0f}); widen the window or log more.")
    return OffPolicyReport(target.name, estimates, len(log), log.n_slots, float(reward.sum(axis=1).mean()), ess,
                           zero_share, float(w.max()), np.where(shown, p_target / p0, 0.0), warnings)
