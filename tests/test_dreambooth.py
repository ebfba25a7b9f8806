"""DreamBooth fine-tuning: loss, prior preservation, active selection, resume (local and from
object storage), methods, bad input."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny import real_image_set, tiny_diffusion, tiny_finetune

from tgap import storage
from tgap.artifacts import TrainingLog
from tgap.config import ActiveConfig, DiffusionConfig, FinetuneConfig, PromptConfig
from tgap.diffusion.active import UntrainedError, cosine_similarity, max_skips
from tgap.diffusion.base_model import prepare_base_model
from tgap.diffusion.build import ModelError, load_model
from tgap.diffusion.checkpoint_store import CheckpointStore, checkpoint_prefix
from tgap.diffusion.dreambooth import checkpoint_identity, finetune
from tgap.diffusion.training import (
    Examples,
    LoopSettings,
    TrainData,
    batch_plan,
    dreambooth_loss,
    make_batch,
)
from tgap.imageset import ImageSet
from tgap.methods import parse_method

try:
    from servers import loopback_only, s3, s3_server  # noqa: F401
except ImportError:  # tests/ is a package
    from tests.servers import loopback_only, s3, s3_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dreambooth")
    prepare_base_model(tiny_diffusion(), root / "base")
    return root / "base", real_image_set(root / "tuning", 4)


def unet_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "unet" / "diffusion_pytorch_model.safetensors")


def test_loop_settings_are_the_config_keys_of_their_names():
    finetune = FinetuneConfig(steps=7, lora_rank=2, lr_scheduler="cosine", lr_warmup_steps=3)
    diffusion = DiffusionConfig(attention="default", mixed_precision="bf16", seed=9)
    settings = LoopSettings.from_config(finetune, diffusion, seed=5)
    assert (settings.steps, settings.lora_rank, settings.lr_scheduler) == (7, 2, "cosine")
    assert (settings.lr_warmup_steps, settings.batch_size) == (3, finetune.batch_size)
    assert (settings.attention, settings.mixed_precision) == ("default", "bf16")
    assert settings.seed == 5  # the caller's seed, not diffusion.seed


def test_loss_decreases_on_a_tiny_run(setup, tmp_path):
    base, tuning = setup
    out = tmp_path / "model"
    summary = finetune(
        base,
        tuning,
        parse_method("random"),
        0,
        tiny_finetune(steps=40),
        PromptConfig(),
        tiny_diffusion(),
        out,
    )
    log = json.loads((out / "training_log.json").read_text())
    assert len(log["loss"]) == 40 and summary["trained_steps"] == 40
    assert np.mean(log["loss"][-8:]) < 0.6 * np.mean(log["loss"][:8])
    assert (out / "complete").is_file() and not (out / "checkpoints").exists()
    assert log["prompts"] == {
        "No Finding": "an image of Healthy chest X-ray",
        "Unhealthy": "an image of Unhealthy chest X-ray",
    }
    assert log["wall_time_s"] > 0 and log["peak_memory_mb"] > 0


def test_prior_preservation_batch_is_instances_then_as_many_class_images():
    pixel = SimpleNamespace(vae=None)  # pixel space: model space is the image in [-1, 1]
    data = TrainData(
        instances=Examples(np.arange(6, dtype=np.uint8).reshape(6, 1, 1), pixel, 0),
        prompt_index=np.array([0, 1, 0, 1, 0, 1]),
        prompts=["a", "b", "class"],
        class_examples=Examples(np.arange(100, 105, dtype=np.uint8).reshape(5, 1, 1), pixel, 0),
        class_prompt_index=2,
    )
    x, prompts, is_prior = make_batch(data, np.array([4, 1, 2]), step=1)
    grey = ((x.flatten() + 1) * 127.5).round().tolist()
    assert grey == [4, 1, 2, 103, 104, 100]  # class images cycle: 3, 4, 0
    assert prompts.tolist() == [0, 1, 0, 2, 2, 2]
    assert is_prior.tolist() == [False, False, False, True, True, True]
    # loss = instance MSE + weight x prior MSE: (1) + 0.5 x (4)
    pred = torch.zeros(6, 1, 1, 1)
    target = torch.tensor([1.0, 1, 1, 2, 2, 2]).view(6, 1, 1, 1)
    loss, inst, prior = dreambooth_loss(pred, target, is_prior, 0.5)
    assert loss.item() == pytest.approx(3.0) and inst == 1.0 and prior == 4.0


def test_prior_preservation_generates_class_images_with_the_base_model(setup, tmp_path):
    base, tuning = setup
    ft = tiny_finetune(
        steps=2, with_prior_preservation=True, num_class_images=5, class_sampler_steps=2
    )
    finetune(
        base,
        tuning,
        parse_method("random"),
        0,
        ft,
        PromptConfig(),
        tiny_diffusion(),
        tmp_path / "m",
    )
    class_images = np.load(tmp_path / "m" / "class_images.npy", mmap_mode="r")
    assert class_images.shape == (5, 16, 16) and class_images.dtype == np.uint8
    log = json.loads((tmp_path / "m" / "training_log.json").read_text())
    assert all(v is not None for v in log["prior_loss"])


def test_batch_plan_covers_every_image_once_per_epoch():
    plan = batch_plan(10, 3, steps=9, seed=0)
    assert [e for e, _ in plan] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for epoch in range(3):
        seen = np.concatenate([idx for e, idx in plan if e == epoch])
        assert len(set(seen.tolist())) == 9
    assert [idx.tolist() for _, idx in plan] == [idx.tolist() for _, idx in batch_plan(10, 3, 9, 0)]


def test_cosine_similarity_modes_known_answers():
    real = np.array([[1.0, 0.0], [0.0, 1.0]])
    gen = np.array([[1.0, 0.0]])
    assert cosine_similarity(real, gen, "mean-embedding") == pytest.approx(np.sqrt(0.5))
    assert cosine_similarity(real, gen, "mean-pairwise") == pytest.approx(0.5)


class StubEmbedder:
    """Tuning image j embeds as (cos a_j, sin a_j); every generated image as (1, 0).

    So with batches of one image, the batch's similarity is exactly cos a_j = ``sims[j]``.
    """

    name = "stub"
    description = "stub with known similarities"

    def __init__(self, images: np.ndarray, sims: list[float]) -> None:
        self.known = {img.tobytes(): s for img, s in zip(images, sims, strict=True)}

    def embed(self, images: np.ndarray) -> np.ndarray:
        out = []
        for img in images:
            s = self.known.get(img.tobytes(), 1.0)
            out.append([s, np.sqrt(max(0.0, 1 - s * s))])
        return np.asarray(out, dtype=np.float32)


SIMS = [0.9, 0.3001, 0.2999, -0.5, 0.0, 0.95, -0.99, 0.1]


def expected_skips(sims: list[float], threshold: float, steps: int, cap: int) -> list[bool]:
    """The skip decision of every batch probed, by the rule: skip above the threshold, replace
    a skipped batch by the next, stop probing at the ``cap``-th skip."""
    decisions: list[bool] = []
    for sim in sims:
        if decisions.count(False) == steps or decisions.count(True) == cap:
            break
        decisions.append(sim > threshold)
    return decisions


@pytest.mark.parametrize(
    ("mode", "max_skip_fraction"),
    [("mean-embedding", 0.8), ("mean-pairwise", 0.3), ("mean-embedding", 0.0)],
)
def test_active_selection_replaces_skipped_batches_so_updates_equal_steps(
    setup, tmp_path, monkeypatch, mode, max_skip_fraction
):
    """A forced skip pattern (the stub embedder's known similarities): the batches above the
    threshold are skipped and replaced by the next ones, and the optimizer makes exactly
    ``steps`` updates, also when the skip budget (0.3: 3 skips) runs out and the rest train
    unprobed; a budget of none (0.0) probes no batch."""
    updates = []
    adamw_step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW,
        "step",
        lambda self, *a, **k: updates.append(1) or adamw_step(self, *a, **k),
    )
    base, tuning = setup
    embedder = StubEmbedder(tuning.load_all(), SIMS)
    active = ActiveConfig(threshold=0.3, n_generate=2, sampler_steps=2, similarity=mode,
                          max_skip_fraction=max_skip_fraction)  # fmt: skip
    finetune(base, tuning, parse_method("active"), 0, tiny_finetune(steps=8, batch_size=1,
             active=active), PromptConfig(), tiny_diffusion(), tmp_path / "m", embedder)  # fmt: skip
    log = json.loads((tmp_path / "m" / "training_log.json").read_text())
    cap = max_skips(8, max_skip_fraction)
    plan = batch_plan(len(tuning), 1, 8 + cap, log["settings"]["seed"])
    sims = [SIMS[int(idx[0])] for _, idx in plan]
    decisions = expected_skips(sims, 0.3, 8, cap)
    assert [r["similarity"] for r in log["active"]] == pytest.approx(
        sims[: len(decisions)], abs=1e-5
    )
    assert [r["skipped"] for r in log["active"]] == decisions
    assert [r["batch"] for r in log["active"]] == list(range(len(decisions)))
    assert len(updates) == 8 == log["trained_steps"] == log["updates"] == len(log["loss"])
    assert None not in log["loss"]
    assert log["skipped"] == sum(decisions) and log["batches"] == 8 + sum(decisions)
    spent = log["skip_budget_spent_at"]
    assert (spent is not None) == (max_skip_fraction == 0.3)  # both branches below are exercised
    if sum(decisions) < cap or cap == 0:
        assert spent is None
    else:  # the update the cap-th skip came before; no batch probed after it
        assert spent == decisions.count(False) and log["active"][-1]["skipped"]
    assert log["active_summary"]["warnings"] == []
    # The report reads this very log (its typed reader names every record key).
    typed = TrainingLog.from_json(log, "training_log.json")
    assert [a.batch for a in typed.active] == [r["batch"] for r in log["active"]]


def test_active_selection_warns_when_an_epoch_skips_everything(setup, tmp_path):
    base, tuning = setup
    embedder = StubEmbedder(tuning.load_all(), SIMS)
    # max_skip_fraction 0.5: at most 8 skips, one epoch of batches of one image.
    active = ActiveConfig(threshold=-1.0, n_generate=1, sampler_steps=1, on_untrained="flag",
                          max_skip_fraction=0.5)  # fmt: skip
    ft = tiny_finetune(steps=8, batch_size=1, active=active)
    finetune(
        base,
        tuning,
        parse_method("active"),
        0,
        ft,
        PromptConfig(),
        tiny_diffusion(),
        tmp_path / "m",
        embedder,
    )
    log = json.loads((tmp_path / "m" / "training_log.json").read_text())
    # Every probed batch skipped until the budget ran out before the first update; then the
    # 8 updates trained unprobed, and the run is marked: selection chose none of them.
    assert [r["skipped"] for r in log["active"]] == [True] * 8
    assert log["skip_budget_spent_at"] == 0 and log["trained_steps"] == 8
    assert "skipped every batch" in log["active_summary"]["warnings"][0]
    assert log["did_not_train"] is True
    assert "chose 0 of 8 updates" in log["did_not_train_reason"]


def test_a_threshold_that_skips_every_batch_fails_in_one_line_naming_the_fix(setup, tmp_path):
    base, tuning = setup
    embedder = StubEmbedder(tuning.load_all(), SIMS)
    # on_untrained: fail (the default); at most 8 skips.
    active = ActiveConfig(threshold=-1.0, n_generate=1, sampler_steps=1, max_skip_fraction=0.5)
    ft = tiny_finetune(steps=8, batch_size=1, active=active)
    with pytest.raises(UntrainedError) as caught:
        finetune(base, tuning, parse_method("active"), 0, ft, PromptConfig(), tiny_diffusion(),
                 tmp_path / "m", embedder)  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message
    assert "threshold -1.0000 (fixed)" in message
    assert f"similarities {min(SIMS):.4f}..{max(SIMS):.4f}" in message or "similarities" in message
    assert "min_trained_fraction 0.1" in message and "threshold: auto" in message
    assert "chose 0 of 8 updates before its skip budget (8 skips" in message
    assert not (tmp_path / "m" / "complete").exists()


def test_auto_threshold_is_the_base_models_quantile_and_is_logged(setup, tmp_path):
    base, tuning = setup
    embedder = StubEmbedder(tuning.load_all(), SIMS)
    active = ActiveConfig(threshold="auto", target_skip=0.25, calibration_batches=8,
                          n_generate=1, sampler_steps=1)  # fmt: skip
    ft = tiny_finetune(steps=8, batch_size=1, active=active)
    finetune(base, tuning, parse_method("active"), 0, ft, PromptConfig(), tiny_diffusion(),
             tmp_path / "m", embedder)  # fmt: skip
    log = json.loads((tmp_path / "m" / "training_log.json").read_text())
    # One epoch of batches of one image: the calibration saw exactly the SIMS.
    assert sorted(log["active_config"]["calibration_similarities"]) == pytest.approx(sorted(SIMS))
    assert log["active_config"]["threshold"] == pytest.approx(np.quantile(SIMS, 0.75))
    assert log["active_config"]["threshold_setting"] == "auto"
    assert sum(r["skipped"] for r in log["active"][:8]) == 2 and log["did_not_train"] is False
    assert log["trained_steps"] == 8 == len(log["active"]) - log["skipped"]


def test_auto_threshold_skips_about_target_skip_on_real_images(setup, tmp_path):
    """Micro-scale data and model (real PneumoniaMNIST images, the pixel embedder, micro's probe
    settings): the skipped fraction over the whole fine-tune stays within 0.15 of target_skip,
    although the model, and so the similarities, change while it trains."""
    from tgap.config import SelectConfig
    from tgap.embed import get_embedder

    base, _ = setup
    tuning = real_image_set(tmp_path / "tuning", 10)
    embedder = get_embedder("pixel", SelectConfig(pixel_side=16))
    active = ActiveConfig(threshold="auto", target_skip=0.5, calibration_batches=5, n_generate=2,
                          sampler_steps=2, embedder="pixel", similarity="mean-pairwise")  # fmt: skip
    ft = tiny_finetune(steps=10, batch_size=4, active=active)
    finetune(base, tuning, parse_method("active"), 0, ft, PromptConfig(), tiny_diffusion(),
             tmp_path / "m", embedder)  # fmt: skip
    log = json.loads((tmp_path / "m" / "training_log.json").read_text())
    skipped = np.mean([r["skipped"] for r in log["active"]])
    assert abs(skipped - 0.5) <= 0.15, (skipped, log["active_config"]["threshold"])
    assert len(log["active_config"]["calibration_similarities"]) == 5


@pytest.mark.parametrize("threshold", [1.5, -1.01])
def test_threshold_outside_minus_one_one_is_rejected(setup, tmp_path, threshold):
    base, tuning = setup
    ft = tiny_finetune(active=ActiveConfig(threshold=threshold))
    with pytest.raises(
        ValueError, match=r"finetune.active.threshold: .* out of range \(expected >= -1 and <= 1\)"
    ):
        finetune(
            base,
            tuning,
            parse_method("active"),
            0,
            ft,
            PromptConfig(),
            tiny_diffusion(),
            tmp_path / "m",
            object(),
        )
    assert not (tmp_path / "m").exists()


def test_tuning_resolution_the_model_cannot_take_is_rejected(setup, tmp_path):
    base, _ = setup
    tuning = real_image_set(tmp_path / "t24", 2, resolution=24)
    with pytest.raises(ModelError, match="resolution 24 cannot be used"):
        finetune(
            base,
            tuning,
            parse_method("random"),
            0,
            tiny_finetune(),
            PromptConfig(),
            tiny_diffusion(),
            tmp_path / "m",
        )


@pytest.mark.parametrize("name", ["no-finetune", "retrieval"])
def test_methods_without_finetuning_reference_the_base_model_and_say_so(setup, tmp_path, name):
    base, tuning = setup
    out = tmp_path / "m"
    finetune(
        base, tuning, parse_method(name), 0, tiny_finetune(), PromptConfig(), tiny_diffusion(), out
    )
    log = json.loads((out / "training_log.json").read_text())
    assert log["fine_tuned"] is False
    assert log["message"] == f"not fine-tuned: method {name} uses the base model"
    assert not (out / "unet").exists()  # the artifact is a reference, not a copy
    info = json.loads((out / "tgap_model.json").read_text())
    assert info["trained"] == [] and info["base_model"]["path"] == str(base.resolve())
    before, after = unet_weights(base), load_model(out).unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_lora_writes_the_adapter_alone_and_loads_as_a_plain_merged_unet(setup, tmp_path):
    base, tuning = setup
    finetune(
        base,
        tuning,
        parse_method("random"),
        0,
        tiny_finetune(steps=4, lora_rank=2),
        PromptConfig(),
        tiny_diffusion(),
        tmp_path / "m",
    )
    out = tmp_path / "m"
    assert not (out / "unet").exists()
    adapter = load_file(out / "pytorch_lora_weights.safetensors")
    assert adapter and all(k.startswith("unet.") and "lora" in k for k in adapter)
    before, after = unet_weights(base), load_model(out).unet.state_dict()
    assert before.keys() == after.keys()  # no lora_ keys left: merged at load
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("attn" in k for k in changed)


def test_finetune_streams_its_tuning_set(setup, tmp_path, monkeypatch):
    """Memory flat in N: the fine-tune never loads the whole tuning set at once."""

    def whole_set(self):
        raise AssertionError(f"load_all on {self.root}")

    monkeypatch.setattr(ImageSet, "load_all", whole_set)
    base, tuning = setup
    reads = []
    load_many = ImageSet.load_many
    monkeypatch.setattr(
        ImageSet, "load_many", lambda s, idx: reads.append(len(idx)) or load_many(s, idx)
    )
    finetune(base, tuning, parse_method("random"), 0, tiny_finetune(steps=3, batch_size=2),
             PromptConfig(), tiny_diffusion(), tmp_path / "m")  # fmt: skip
    assert reads and max(reads) <= 2


WORKER = """
import sys
from pathlib import Path
from tiny import tiny_diffusion, tiny_finetune
from tgap.config import PromptConfig
from tgap.diffusion.dreambooth import finetune
from tgap.imageset import ImageSet
from tgap.methods import parse_method
base, tuning, out, checkpoint_uri = sys.argv[1:5]
finetune(base, ImageSet(tuning), parse_method("random"), 3,
         tiny_finetune(steps=40, checkpoint_every=5, with_prior_preservation=True,
                       num_class_images=4, class_sampler_steps=1, checkpoint_uri=checkpoint_uri),
         PromptConfig(), tiny_diffusion(), out)
"""


def _run(args, **kwargs):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
    }
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def _stored_manifests(uri: str) -> list[str]:
    return [u for u in storage.list_uris(uri) if u.endswith("/manifest.json")]


@pytest.mark.parametrize("store", ["local", "s3"])
def test_resume_after_sigkill_gives_the_same_weights_as_an_uninterrupted_run(
    setup, tmp_path, request, store
):
    """SIGKILL a fine-tune once it has checkpointed step 10, run it again, and the weights and
    losses equal an uninterrupted run's bit for bit. ``local``: the rerun finds its output
    folder's checkpoints (a retry on the same node). ``s3``: the rerun starts with an EMPTY
    folder (another node) and resumes from ``finetune.checkpoint_uri`` on the real S3 server."""
    base, tuning = setup
    uri = ""
    if store == "s3":
        bucket = f"ckpt-{uuid.uuid4().hex[:10]}"
        request.getfixturevalue("s3").client().make_bucket(bucket)
        uri = f"s3://{bucket}/run-1"

    def checkpointed_step_10() -> bool:
        if uri:
            return any("/step-000010/" in m for m in _stored_manifests(uri))
        return (tmp_path / "killed" / "checkpoints" / "step-000010").exists()

    straight = _run([base, tuning.root, tmp_path / "straight", ""])
    killed = _run([base, tuning.root, tmp_path / "killed", uri])
    deadline = time.time() + 120
    while not checkpointed_step_10():
        assert killed.poll() is None and time.time() < deadline, killed.stderr.read().decode()
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / "complete").exists()
    if uri:
        shutil.rmtree(tmp_path / "killed")
    resumed = _run([base, tuning.root, tmp_path / "killed", uri])
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    if uri:  # removed once the model is complete
        assert storage.list_uris(uri) == []
    assert straight.wait() == 0, straight.stderr.read().decode()
    a, b = unet_weights(tmp_path / "straight"), unet_weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = json.loads((tmp_path / "straight" / "training_log.json").read_text())
    log_b = json.loads((tmp_path / "killed" / "training_log.json").read_text())
    assert log_b["resumed_from"] and log_b["resumed_from"][0] >= 10
    assert log_a["loss"] == log_b["loss"]


def _local_checkpoint(folder: Path, step: int, payload: bytes) -> Path:
    path = folder / f"step-{step:06d}"
    path.mkdir(parents=True)
    (path / "state.pt").write_bytes(payload)
    (path / "unet.safetensors").write_bytes(payload * 2)
    return path


def test_stored_checkpoints_resume_only_complete_steps_and_keep_the_newest_two(tmp_path):
    """Data objects first, manifest last: a step without its manifest (a push cut off) or whose
    files differ from it is never resumed; the newest complete one is, whole."""
    store = CheckpointStore(f"file://{tmp_path / 'bucket' / 'ft'}")
    local = tmp_path / "node-a"
    for step in (5, 10, 15):
        store.push(_local_checkpoint(local, step, f"s{step}".encode()))
    assert store.steps() == [10, 15]  # step 5 removed, manifest first
    assert not (tmp_path / "bucket" / "ft" / "step-000005").exists()
    # A push of step 20 cut off before its manifest; step 15's state rewritten under it.
    half = tmp_path / "bucket" / "ft" / "step-000020"
    half.mkdir()
    (half / "state.pt").write_bytes(b"s20")
    (tmp_path / "bucket" / "ft" / "step-000015" / "state.pt").write_bytes(b"torn")
    pulled = store.pull_latest(tmp_path / "node-b" / "checkpoints")
    assert pulled == tmp_path / "node-b" / "checkpoints" / "step-000010"
    assert (pulled / "state.pt").read_bytes() == b"s10"
    assert sorted(p.name for p in pulled.parent.iterdir()) == ["step-000010"]  # no temp folder
    assert store.pull_latest(tmp_path / "node-c", newer_than=15) is None
    store.clear()
    assert store.steps() == []


def test_a_checkpoint_store_that_cannot_be_written_fails_before_the_model_loads(
    setup, tmp_path, monkeypatch
):
    """A wrong ``finetune.checkpoint_uri`` (here: credentials that may list but not write) is
    the error, before any GPU time: not a warning per checkpoint after the model has loaded."""
    import tgap.diffusion.dreambooth as dreambooth

    base, tuning = setup

    def refused(uri, data):
        raise storage.StorageError(f"{uri}: write failed: access denied")

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the store was checked")

    monkeypatch.setattr(storage, "write_bytes", refused)
    monkeypatch.setattr(dreambooth, "load_model", no_model)
    ft = tiny_finetune(checkpoint_uri=f"file://{tmp_path / 'bucket'}")
    with pytest.raises(storage.StorageError, match=r"/\.writable: write failed: access denied"):
        finetune(base, tuning, parse_method("random"), 0, ft, PromptConfig(), tiny_diffusion(),
                 tmp_path / "model")  # fmt: skip


def test_the_checkpoint_key_follows_the_inputs_not_where_or_how_often_it_checkpoints(setup):
    base, tuning = setup
    reference = {"content_hash": "sha256:base"}

    def prefix(seed=0, ft=None, tuning_set=tuning, prints=None):
        identity = checkpoint_identity(
            parse_method("random"), seed, ft or tiny_finetune(), PromptConfig(), tiny_diffusion(),
            tuning_set, reference, prints or {},
        )  # fmt: skip
        return checkpoint_prefix("s3://bucket/runs", f"random-seed{seed}-n{len(tuning)}", identity)

    same = prefix()
    assert same.startswith("s3://bucket/runs/finetune/random-seed0-n8-") and same == prefix()
    assert prefix(ft=tiny_finetune(checkpoint_every=1, checkpoint_uri="gs://x")) == same
    other = copy.copy(tuning)
    other.info = {**tuning.info, "content_hash": "another"}
    for changed in (prefix(seed=1), prefix(ft=tiny_finetune(learning_rate=1e-2)),
                    prefix(tuning_set=other), prefix(prints={"clip_weights": "sha256:c"})):  # fmt: skip
        assert changed != same


def test_a_finished_output_is_not_trained_again(setup, tmp_path):
    base, tuning = setup
    ft = tiny_finetune(steps=2)
    first = finetune(
        base,
        tuning,
        parse_method("random"),
        0,
        ft,
        PromptConfig(),
        tiny_diffusion(),
        tmp_path / "m",
    )
    mtime = (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime
    again = finetune(
        base,
        tuning,
        parse_method("random"),
        0,
        replace(ft, steps=3),
        PromptConfig(),
        tiny_diffusion(),
        tmp_path / "m",
    )
    assert again == first
    assert (
        tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors"
    ).stat().st_mtime == mtime


ACTIVE_WORKER = """
import sys
from pathlib import Path
from tiny import tiny_diffusion, tiny_finetune
from tgap.config import ActiveConfig, PromptConfig, SelectConfig
from tgap.diffusion.dreambooth import finetune
from tgap.embed import get_embedder
from tgap.imageset import ImageSet
from tgap.methods import parse_method
base, tuning, out = sys.argv[1:4]
active = ActiveConfig(threshold="auto", target_skip=0.5, calibration_batches=4, n_generate=2,
                      sampler_steps=2, similarity="mean-pairwise")
finetune(base, ImageSet(tuning), parse_method("active"), 0,
         tiny_finetune(steps=12, batch_size=4, active=active), PromptConfig(), tiny_diffusion(),
         out, get_embedder("pixel", SelectConfig(pixel_side=16)))
"""


def _active_run(args, env_update):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **env_update}
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name not in env_update:
            env.pop(name, None)
    return subprocess.Popen([sys.executable, "-c", ACTIVE_WORKER, *map(str, args)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def test_active_finetune_is_the_same_alone_at_parallelism_1_and_beside_a_branch_at_2(
    setup, tmp_path
):
    """The loop task's environment comes from the config (``cluster.threads_per_task``), the
    same at either parallelism; run alone, then beside another branch (a concurrent fine-tune
    of another seed's data), the weights and the skip decisions are identical."""
    from pipelines.tgap_pipeline import thread_env
    from tgap.config import load_config

    base, _ = setup
    tuning = real_image_set(tmp_path / "tuning", 6)
    other = real_image_set(tmp_path / "other", 8)
    envs = {}
    for parallelism in (1, 2):
        config = load_config(
            ROOT / "pipelines/configs/micro.yaml", [f"cluster.parallelism={parallelism}"]
        )
        envs[parallelism] = thread_env(config.cluster.threads_per_task)
    assert envs[1] == envs[2] == {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    alone = _active_run([base, tuning.root, tmp_path / "alone"], envs[1])
    assert alone.wait() == 0, alone.stderr.read().decode()
    beside = _active_run([base, other.root, tmp_path / "beside"], envs[2])
    pair = _active_run([base, tuning.root, tmp_path / "pair"], envs[2])
    assert pair.wait() == 0, pair.stderr.read().decode()
    assert beside.wait() == 0, beside.stderr.read().decode()

    a, b = unet_weights(tmp_path / "alone"), unet_weights(tmp_path / "pair")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = json.loads((tmp_path / "alone" / "training_log.json").read_text())
    log_b = json.loads((tmp_path / "pair" / "training_log.json").read_text())
    assert [r["skipped"] for r in log_a["active"]] == [r["skipped"] for r in log_b["active"]]
    assert log_a["active"] == log_b["active"] and log_a["loss"] == log_b["loss"]
    assert log_a["trained_steps"] == 12 and log_a["skipped"] > 0  # skipped batches replaced
