"""Made-up grid cells for the report tests (test_report.py, test_report_browser.py).

ALL METRICS AND ASSETS HERE ARE MADE UP. The numbers are chosen so that means, sds and the best
method per size have known answers; they say nothing about any real method. The assets have the
shapes the stages write (tgap.artifacts).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from tgap.artifacts import (
    ActiveStep,
    ActiveSummary,
    ClusterShare,
    LabelSelection,
    RocCurve,
    SelectionReport,
    Supplementation,
    TrainingLog,
)
from tgap.config import Config, GridConfig

LABELS = ["No Finding", "Unhealthy"]
THESIS_METHODS = [
    "random",
    "spectral-pixel",
    "spectral-clip",
    "curated",
    "active",
    "no-finetune",
    "retrieval",
]
THESIS_SIZES = [500, 1000, 10000]
SEEDS = [0, 1, 2, 3, 4]
# Made up: per-seed offsets with mean 0 and sample sd sqrt(0.001 / 4) = 0.0158113883.
SEED_OFFSET = [-0.02, -0.01, 0.0, 0.01, 0.02]
SEED_SD = math.sqrt(0.001 / 4)
# Made up: a base S→R AUROC per method; `active` is best at 500 and 1000, `retrieval` at 10000.
BASE_S2R = {
    "random": 0.70,
    "spectral-pixel": 0.72,
    "spectral-clip": 0.74,
    "curated": 0.71,
    "active": 0.80,
    "no-finetune": 0.55,
    "retrieval": 0.78,
}
SIZE_BONUS = {500: 0.0, 1000: 0.01, 10000: 0.02}
RETRIEVAL_BONUS_10000 = 0.05
R2S = 0.85  # made up, the same for every cell so FTER means have a closed form too
# Made up: each cell's test-image variance of its AUROCs (small, so the seed spread dominates).
AUROC_VAR = 1e-5
N_TEST = 400  # made-up number of test images per direction (accuracy's binomial variance)


def made_up_s2r(method: str, size: int, seed_index: int) -> float:
    bonus = RETRIEVAL_BONUS_10000 if (method == "retrieval" and size == 10000) else 0.0
    return BASE_S2R.get(method, 0.7) + SIZE_BONUS.get(size, 0.0) + bonus + SEED_OFFSET[seed_index]


def noise_png(path: Path, side: int, seed: int, mode: str = "L") -> None:
    """A made-up image: uniform noise, the worst case for PNG compression."""
    rng = np.random.default_rng(seed)
    shape = (side, side) if mode == "L" else (side, side, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)


def write_cell(
    root: Path,
    method: str,
    size: int,
    seed_index: int,
    assets: bool = True,
    image_side: int = 64,
) -> Path:
    """Write one made-up cell folder in the schema of docs/architecture.md."""
    seed = SEEDS[seed_index]
    d = root / f"{method}-{size}-{seed}"
    (d / "assets").mkdir(parents=True)
    s2r = made_up_s2r(method, size, seed_index)
    cell = {
        "method": method,
        "size": size,
        "seed": seed,
        "s2r_accuracy": s2r - 0.1,
        "s2r_auroc": s2r,
        "r2s_accuracy": R2S - 0.1,
        "r2s_auroc": R2S,
        "fter": s2r / R2S,
        "r2r_accuracy": 0.85 + SEED_OFFSET[seed_index],
        "r2r_auroc": 0.95 + SIZE_BONUS[size] + SEED_OFFSET[seed_index],
        "s2r_accuracy_No Finding": s2r - 0.05,
        "s2r_accuracy_Unhealthy": s2r - 0.15,
        "s2r_auroc_No Finding": s2r,
        "s2r_auroc_Unhealthy": s2r,
        "r2s_accuracy_No Finding": R2S - 0.05,
        "r2s_accuracy_Unhealthy": R2S - 0.15,
        "r2s_auroc_No Finding": R2S,
        "r2s_auroc_Unhealthy": R2S,
        "s2r_auroc_ci_low": s2r - 0.03,
        "s2r_auroc_ci_high": s2r + 0.03,
        "r2s_auroc_ci_low": R2S - 0.02,
        "r2s_auroc_ci_high": R2S + 0.02,
        "fter_ci_low": s2r / R2S - 0.04,
        "fter_ci_high": s2r / R2S + 0.04,
        "s2r_auroc_var": AUROC_VAR,
        "r2s_auroc_var": AUROC_VAR,
        "r2r_auroc_var": AUROC_VAR,
        "s2r_n": N_TEST,
        "r2s_n": N_TEST,
        "r2r_n": N_TEST,
        "fid": 40.0 + seed_index,
        "precision": 0.6,
        "recall": 0.5,
        "near_copy_fraction": 0.01 * seed_index,
        "assets": {},
        "provenance": {"times": {"fine-tune": 10.0 + seed_index, "generate": 5.0}, "device": "cpu"},
    }
    if assets:
        a = d / "assets"
        fpr = np.linspace(0, 1, 21)
        for direction, power in (("s2r", 0.5), ("r2s", 0.3), ("r2r", 0.2)):
            curve = RocCurve(fpr.tolist(), (fpr**power).tolist(), fpr[::-1].tolist())
            (a / f"roc_{direction}.json").write_text(json.dumps(curve.to_json()))
        for i, lab in enumerate(LABELS):
            noise_png(a / f"grid_{lab}.png", image_side, seed * 1000 + size + i)
            noise_png(a / f"real_grid_{lab}.png", image_side, 7 + i)
        noise_png(a / "closest_pairs.png", image_side, seed + size, mode="RGB")
        log = TrainingLog(method, True, loss=[1.0 / (s + 1) for s in range(100)])
        if method == "active":
            similarities = np.linspace(0.1, 0.5, 40)
            log.active = [
                ActiveStep(
                    batch=i,
                    update=i - i // 3,
                    epoch=i // 14,
                    similarity=float(v),
                    skipped=i % 3 == 0,
                )
                for i, v in enumerate(similarities)
            ]
            log.active_summary = ActiveSummary({"0": 0.1, "1": 0.3, "2": 0.5}, 14, 40, 0.1, 0.5)
            log.active_config = {"threshold": 0.3}
        if method == "no-finetune":
            log = TrainingLog(
                method, False, "not fine-tuned: method no-finetune uses the base model"
            )
        (a / "training_log.json").write_text(json.dumps(log.to_json()))
        if method.startswith("spectral") or method == "active":
            shares = [ClusterShare(i, n, 5, min(n, 5), 0) for i, n in enumerate([50, 30, 10, 5])]
            selection = SelectionReport(method, "spectral", "pixel", size, seed)
            selection.labels = {lab: LabelSelection(20, 20, 0, 95, shares) for lab in LABELS}
            (a / "selection.json").write_text(json.dumps(selection.to_json()))
        cell["supplementation"] = asdict(
            Supplementation([0, 0.5, 1, 2], [0.9, 0.91, 0.915, 0.9], [0.8] * 4, {"No Finding": 9})
        )
        cell["assets"] = {p.name: f"assets/{p.name}" for p in sorted(a.iterdir())}
    (d / "cell.json").write_text(json.dumps(cell))
    return d


def grid_config(
    methods: list[str], sizes: list[int], seeds: list[int], name: str = "made-up"
) -> Config:
    return Config(name=name, grid=GridConfig(methods=methods, sizes=sizes, seeds=seeds))


PROVENANCE = {
    "data": {"source": "made-up://nowhere", "format": "medmnist-npz"},
    "models": {
        "diffusion": {"source": "tiny-pixel", "pretrained": False},
        "embedder": {"source": "/weights/clip", "pretrained": True},
    },
    "versions": {"torch": "2.14.1", "tgap": "0.1.0"},
    "seeds": SEEDS,
    "stage_seconds": {"ingest": 1.5, "report": 0.3},
}
