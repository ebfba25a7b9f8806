"""The tune-generation stage: Bayesian optimisation of the sampling parameters on the CAS.

One of the project's reference papers raises the accuracy of classifiers trained on synthetic
data by optimising guidance scale and sampler steps on the Classification Accuracy Score (train
on synthetic, test on real). ``tune_generation`` does that per fine-tuned model with Optuna:

- each trial generates ``generate.tune.n_per_label`` images per label with the trial's
  parameters (``tgap.diffusion.generate.generate_image_set``), trains the run's classifier on
  them (``tgap.classify.train_classifier``) and scores it on **real-val**, ingest's validation
  split (the source's official one, or cut by patient; ``check_real_val`` refuses any other
  set). real-test is not an input of this stage, so tuning can never see it;
- the sampler (TPE or GP) is seeded, every trial generates from the same seeds (only the
  parameters differ between trials) and the classifier is seeded: a study is deterministic for
  a seed on the same machine;
- the study lives in the stage's output folder (``study.jsonl``, Optuna's journal file), never
  in a server; a retried task resumes it and runs only the missing trials;
- ``tuning.json`` holds the chosen parameters, the whole trial table and the study seed, and
  ``tuning_history.png`` the optimisation history. The best trial is the argmax of the recorded
  scores (the first one on ties).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from tgap import metrics
from tgap.artifacts import json_safe
from tgap.config import (
    ClassifierConfig,
    ConfigError,
    DiffusionConfig,
    GenerateConfig,
    PromptConfig,
)
from tgap.grid import GridRow
from tgap.imageset import ImageSet
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)

TUNING = "tuning.json"
HISTORY = "tuning_history.png"
STUDY = "study.jsonl"
OBJECTIVES = {"cas-accuracy": "accuracy", "s2r-auroc": "auroc"}


class TuneError(ValueError):
    """The tuning inputs cannot make a study; the message names the key or file."""


# --------------------------------------------------------------------------- the real split


def check_real_val(real_val: ImageSet) -> None:
    """Refuse any set that is not ingest's real-val (manifest split ``val``) or lacks a label,
    so the objective cannot be computed on real-test, or on real-train, by mistake."""
    splits = {r.split for r in real_val.records}
    if splits != {"val"}:
        raise TuneError(
            f"{real_val.root}: the tuning objective is scored on real-val only, but this set "
            f"has split(s) {sorted(splits)}"
        )
    missing = [label for label, n in real_val.counts().items() if n == 0]
    if missing:
        raise TuneError(f"{real_val.root}: real-val has no image of {missing}")


# --------------------------------------------------------------------------- the study


def _suggest(trial, generate: GenerateConfig) -> dict[str, Any]:
    """The trial's sampling parameters: searched ones from the space, others from ``generate``."""
    space = generate.tune.space
    params: dict[str, Any] = {
        "guidance_scale": generate.guidance_scale,
        "steps": generate.steps,
        "scheduler": generate.scheduler,
    }
    g, s = space.guidance_scale, space.steps
    if g and g[0] < g[1]:
        params["guidance_scale"] = trial.suggest_float(
            "guidance_scale", g[0], g[1], log=space.guidance_log
        )
    elif g:
        params["guidance_scale"] = float(g[0])
    if s and s[0] < s[1]:
        params["steps"] = trial.suggest_int("steps", s[0], s[1])
    elif s:
        params["steps"] = int(s[0])
    if len(space.schedulers) > 1:
        params["scheduler"] = trial.suggest_categorical("scheduler", list(space.schedulers))
    elif space.schedulers:
        params["scheduler"] = space.schedulers[0]
    return params


def _baseline_params(generate: GenerateConfig) -> dict[str, Any] | None:
    """Generate's own values of the searched parameters, or None when one lies outside the space."""
    space, fixed = generate.tune.space, {}
    g, s = space.guidance_scale, space.steps
    if g and g[0] < g[1]:
        if not g[0] <= generate.guidance_scale <= g[1]:
            return None
        fixed["guidance_scale"] = generate.guidance_scale
    if s and s[0] < s[1]:
        if not s[0] <= generate.steps <= s[1]:
            return None
        fixed["steps"] = generate.steps
    if len(space.schedulers) > 1:
        if generate.scheduler not in space.schedulers:
            return None
        fixed["scheduler"] = generate.scheduler
    return fixed


