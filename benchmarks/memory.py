"""Host memory of classifier training and supplementation against what `tgap plan` assumes.

    .venv/bin/python benchmarks/memory.py [--n 1000] [--data-resolution 256] [--resolution 128]

`tgap plan`'s mem_gb column prices a classifier-training task at 2 n side² bytes (the set read
at the classifier's resolution in chunks, fit's training and validation copies; batches turn
into floats as they are drawn) and a supplementation task at 3 (real + synthetic) side². This
measures each stage's peak RSS (``VmHWM``, a subprocess per measurement) at N and 4N images per
label on real PneumoniaMNIST images stored at ``--data-resolution`` and trained at
``--resolution``; the growth from N to 4N cancels the runtime (Python, torch). Ends with
``RESULT memory train_measured_over_planned=... supplementation_measured_over_planned=...``:
near 1 means the plan's formula holds, well below 1 that it overestimates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import LABELS, image_set, peak_rss_mb  # noqa: E402  (the same real-image sets)

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


def worker(stage: str, paths: dict[str, str], resolution: int) -> dict:
    from tgap.classify import train_classifier
    from tgap.config import ClassifierConfig
    from tgap.evaluation import supplementation_curve
    from tgap.imageset import ImageSet

    clf = ClassifierConfig(resolution=resolution, epochs=1, batch_size=64, patience=1, device="cpu")
    if stage == "train":
        train_classifier(ImageSet(paths["real"]), clf, 0, None, paths["out"])
    elif stage == "supplementation":
        supplementation_curve(
            ImageSet(paths["real"]), ImageSet(paths["synthetic"]), ImageSet(paths["test"]), clf,
            [1.0], None, 0, paths["out"], bootstrap_resamples=10,
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    return {"stage": stage, "peak_rss_mb": peak_rss_mb()}


def measure(stage: str, paths: dict[str, str], resolution: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, __file__, "--worker", stage, "--paths", json.dumps(paths),
           "--resolution", str(resolution)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{stage} worker failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="images per label at the small size")
    parser.add_argument("--data-resolution", type=int, default=256)
    parser.add_argument("--resolution", type=int, default=128, help="the classifier's")
    parser.add_argument("--worker", default="")
    parser.add_argument("--paths", default="{}")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, json.loads(args.paths), args.resolution)))
        return

    from tgap.plan import classifier_train_bytes

    side, labels = args.resolution, len(LABELS)
    sizes = (args.n, 4 * args.n)
    peaks: dict[str, dict[int, float]] = {"train": {}, "supplementation": {}}
    with tempfile.TemporaryDirectory(prefix="tgap-memory-") as tmp:
        tmp = Path(tmp)
        test = image_set(tmp / "test", 100, args.data_resolution, offset=3000)
        for n in sizes:
            paths = {
                "real": str(image_set(tmp / f"real-{n}", n, args.data_resolution).root),
                "synthetic": str(
                    image_set(tmp / f"syn-{n}", n, args.data_resolution, offset=1000).root
                ),
                "test": str(test.root),
            }
            for stage in peaks:
                out = {**paths, "out": str(tmp / f"{stage}-{n}")}
                peaks[stage][n] = measure(stage, out, args.resolution)
            print(f"N={n}/label: " + ", ".join(f"{k} {v[n]:.0f} MB" for k, v in peaks.items()))
    grown = {k: (v[sizes[1]] - v[sizes[0]]) * MB for k, v in peaks.items()}
    n_small, n_large = (labels * n for n in sizes)
    planned = {
        "train": classifier_train_bytes(n_large, side) - classifier_train_bytes(n_small, side),
        # real + synthetic (ratio 1): both parts, their concatenation and fit's copies.
        "supplementation": 3 * 2 * (n_large - n_small) * side**2,
    }
    ratio = {k: grown[k] / planned[k] for k in peaks}
    print(
        f"RESULT memory train_measured_over_planned={ratio['train']:.3f} "
        f"supplementation_measured_over_planned={ratio['supplementation']:.3f} "
        f"n={args.n} data_resolution={args.data_resolution} resolution={side} "
        + " ".join(f"{k}_mb_{n}={v[n]:.0f}" for k, v in peaks.items() for n in v)
    )


if __name__ == "__main__":
    main()
