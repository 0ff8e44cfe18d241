"""Simulated stores calibrated on real logs, for comparing exploration policies and for checking
off-policy estimators against a known truth.

- `store`: `StoreConfig` and `SimulatedStore` (hidden true preferences, position bias, drift,
  fatigue, arriving items, and the exploitation model a policy is allowed to know).
- `run`: `simulate` one policy in a store, round by round, with an optional impression log.
- `calibrate`: fitting a store's knobs to a real log (engagement, repeat rate, arrivals, drift)
  and writing them to a JSON file.
- `validation`: `off_policy_validation`, the estimators of `shoprec.evaluate.ope` against truth.
- `experiment`: `run_experiment`, several policies over several seeds with 95% intervals.
- `report`: the tables and plots of an experiment.

This package sits above `models` and `explore`: it fits the store's truth with a model and runs
the policies of `shoprec.explore`.
"""

from shoprec.simulation.experiment import Experiment, run_experiment
from shoprec.simulation.run import ImpressionLog, SimulationResult, fresh_policy, simulate
from shoprec.simulation.store import SimulatedStore, StoreConfig
from shoprec.simulation.validation import off_policy_validation

__all__ = [
    "Experiment",
    "ImpressionLog",
    "SimulatedStore",
    "SimulationResult",
    "StoreConfig",
    "fresh_policy",
    "off_policy_validation",
    "run_experiment",
    "simulate",
]