def make_sampler(name: str, seed: int, startup_trials: int):
    """A seeded Optuna sampler, ``tpe`` (TPESampler) or ``gp`` (GPSampler), that samples at
    random for its first ``startup_trials`` trials and from its model after."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)
    raise TuneError(f"generate.tune.sampler {name!r}: expected tpe or gp")


def best_trial(trials: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The argmax of the recorded scores over complete trials (the first one on ties)."""
    scored = [t for t in trials if t["value"] is not None and math.isfinite(t["value"])]
    return max(scored, key=lambda t: (t["value"], -t["number"])) if scored else None


def tuned_generate(generate: GenerateConfig, tuning_dir: str | Path | None) -> GenerateConfig:
    """``generate`` with the parameters chosen by the study in ``tuning_dir`` (if it tuned)."""
    if tuning_dir is None or not (Path(tuning_dir) / TUNING).is_file():
        return generate
    tuning = json.loads((Path(tuning_dir) / TUNING).read_text())
    if not tuning.get("tuned"):
        return generate
    params = tuning["params"]
    log.info("generate uses the tuned parameters of %s: %s", tuning_dir, params)
    return replace(
        generate,
        guidance_scale=float(params["guidance_scale"]),
        steps=int(params["steps"]),
        scheduler=params["scheduler"],
    )


def tune_generation(
    model_dir: str | Path,
    real_val: ImageSet,
    method: str,
    seed: int,
    prompt: PromptConfig,
    generate: GenerateConfig,
    diffusion: DiffusionConfig,
    classifier: ClassifierConfig,
    out_dir: str | Path,
    size: int,
) -> dict[str, Any]:
    """Stage: run the study for one fine-tuned model; write ``tuning.json`` into ``out_dir``.

    ``size`` (the row's tuning-set size) is only recorded: with ``method`` and ``seed`` it names
    the study's cell, which a grid of several sizes needs.

    With ``generate.tune.trials == 0`` (the default), or for ``retrieval`` (nothing is
    generated), it writes ``{"tuned": false, ...}`` and returns at once.
    """
    from tgap.classify import load_resized

    tune = generate.tune
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    untuned = {
        "guidance_scale": generate.guidance_scale,
        "steps": generate.steps,
        "scheduler": generate.scheduler,
    }
    reason = _why_untuned(tune.trials, method)
    if reason:
        return _write_untuned(out_dir, method, size, seed, reason, untuned)
    if tune.n_per_label > generate.n_per_label:
        raise TuneError(
            f"generate.tune.n_per_label {tune.n_per_label} > generate.n_per_label "
            f"{generate.n_per_label}"
        )

    start = time.perf_counter()
    check_real_val(real_val)
    # At the classifier's resolution (what each trial's classifier sees): one copy, read in chunks.
    val_images = load_resized(real_val, np.arange(len(real_val)), classifier.resolution)
    study_seed = derive_seed(seed, "tune", tune.seed)
    # Every trial samples from the same image seeds: trials differ only by their parameters.
    image_seed = derive_seed(seed, "tune", "images")
    scratch = out_dir / ".trials"
    objective = _trial_objective(
        model_dir, real_val, val_images, seed, image_seed, prompt, generate, diffusion,
        classifier, scratch,
    )  # fmt: skip
    study = _run_study(out_dir, f"tune-generation-{method}-{size}-{seed}", method, tune,
                       study_seed, _baseline_params(generate), objective)  # fmt: skip
    shutil.rmtree(scratch, ignore_errors=True)

    trials, is_baseline = _trial_table(study, tune, untuned)
    best = best_trial(trials)
    if best is None:
        raise TuneError(f"tune-generation {method}: no trial produced a finite score")
    params = {k: best[k] for k in ("guidance_scale", "steps", "scheduler")}
    result = {
        "tuned": True,
        "method": method,
        "size": size,
        "seed": seed,
        "study_seed": study_seed,
        "image_seed": image_seed,
        "sampler": tune.sampler,
        "startup_trials": tune.startup_trials,
        "objective": tune.objective,
        "n_trials": len(trials),
        "space": asdict(tune.space),
        "params": params,
        "untuned": untuned,
        "best": {"number": best["number"], "value": best["value"]},
        # Trial 0 at generate's own parameters (when they lie inside the space), else null.
        "baseline": {"number": 0, "value": trials[0]["value"]} if is_baseline else None,
        "trials": trials,
        "validation": _validation_record(real_val),
        "chosen_on": "real-val",
        "n_per_label": tune.n_per_label,
        "message": f"best of {len(trials)} trials: {tune.objective} {best['value']:.4f} at "
        f"guidance {params['guidance_scale']:.3g}, {params['steps']} {params['scheduler']} steps",
        "seconds": round(time.perf_counter() - start, 2),
    }
    plot_history(trials, tune.objective, f"{method} (seed {seed})", out_dir / HISTORY)
    result["history_plot"] = HISTORY
    _write_json(out_dir / TUNING, result)  # last: its presence marks a finished study
    log.info("tune-generation %s: %s (%.1f s)", method, result["message"], result["seconds"])
    return result


