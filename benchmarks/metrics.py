"""Cost of the full metric set of one grid cell on 10,000 + 10,000 embeddings.

Fréchet distance, KID (100 subsets of 1,000), precision/recall/density/coverage (k = 5),
memorisation (10,000 synthetic vs a 1,000-image tuning set), AUROC with a 1,000-resample
bootstrap CI and DeLong's variance (10,000 test images). Random Gaussian embeddings, d = 128 (the
small CNN's feature width) by default. Run from the repository root:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/metrics.py [--n 10000] [--dim 128]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from tgap import metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--tuning", type=int, default=1_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    real = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    fake = rng.normal(0.1, 1.1, size=(args.n, args.dim)).astype(np.float32)
    tuning = rng.normal(size=(args.tuning, args.dim)).astype(np.float32)
    y = rng.integers(0, 2, args.n)
    scores = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)

    timings = {}
    total = time.perf_counter()

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        return out

    timed("frechet", lambda: metrics.frechet_distance(real, fake))
    timed("kid", lambda: metrics.kid(real, fake))
    timed("prdc", lambda: metrics.prdc(real, fake, k=5))
    timed("memorisation", lambda: metrics.memorisation(fake, tuning))
    timed("auroc + ci", lambda: metrics.classification_metrics(y, scores, ["a", "b"]))
    timed("delong", lambda: metrics.delong(y, scores))
    seconds = time.perf_counter() - total
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"{args.n} real + {args.n} synthetic embeddings, d={args.dim}, tuning {args.tuning}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"{'metric':<14} {'seconds':>8}")
    for name, value in timings.items():
        print(f"{name:<14} {value:>8.2f}")
    print(f"{'total':<14} {seconds:>8.2f}   peak RSS {peak_mb:.0f} MB")
    print(f"RESULT metrics seconds={seconds:.2f} peak_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
