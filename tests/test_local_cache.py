"""kfp.local's cache over a whole run: work shared across grid rows runs once per seed, and a
second run with the same cache reruns nothing (micro config with two sizes and two seeds)."""

import json
from pathlib import Path

import pytest
from run_outputs import result_rows, task_outputs

from tgap.config import load_config
from tgap.local_run import run_local

MICRO = Path("pipelines/configs/micro.yaml")
pytestmark = pytest.mark.slow


def test_shared_work_runs_once_per_seed_and_a_second_run_reuses_it(tmp_path):
    """Class images once per seed for every fine-tune; no-finetune generates once per seed
    for all its sizes; a second run with the same cache reuses it. (That retrieval has no GPU
    stage is checked on the micro run.)"""
    overrides = [
        "grid.methods=[random,no-finetune]", "grid.sizes=[12,16]", "grid.seeds=[0,1]",
        "finetune.steps=2", "classifier.epochs=1", "generate.n_per_label=8",
        "evaluation.bootstrap_resamples=20", "cluster.parallelism=2",
        # no learning curves: the micro run covers them; here they only add classifier trainings
        "evaluation.real_curve_sizes=[]", "evaluation.synthetic_curve_fractions=[]",
    ]  # fmt: skip
    config = load_config(MICRO, overrides)
    cache = tmp_path / "cache"
    first = run_local(config, tmp_path / "first", cache_dir=cache)
    artifacts = first / "artifacts"
    [class_images] = task_outputs(first, "class-images", "images")
    assert sorted(p.name for p in class_images.iterdir() if p.is_dir()) == ["seed-0", "seed-1"]
    # One generate task per fine-tune row (2 sizes x 2 seeds) and one per no-finetune seed.
    generated = task_outputs(first, "generate", "synthetic")
    assert len(generated) == 4 + 2
    # Every fine-tune read the shared class images; none made its own.
    assert not list(artifacts.glob("**/finetune*/model/class_images.npy"))
    rows = result_rows(first)
    assert len(rows) == 2 * 2 * 2
    no_finetune = [r for r in rows if r["method"] == "no-finetune"]
    # Sizes of a seed share one synthetic set: identical S→R/R→S numbers.
    for seed in ("0", "1"):
        same = {(r["s2r_auroc"], r["r2s_auroc"]) for r in no_finetune if r["seed"] == seed}
        assert len(same) == 1
    report = json.loads((first / "results.json").read_text())
    assert set(report["provenance"]["fingerprints"]) >= {"data", "base_model"}

    second = run_local(config, tmp_path / "second", cache_dir=cache)
    # Cached: no task wrote new artifacts but the uncached fingerprint (and nothing else ran).
    assert not task_outputs(second, "class-images", "images")
    assert not task_outputs(second, "generate", "synthetic")
    assert result_rows(second) == rows