def _why_untuned(trials: int, method: str) -> str:
    """Why this cell runs no study ("" when it does)."""
    if trials == 0:
        return "generate.tune.trials is 0: generate uses its own parameters"
    if method == "retrieval":
        return "method retrieval generates nothing: no parameters to tune"
    return ""


def _write_untuned(
    out_dir: Path, method: str, size: int, seed: int, reason: str, untuned: dict[str, Any]
) -> dict[str, Any]:
    """The record of a cell that runs no study: generate keeps its own parameters."""
    result = {
        "tuned": False, "method": method, "size": size, "seed": seed, "message": reason,
        "params": untuned,
    }  # fmt: skip
    _write_json(out_dir / TUNING, result)
    log.info("tune-generation %s: %s", method, reason)
    return result


def _trial_objective(
    model_dir: str | Path,
    real_val: ImageSet,
    val_images: np.ndarray,
    seed: int,
    image_seed: int,
    prompt: PromptConfig,
    generate: GenerateConfig,
    diffusion: DiffusionConfig,
    classifier: ClassifierConfig,
    scratch: Path,
):
    """The study's objective: generate with the trial's parameters, train the run's classifier
    on that set, score it on real-val (``val_images``)."""
    from tgap.classify import Classifier, train_classifier
    from tgap.diffusion.generate import generate_image_set

    tune = generate.tune
    y_val = real_val.label_indices
    labels = list(real_val.labels)

    def objective(trial) -> float:
        params = _suggest(trial, generate)
        trial_dir = scratch / str(trial.number)
        shutil.rmtree(trial_dir, ignore_errors=True)
        t0 = time.perf_counter()
        gen = replace(generate, **params, grid_images=0)
        generate_image_set(
            model_dir, labels, tune.n_per_label, prompt, gen, diffusion, image_seed,
            trial_dir / "synthetic",
        )  # fmt: skip
        train_classifier(
            ImageSet(trial_dir / "synthetic"), classifier, seed, None, trial_dir / "classifier"
        )
        clf = Classifier.load(trial_dir / "classifier")
        scores = clf.predict_proba(val_images)
        scored = {
            "accuracy": metrics.accuracy(y_val, metrics.predict_labels(scores, clf.threshold)),
            "auroc": metrics.auroc(y_val, scores),
        }
        shutil.rmtree(trial_dir, ignore_errors=True)
        trial.set_user_attr("params", params)
        trial.set_user_attr("cas_accuracy", scored["accuracy"])
        trial.set_user_attr("s2r_auroc", scored["auroc"])
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
        value = scored[OBJECTIVES[tune.objective]]
        log.info("trial %d %s: %s = %.4f", trial.number, params, tune.objective, value)
        return value  # nan (cannot happen with both labels in the split) marks the trial failed

    return objective


def _run_study(
    out_dir: Path,
    name: str,
    method: str,
    tune,
    study_seed: int,
    baseline: dict[str, Any] | None,
    objective,
):
    """Create (or resume) the study in ``out_dir``'s journal and run its missing trials; a new
    study's trial 0 is ``baseline``, generate's own parameters."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out_dir / STUDY)))
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(tune.sampler, study_seed, tune.startup_trials),
        direction="maximize",
        load_if_exists=True,
    )
    done = sum(t.state.is_finished() for t in study.trials)
    if not study.trials and baseline is not None:
        # Trial 0 scores generate's own parameters on the same split: the "before tuning" line.
        study.enqueue_trial(baseline)
    if done:
        log.info("tune-generation %s: resuming a study with %d finished trials", method, done)
    if tune.trials - done > 0:
        study.optimize(objective, n_trials=tune.trials - done, catch=())
    return study


def _trial_table(study, tune, untuned: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """One row per trial (its parameters, scores and who drew it), and whether trial 0 ran at
    generate's own parameters."""
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value if t.value is not None and math.isfinite(t.value) else None,
            **t.user_attrs.get("params", {}),
            "cas_accuracy": t.user_attrs.get("cas_accuracy"),
            "s2r_auroc": t.user_attrs.get("s2r_auroc"),
            "seconds": t.user_attrs.get("seconds"),
        }
        for t in study.trials
    ]
    first = trials[0] if trials else None
    is_baseline = first is not None and all(first.get(k) == v for k, v in untuned.items())
    complete_before = 0
    for t in trials:
        # Both samplers draw at random while fewer than ``startup_trials`` trials have completed
        # (the enqueued trial 0 counts; a failed trial does not), from their model after.
        t["drawn_by"] = (
            "generate's own" if t["number"] == 0 and is_baseline
            else "random" if complete_before < tune.startup_trials
            else tune.sampler
        )  # fmt: skip
        complete_before += t["state"] == "COMPLETE"
    return trials, is_baseline


