"""Re-generate a finished kfp.local run's fine-tuned models at other guidance scales.

    .venv/bin/python scripts/guidance-sweep.py runs/seed0 3,6,9,12 [--config pipelines/configs/demo.yaml]

For each loop iteration of the run (``artifacts/*/for-loop-*-iteration-*/``) it takes the
fine-tuned model (``finetune/model``, its method from ``training_log.json``) and that
iteration's real-trained classifier (the R→S one: ``classifier.json`` says it trained on
``real_train``), and per guidance scale generates ``generate.n_per_label`` images per label
with the config's other generation settings, scores them with the real classifier (R→S), trains
the config's classifier on them and tests it on the run's **real-val** (S→R on real-val, the
split where choices are made; real-test is never read, so the sweep cannot choose on the
numbers that are reported). One line per model and scale:
``RESULT <method> guidance=... steps=... r2s_auroc=... s2r_val_auroc=... chosen_on=real-val``.
Scratch output goes to ``--out`` (default a temporary folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from tgap.classify import evaluate_classifier, train_classifier
from tgap.config import load_config
from tgap.diffusion.generate import generate_image_set
from tgap.imageset import ImageSet


def classifier_trained_on(iteration: Path, train_set: str) -> tuple[Path, dict]:
    """The iteration's classifier whose ``classifier.json`` says it trained on ``train_set``."""
    for info in sorted(iteration.glob("train-classifier*/model/classifier.json")):
        summary = json.loads(info.read_text())
        if summary.get("train_set", "").endswith(train_set):
            return info.parent, summary
    raise SystemExit(f"{iteration}: no classifier trained on {train_set}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `tgap run --output` folder")
    parser.add_argument("guidance", help="comma-separated guidance scales")
    parser.add_argument("--config", default="pipelines/configs/demo.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # Every input is checked before the first image is generated.
    try:
        scales = [float(g) for g in args.guidance.split(",")]
    except ValueError:
        raise SystemExit(f"guidance {args.guidance!r}: expected comma-separated numbers") from None
    if any(g < 0 for g in scales):
        raise SystemExit(f"guidance {args.guidance!r}: scales must be >= 0")
    cfg = load_config(args.config)
    real_vals = list(args.run.glob("artifacts/*/ingest/real_val"))
    if len(real_vals) != 1:
        raise SystemExit(
            f"{args.run}: expected one artifacts/*/ingest/real_val, found {len(real_vals)} "
            "(a run made before ingest wrote real-val cannot be swept: real-test is sealed)"
        )
    real_val = ImageSet(real_vals[0])
    print(f"S->R is scored on real-val ({real_vals[0]}, {len(real_val)} images), never on "
          "real-test", flush=True)  # fmt: skip
    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="guidance-sweep-"))
    iterations = sorted(args.run.glob("artifacts/*/for-loop-*-iteration-*"))
    for iteration in iterations:
        model = iteration / "finetune" / "model"
        if not (model / "training_log.json").exists():
            continue
        method = json.loads((model / "training_log.json").read_text())["method"]
        real_clf, _ = classifier_trained_on(iteration, "real_train")
        # The run's own S->R classifier settings (seed, size) for this cell.
        _, s2r_summary = classifier_trained_on(iteration, "generate/synthetic")
        # The run's own generation seed for this cell, so the config's guidance reproduces it.
        dataset = json.loads((iteration / "generate" / "synthetic" / "dataset.json").read_text())
        seed = dataset["generator"]["seed"]
        for guidance in scales:
            start = time.perf_counter()
            cell = out / f"{iteration.name}-guidance{guidance:g}"
            generate = dataclasses.replace(cfg.generate, guidance_scale=guidance)
            generate_image_set(model, cfg.data.labels, cfg.generate.n_per_label, cfg.prompt,
                               generate, cfg.diffusion, seed, cell / "images")  # fmt: skip
            synthetic = ImageSet(cell / "images")
            r2s = evaluate_classifier(real_clf, synthetic, cell / "r2s", resamples=10)["auroc"]
            train_classifier(synthetic, cfg.classifier, s2r_summary["seed"],
                             s2r_summary["size_per_label"], cell / "classifier")  # fmt: skip
            s2r = evaluate_classifier(cell / "classifier", real_val, cell / "s2r",
                                      resamples=10)["auroc"]  # fmt: skip
            print(f"RESULT {method} guidance={guidance:g} steps={generate.steps} "
                  f"r2s_auroc={r2s:.3f} s2r_val_auroc={s2r:.3f} chosen_on=real-val "
                  f"seconds={time.perf_counter() - start:.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
