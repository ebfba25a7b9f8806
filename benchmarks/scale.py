"""Peak memory at N and 4N images per label: fine-tune, generate and the cell stage, on the tiny
Stable Diffusion fixture at 128 px (16x16 latents).

    .venv/bin/python benchmarks/scale.py [--n 128] [--resolution 128] [--steps 4]

Every measurement runs in a subprocess of its own (``--worker``), so each peak RSS
(``VmHWM``) is that stage's alone; the inputs (base model, image sets, the classifier
evaluations the cell stage reads) are made by this process beforehand. Memory flat in N means
the 4N/N ratio of each stage stays near 1: fine-tune streams its tuning set (latents per batch),
generate writes as it goes, the cell stage reads its sets in chunks.
Ends with ``RESULT scale finetune_rss_ratio=... cell_rss_ratio=... generate_rss_ratio=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
LABELS = ["No Finding", "Unhealthy"]


def image_set(path: Path, n_per_label: int, resolution: int, offset: int = 0):
    """Real PneumoniaMNIST images, cycled when ``n_per_label`` exceeds what a label has."""
    from tgap.imageset import ImageSet, ImageSetWriter, to_grey_square

    with np.load(DATA / "pneumoniamnist" / "pneumoniamnist.npz") as data:
        images, values = data["train_images"], data["train_labels"].ravel()
    with ImageSetWriter(path, LABELS, resolution) as writer:
        for value, label in enumerate(LABELS):
            pool = np.flatnonzero(values == value)
            for j in range(n_per_label):
                i = pool[(offset + j) % len(pool)]
                writer.add(to_grey_square(images[i], resolution), label, original_id=str(i))
    return ImageSet(path)


def worker(stage: str, paths: dict[str, str], steps: int) -> dict:
    """Run one stage on prepared inputs; return its peak RSS."""
    from tgap.config import (
        DiffusionConfig,
        EvaluationConfig,
        FinetuneConfig,
        GenerateConfig,
        PromptConfig,
        SelectConfig,
    )
    from tgap.imageset import ImageSet

    diffusion = DiffusionConfig(device="cpu")
    if stage == "finetune":
        from tgap.diffusion.dreambooth import finetune
        from tgap.methods import parse_method

        ft = FinetuneConfig(steps=steps, batch_size=4, lr_warmup_steps=0, checkpoint_every=10**6)
        finetune(paths["base"], ImageSet(paths["tuning"]), parse_method("random"), 0, ft,
                 PromptConfig(), diffusion, paths["out"])  # fmt: skip
    elif stage == "generate":
        from tgap.diffusion.generate import generate_image_set

        n = int(paths["n"])
        gen = GenerateConfig(n_per_label=n, batch_size=16, scheduler="pndm", steps=2, grid_images=4)
        generate_image_set(
            paths["base"], LABELS, n, PromptConfig(), gen, diffusion, 0, paths["out"]
        )
    elif stage == "cell":
        from tgap.embed import get_embedder
        from tgap.evaluation import compute_cell
        from tgap.grid import GridRow

        root = Path(paths["evals"])
        compute_cell(
            GridRow.from_item({"method": "random", "size": paths["n"], "seed": 0}),
            root / "s2r", root / "r2s", root / "r2r",
            ImageSet(paths["synthetic"]), ImageSet(paths["real_test"]), ImageSet(paths["tuning"]),
            EvaluationConfig(bootstrap_resamples=50, kid_subsets=10),
            get_embedder("pixel", SelectConfig()), {}, paths["out"],
        )  # fmt: skip
    else:
        raise SystemExit(f"unknown stage {stage!r}")
    return {"stage": stage, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec: VmHWM of /proc/self/status.

    Not ``ru_maxrss``: Linux carries it across fork + exec, so a worker started by a large
    parent would report at least the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(stage: str, paths: dict[str, str], steps: int) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        stage,
        "--paths",
        json.dumps(paths),
        "--steps",
        str(steps),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{stage} worker failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["peak_rss_mb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="images per label at the small size")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="fine-tune steps per run")
    parser.add_argument("--worker", default="")
    parser.add_argument("--paths", default="{}")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, json.loads(args.paths), args.steps)))
        return
    if args.resolution < 128:
        raise SystemExit("--resolution must be >= 128 (the scale claim is made at 128 px or more)")

    from tgap.classify import evaluate_classifier, train_classifier
    from tgap.config import ClassifierConfig, DiffusionConfig
    from tgap.diffusion.base_model import prepare_base_model
    from tgap.diffusion.build import build_tiny_sd

    peaks: dict[str, dict[int, float]] = {"finetune": {}, "generate": {}, "cell": {}}
    with tempfile.TemporaryDirectory(prefix="tgap-scale-") as tmp:
        tmp = Path(tmp)
        sd = build_tiny_sd(tmp / "sd", DATA / "clip-tokenizer", sample_size=args.resolution)
        prepare_base_model(DiffusionConfig(base_model=str(sd), device="cpu"), tmp / "base")
        real_test = image_set(tmp / "real_test", 50, args.resolution, offset=5000)
        clf = ClassifierConfig(epochs=1, batch_size=32, patience=1, device="cpu")
        train_classifier(
            image_set(tmp / "clf_train", 40, args.resolution), clf, 0, None, tmp / "clf"
        )
        for n in (args.n, 4 * args.n):
            tuning = image_set(tmp / f"tuning-{n}", n, args.resolution)
            synthetic = image_set(tmp / f"synthetic-{n}", n, args.resolution, offset=1000)
            evals = tmp / f"evals-{n}"
            for name, test in (("s2r", real_test), ("r2s", synthetic), ("r2r", real_test)):
                evaluate_classifier(tmp / "clf", test, evals / name, resamples=20, device="cpu")
            common = {"base": str(tmp / "base"), "n": str(n), "tuning": str(tuning.root)}
            peaks["finetune"][n] = measure(
                "finetune", {**common, "out": str(tmp / f"ft-{n}")}, args.steps
            )
            peaks["generate"][n] = measure(
                "generate", {**common, "out": str(tmp / f"gen-{n}")}, args.steps
            )
            cell = {**common, "synthetic": str(synthetic.root), "real_test": str(real_test.root),
                    "evals": str(evals), "out": str(tmp / f"cell-{n}")}  # fmt: skip
            peaks["cell"][n] = measure("cell", cell, args.steps)
            print(f"N={n}/label: " + ", ".join(f"{k} {v[n]:.0f} MB" for k, v in peaks.items()))
    ratios = {k: v[4 * args.n] / v[args.n] for k, v in peaks.items()}
    print(
        f"RESULT scale finetune_rss_ratio={ratios['finetune']:.3f} "
        f"cell_rss_ratio={ratios['cell']:.3f} generate_rss_ratio={ratios['generate']:.3f} "
        f"n={args.n} resolution={args.resolution} "
        + " ".join(f"{k}_mb_{n}={v[n]:.0f}" for k, v in peaks.items() for n in v)
    )


if __name__ == "__main__":
    main()
