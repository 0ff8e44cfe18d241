"""How long 100,000 draws of exact discrete noise take, against numpy's float samplers.

    python benchmarks/privacy_discrete.py [--n 100000] [--repeat 3]

Times, for the noise dp_item_counts adds to a 100,000-item count vector (c = 10 items per
shopper, epsilon 1, delta 1e-6: discrete Laplace scale 10, discrete Gaussian sigma 14.3):

* float: numpy's seeded Laplace / normal (the "float" sampler, the baseline);
* discrete-seeded: `shoprec.privacy.discrete` driven by a seeded numpy Generator;
* discrete (secure): the same with `secrets.token_bytes`, what sampler="discrete" uses;
* opendp: OpenDP's exact integer mechanisms (`make_laplace` / `make_gaussian` on an integer
  vector), when `opendp` is importable (it is not a shoprec dependency).

Time is the best of --repeat runs; ratios are against the float baseline of the same process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table

from shoprec.privacy.discrete import (
    SecureIntegers,
    SeededIntegers,
    calibrate_discrete_gaussian,
    calibrate_discrete_laplace,
    discrete_gaussian,
    discrete_laplace,
)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def opendp_samplers(n: int, scale: float, sigma: float):
    try:
        import opendp.prelude as dp
    except ImportError:
        return None
    dp.enable_features("contrib")
    domain = dp.vector_domain(dp.atom_domain(T=int), size=n)
    laplace = dp.m.make_laplace(domain, dp.l1_distance(T=int), scale=scale)
    gaussian = dp.m.make_gaussian(domain, dp.l2_distance(T=int), scale=sigma)
    zeros = [0] * n
    return (lambda: laplace(zeros)), (lambda: gaussian(zeros))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    n, c = args.n, 10
    lap = calibrate_discrete_laplace(1.0, c)
    gauss = calibrate_discrete_gaussian(1.0, 1e-6, c)
    scale, sigma = float(lap.scale), float(gauss.sigma2) ** 0.5
    rng = np.random.default_rng(0)
    seeded, secure = SeededIntegers(0), SecureIntegers()
    runs = {
        "float": (lambda: rng.laplace(0, scale, n), lambda: rng.normal(0, sigma, n)),
        "discrete-seeded": (lambda: discrete_laplace(lap.scale, n, seeded), lambda: discrete_gaussian(gauss.sigma2, n, seeded)),
        "discrete (secure)": (lambda: discrete_laplace(lap.scale, n, secure), lambda: discrete_gaussian(gauss.sigma2, n, secure)),
    }
    extra = opendp_samplers(n, scale, sigma)
    if extra is not None:
        runs["opendp 0.16 (secure)"] = extra
    rows, base = [], {}
    for name, (laplace_fn, gaussian_fn) in runs.items():
        t_lap, t_gauss = best(laplace_fn, args.repeat), best(gaussian_fn, args.repeat)
        base.setdefault("lap", t_lap)
        base.setdefault("gauss", t_gauss)
        rows.append({
            "sampler": name, "Laplace s": t_lap, "x float": t_lap / base["lap"],
            "Gaussian s": t_gauss, "x float ": t_gauss / base["gauss"],
        })
    print(f"{n:,} draws; Laplace scale {scale:g} (epsilon {lap.epsilon:.6f}), Gaussian sigma {sigma:.3f} "
          f"(epsilon 1, delta 1e-6, {gauss.bound}); best of {args.repeat}")
    print(table(rows, ["sampler", "Laplace s", "x float", "Gaussian s", "x float "]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