def _validation_record(real_val: ImageSet) -> dict[str, Any]:
    """What the study scored on: real-val, its size, label counts and patients."""
    y_val = real_val.label_indices
    return {
        "set": str(real_val.root),
        "content_hash": real_val.info.get("content_hash", ""),
        "n_images": int(len(real_val)),
        "counts": {label: int((y_val == c).sum()) for c, label in enumerate(real_val.labels)},
        "n_patients": len({r.patient_id for r in real_val.records}),
        "split": "real-val (ingest's validation split); real-test is not an input",
    }


def plot_history(trials: list[dict[str, Any]], objective: str, title: str, path: Path) -> None:
    """Optimisation history: each trial's score and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    numbers = [t["number"] for t in trials if t["value"] is not None]
    values = [t["value"] for t in trials if t["value"] is not None]
    fig, ax = plt.subplots(figsize=(4.5, 3), dpi=100)
    ax.plot(numbers, values, "o", color="#4c72b0", label="trial")
    ax.plot(numbers, np.maximum.accumulate(values), "-", color="#dd8452", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(title, fontsize=9)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(json_safe(value), indent=2) + "\n")
    os.replace(tmp, path)


def copy_tuning_record(tuning_dir: str | Path, out_dir: str | Path) -> list[str]:
    """Copy ``tuning.json`` and the history plot of a study that tuned into ``out_dir``.

    Generate puts them beside the synthetic images, so the FTER cell carries them as assets.
    """
    tuning_dir, out_dir = Path(tuning_dir), Path(out_dir)
    path = tuning_dir / TUNING
    if not path.is_file() or not json.loads(path.read_text()).get("tuned"):
        return []
    copied = []
    for name in (TUNING, HISTORY):
        if (tuning_dir / name).is_file():
            shutil.copy2(tuning_dir / name, out_dir / name)
            copied.append(name)
    return copied


def check_compiled_tuning(trials: int, compiled_tuning: bool) -> None:
    """Refuse, before any work, a run whose ``generate.tune.trials`` disagrees with the compiled
    spec: the fine-tune loop holds a tune-generation task only when the spec was compiled with
    trials (``pipelines.tgap_pipeline``), since each such task downloads its fine-tuned model,
    the base model it references and real-val, on a GPU node."""
    if trials > 0 and not compiled_tuning:
        raise ConfigError(
            f"generate.tune.trials: {trials}, but this spec was compiled with trials 0 and has no "
            "tune-generation task (generate would run untuned); compile a spec with "
            "generate.tune.trials > 0"
        )
    if trials == 0 and compiled_tuning:
        raise ConfigError(
            "generate.tune.trials: 0, but this spec was compiled with tuning: each of its "
            "tune-generation tasks would hold a GPU node and download a fine-tuned model, its "
            "base model and real-val to do nothing; compile a spec with generate.tune.trials: 0"
        )


def planned_work(generate: GenerateConfig, n_labels: int, rows: list[GridRow]) -> dict[str, Any]:
    """What the tune-generation stage adds over the grid ``rows`` (``tgap.grid.parse_rows``).

    For ``tgap plan`` to count.

    Upper bounds: every trial at the space's highest steps, guided (two UNet passes per step)
    unless the guidance range is exactly 1. Only fine-tuned cells tune (the stage sits in the
    fine-tune loop).
    """
    tune = generate.tune
    if tune.trials == 0:
        return {"trials_per_cell": 0, "cells": 0, "images": 0, "unet_evaluations": 0,
                "classifier_trainings": 0}  # fmt: skip
    space = tune.space
    steps = max(space.steps) if space.steps else generate.steps
    g = space.guidance_scale or [generate.guidance_scale]
    passes = 1 if g == [1.0] * len(g) else 2
    images = tune.trials * tune.n_per_label * n_labels
    # tune-generation runs in the fine-tune loop only: no-finetune and retrieval cells tune nothing.
    cells = sum(row.kind == "finetune" for row in rows)
    return {
        "trials_per_cell": tune.trials,
        "cells": cells,
        "images": images * cells,
        "unet_evaluations": images * steps * passes * cells,
        "classifier_trainings": tune.trials * cells,
    }
