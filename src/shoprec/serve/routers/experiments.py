"""Online A/B experiments: /v1/experiments.

While an experiment runs, every slate for a stored shopper is served under the variant that a
hash of experiment id and pseudonym assigns them (`Service.assign_variant`), and its impressions
record experiment and variant; events that carry the slate's impression id are its outcomes.
The report gives per variant the shoppers, slates, click-through and purchases per slate with
95% intervals (delta method over shoppers, the unit of randomisation), each variant against the
control (the first one) with a z-test, and the sample-ratio-mismatch check.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path

from shoprec.evaluate.ab import compare_ratios, ratio_estimate, sample_ratio_mismatch
from shoprec.serve.http_errors import ERROR_RESPONSES, error_responses
from shoprec.serve.schemas import (
    Comparison,
    ExperimentIn,
    ExperimentReport,
    Interval,
    VariantReport,
)
from shoprec.serve.service import Admin, DashboardReader, Service, ServiceDep

ExperimentPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]

router = APIRouter(prefix="/v1/experiments", tags=["experiments"], responses=ERROR_RESPONSES)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _interval(estimate) -> Interval:
    return Interval(value=_finite(estimate.value), se=_finite(estimate.se), low=_finite(estimate.low),
                    high=_finite(estimate.high))


def report(service: Service, experiment_id: str) -> ExperimentReport:
    experiment = service.store.experiment(experiment_id)
    rows = service.store.experiment_outcomes(experiment_id)
    per_variant: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for variant, _shopper, slates, clicked, purchases in rows:
        per_variant[variant].append((slates, clicked, purchases))
    variants, estimates = [], {}
    for v in experiment["variants"]:
        data = np.asarray(per_variant.get(v["name"], []), dtype=np.float64).reshape(-1, 3)
        ctr = ratio_estimate(data[:, 1], data[:, 0])
        pps = ratio_estimate(data[:, 2], data[:, 0])
        estimates[v["name"]] = {"click_through": ctr, "purchases_per_slate": pps}
        variants.append(VariantReport(name=v["name"], share=v["share"], exploration=v.get("exploration"),
                                      shoppers=len(data), slates=int(data[:, 0].sum()),
                                      click_through=_interval(ctr), purchases_per_slate=_interval(pps)))
    control = experiment["variants"][0]["name"]
    comparisons = [
        Comparison(variant=v.name, metric=metric,
                   **{k: _finite(x) for k, x in compare_ratios(estimates[control][metric],
                                                              estimates[v.name][metric]).items()})
        for v in variants[1:] for metric in ("click_through", "purchases_per_slate")
    ]
    srm = sample_ratio_mismatch([v.shoppers for v in variants], [v.share for v in variants])
    return ExperimentReport(
        id=experiment_id, started_at=experiment["started_at"], stopped_at=experiment["stopped_at"], control=control,
        variants=variants, comparisons=comparisons,
        sample_ratio={k: (_finite(x) if isinstance(x, float) else x) for k, x in srm.items()},
    )


@router.post("", response_model=ExperimentReport, status_code=201, summary="Start an A/B experiment",
             responses=error_responses(409))
def start(req: ExperimentIn, service: ServiceDep, _: Admin) -> ExperimentReport:
    """Shoppers are split by a hash of their pseudonym in proportion to the variants' weights;
    the first variant is the control. One experiment runs at a time (409 otherwise); worker
    processes pick it up within a few seconds."""
    service.store.create_experiment(req.id, req.variant_list())
    service.forget_experiment_cache()
    return report(service, req.id)


@router.post("/{experiment_id}/stop", response_model=ExperimentReport, summary="Stop an A/B experiment",
             responses=error_responses(404))
def stop(service: ServiceDep, _: Admin, experiment_id: ExperimentPath) -> ExperimentReport:
    service.store.stop_experiment(experiment_id)
    service.forget_experiment_cache()
    return report(service, experiment_id)


@router.get("/{experiment_id}", response_model=ExperimentReport, summary="An A/B experiment's results",
            responses=error_responses(404))
def get(service: ServiceDep, _: DashboardReader, experiment_id: ExperimentPath) -> ExperimentReport:
    return report(service, experiment_id)


@router.get("", response_model=list[ExperimentReport], summary="Recent A/B experiments with their results")
def list_experiments(service: ServiceDep, _: DashboardReader) -> list[ExperimentReport]:
    return [report(service, e["experiment_id"]) for e in service.store.experiments(10)]
