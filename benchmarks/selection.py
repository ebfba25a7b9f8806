"""Embed + spectral-cluster 10,000 images per label: time and peak memory on this machine.

The pool: 10,000 images per label drawn with replacement from PneumoniaMNIST's train split
(28x28), each with a small augmentation so no two are identical: a random shift of up to
2 pixels (edge-padded) and Gaussian noise (sigma 8 grey levels). It is written as an image set
in a temp folder (not timed). Each measured configuration then runs in its own subprocess, so its
peak RSS (``resource.getrusage``) is its own:

- ``stage``: ``embed_pool`` (pixel) + ``select_tuning_set`` with ``spectral-pixel``, a tenth of
  the pool per label (1,000) and as many retrieved: the real stage, clustering both labels;
- ``solver=<name>``: spectral clustering alone of one label's 10,000 pixel embeddings with each
  eigen-solver, to justify the default.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/selection.py [--per-label 10000]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
LABELS = ["No Finding", "Unhealthy"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_pool(root: Path, per_label: int, seed: int = 0) -> None:
    from tgap.imageset import ImageSetWriter

    with np.load(DATA) as data:
        images, labels = data["train_images"], data["train_labels"][:, 0]
    rng = np.random.default_rng(seed)
    with ImageSetWriter(root, LABELS, 28, source_uri=str(DATA)) as writer:
        for c, label in enumerate(LABELS):
            members = np.flatnonzero(labels == c)
            for j, i in enumerate(rng.choice(members, size=per_label, replace=True)):
                dy, dx = rng.integers(-2, 3, size=2)
                padded = np.pad(images[i].astype(np.float32), 2, mode="edge")
                shifted = padded[2 + dy : 30 + dy, 2 + dx : 30 + dx]
                noisy = np.clip(shifted + rng.normal(0, 8, shifted.shape), 0, 255)
                writer.add(
                    noisy.round().astype(np.uint8), label, f"{c}-{j}", "bench", "pool", str(i)
                )


def worker(kind: str, pool_dir: Path, work: Path) -> dict:
    """Run one measured configuration in this (fresh) process; returns its figures."""
    from tgap.config import SelectConfig
    from tgap.embed import embed_pool, load_embeddings
    from tgap.imageset import ImageSet
    from tgap.methods import parse_method
    from tgap.select import cluster, select_tuning_set, spectral_solver

    pool = ImageSet(pool_dir)
    select = SelectConfig(pixel_side=16, default_embedder="pixel")
    base = peak_mb()
    out: dict = {"imports_mb": round(base)}
    if kind == "stage":
        t0 = time.perf_counter()
        embed_pool(pool, select, None, work / "emb")
        t1 = time.perf_counter()
        report = select_tuning_set(
            pool,
            work / "emb",
            parse_method("spectral-pixel"),
            len(pool) // 20,  # 1,000 per label for a 10,000-per-label pool
            0,
            select,
            len(pool) // 20,
            None,
            work / "tuning",
            work / "retrieved",
        )
        t2 = time.perf_counter()
        dup = sum(e["duplicates"] for e in report["labels"].values())
        out.update(embed_s=t1 - t0, select_s=t2 - t1, seconds=t2 - t0, duplicates=dup)
        out["solver"] = spectral_solver()
    else:
        solver = kind.split("=", 1)[1]
        vectors = load_embeddings(work / "emb", "pixel", pool)
        x = vectors[pool.label_indices == 1]
        import sklearn.cluster

        t0 = time.perf_counter()
        if solver == spectral_solver():
            assignment = cluster(x, 10, "spectral", select.n_neighbors, 0)
        else:
            assignment = sklearn.cluster.SpectralClustering(
                n_clusters=10,
                affinity="nearest_neighbors",
                n_neighbors=select.n_neighbors,
                eigen_solver=solver,
                assign_labels="cluster_qr",
                random_state=0,
            ).fit_predict(x)
        out.update(seconds=time.perf_counter() - t0, n=len(x))
        out["smallest_cluster"] = int(np.bincount(assignment).min())
    out["peak_mb"] = round(peak_mb())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-label", type=int, default=10_000)
    parser.add_argument("--worker", default="")
    parser.add_argument("--pool", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.pool, args.work)))
        return
    with tempfile.TemporaryDirectory(prefix="tgap-bench-select-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build_pool(tmp / "pool", args.per_label)
        print(f"built pool: {args.per_label} images per label in {time.perf_counter() - t0:.1f} s")

        def measure(kind: str) -> dict:
            cmd = [sys.executable, __file__, "--worker", kind, "--pool", str(tmp / "pool")]
            cmd += ["--work", str(tmp / "work")]
            done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if done.returncode != 0:
                raise RuntimeError(f"{kind} failed:\n{done.stderr[-2000:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])

        stage = measure("stage")
        solvers = {}
        for name in ("lobpcg", "arpack", "amg"):
            if name == "amg" and importlib.util.find_spec("pyamg") is None:
                solvers[name] = {"error": "pyamg not installed"}
                continue
            try:
                solvers[name] = measure(f"solver={name}")
            except RuntimeError as exc:
                solvers[name] = {"error": str(exc).strip().splitlines()[-1]}

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"\n{args.per_label} images per label x 2 labels, {os.cpu_count()} cores, OMP_NUM_THREADS={threads}"
    )
    print(f"{'what':<44}{'seconds':>9}{'peak MB':>9}")
    print(f"{'embed_pool (pixel 16x16, 2 labels)':<44}{stage['embed_s']:>9.1f}")
    print(f"{'select spectral-pixel (2 labels) + retrieval':<44}{stage['select_s']:>9.1f}")
    print(
        f"{'stage total (' + stage['solver'] + ')':<44}{stage['seconds']:>9.1f}{stage['peak_mb']:>9}"
    )
    print(f"{'  of which imports (torch, sklearn)':<44}{'':>9}{stage['imports_mb']:>9}")
    for name, r in solvers.items():
        label = f"spectral, 1 label, eigen_solver={name}"
        if "error" in r:
            print(f"{label:<44}  not run: {r['error'][:60]}")
        else:
            print(f"{label:<44}{r['seconds']:>9.1f}{r['peak_mb']:>9}")
    print(
        f"RESULT selection seconds={stage['seconds']:.1f} peak_mb={stage['peak_mb']} "
        f"per_label={args.per_label} solver={stage['solver']} duplicates={stage['duplicates']}"
    )


if __name__ == "__main__":
    main()
