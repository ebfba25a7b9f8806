"""Each KFP component on its own: its ``python_func`` called on small real artifacts.

In the style of kubeflow/pipelines-components: the function a component wraps is called the way
the KFP executor calls it (parameters as the pipeline passes them, artifacts as objects with a
``.path``), and the test checks what it leaves at its output paths. The inputs are real: the
upstream stages' own outputs on 160 PneumoniaMNIST images and a 16-px diffusion model, so one
module-scoped chain serves every stage. The chain is wired as ``pipelines/tgap_pipeline.py``
wires the tasks: one work item of each loop kind (``tgap.grid``): a fine-tuning row (random),
a per-seed ``no-finetune`` item with two sizes, and a retrieval row.
"""

from __future__ import annotations

import csv
import inspect
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components import build_components
from pipelines.tgap_pipeline import pipeline_arguments
from tgap.artifacts import CellArtifact, Evaluation, SelectionReport, TrainingLog
from tgap.config import ConfigError, load_config
from tgap.evaluation import EvaluationError
from tgap.imageset import ImageSet
from tgap.validate import RunValidationError

ROOT = Path(__file__).resolve().parents[1]
# One work item per loop kind, as expand-grid hands them to the loops.
ITEMS = {
    "random": {"method": "random", "size": 8, "seed": 0},
    "no-finetune": {"method": "no-finetune", "seed": 0, "sizes": [4, 8]},
    "retrieval": {"method": "retrieval", "size": 8, "seed": 0},
}
KIND = {"random": "finetune", "no-finetune": "no-finetune", "retrieval": "retrieval"}
RATIOS = [0.0, 1.0]
SMALL = [
    "data.max_images=160",
    "data.resolution=16",
    "grid.methods=[random, no-finetune, retrieval]",
    "grid.sizes=[4, 8]",
    "diffusion.sample_size=16",
    "diffusion.block_out_channels=[8, 16]",
    "diffusion.cross_attention_dim=16",
    "diffusion.text_hidden_size=16",
    "diffusion.pretrain_steps=0",
    "diffusion.device=cpu",
    "finetune.steps=2",
    "finetune.batch_size=4",
    "finetune.checkpoint_every=1",
    "finetune.num_class_images=2",
    "generate.n_per_label=8",
    "generate.batch_size=8",
    "generate.steps=2",
    "classifier.epochs=1",
    "evaluation.bootstrap_resamples=20",
    f"evaluation.supplementation_ratios={RATIOS}",
]


@pytest.fixture(scope="module")
def config(pneumoniamnist):
    return load_config(
        ROOT / "pipelines" / "configs" / "micro.yaml",
        SMALL
        + [
            f"data.source={pneumoniamnist.parent}",
            f"diffusion.tokenizer={pneumoniamnist.parents[1] / 'clip-tokenizer'}",
        ],
    )


@pytest.fixture(scope="module")
def args(config) -> dict:
    """The pipeline's parameters for a micro run shrunk further, as the pipeline passes them."""
    return pipeline_arguments(config)


@pytest.fixture(scope="module")
def stage():
    """The components as the pipeline builds them; ``.python_func`` is the wrapped function."""
    return build_components("cpu-image", "gpu-image")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("components")


def expand(stage, args, **changes):
    """The expand-grid component called as the pipeline calls it, with ``changes`` applied."""
    p = {**args, "compiled_kinds": ["finetune", "no-finetune", "retrieval"], **changes}
    return stage.expand_grid.python_func(**p)


# --------------------------------------------------------------------------- the chain


@pytest.fixture(scope="module")
def ingested(stage, args, out, artifact):
    o = {
        "pool": artifact(Dataset, out / "ingest" / "pool"),
        "real_train": artifact(Dataset, out / "ingest" / "real_train"),
        "real_val": artifact(Dataset, out / "ingest" / "real_val"),
        "real_test": artifact(Dataset, out / "ingest" / "real_test"),
        "summary": artifact(Markdown, out / "ingest" / "summary"),
    }
    stage.ingest.python_func(
        data=args["data"], generate=args["generate"], fingerprint="sha256:abc", **o
    )
    return {k: Path(v.path) for k, v in o.items()}


@pytest.fixture(scope="module")
def reference(stage, args, out, artifact, ingested):
    model = artifact(Model, out / "reference" / "model")
    stage.train_classifier.python_func(
        train_set=artifact(Dataset, ingested["real_train"]),
        classifier=args["classifier"],
        seed=0,
        generate=args["generate"],
        subsample="all",
        model=model,
    )
    return Path(model.path)


@pytest.fixture(scope="module")
def embedded(stage, args, out, artifact, ingested, reference):
    embeddings = artifact(Artifact, out / "embed" / "embeddings")
    stage.embed.python_func(
        pool=artifact(Dataset, ingested["pool"]),
        reference_classifier=artifact(Model, reference),
        select=args["select"],
        embeddings=embeddings,
    )
    return Path(embeddings.path)


@pytest.fixture(scope="module")
def base(stage, args, out, artifact, ingested):
    base_model = artifact(Model, out / "base" / "base_model")
    stage.prepare_base_model.python_func(
        diffusion=args["diffusion"],
        prompt=args["prompt"],
        pool=artifact(Dataset, ingested["pool"]),
        base_model=base_model,
    )
    return Path(base_model.path)


@pytest.fixture(scope="module")
def class_images(stage, args, out, artifact, base):
    """The class-images task fed expand-grid's fine-tuning rows (two seeds here)."""
    images = artifact(Artifact, out / "class-images" / "images")
    stage.class_images.python_func(
        base_model=artifact(Model, base),
        rows=[ITEMS["random"], {**ITEMS["random"], "seed": 1}],
        diffusion=args["diffusion"],
        prompt=args["prompt"],
        finetune=args["finetune"],
        images=images,
    )
    return Path(images.path)


@pytest.fixture(scope="module")
def selected(stage, args, out, artifact, ingested, embedded, reference):
    outputs = {}
    for name, item in ITEMS.items():
        o = {
            "tuning_set": artifact(Dataset, out / name / "select" / "tuning_set"),
            "retrieved": artifact(Dataset, out / name / "select" / "retrieved"),
        }
        stage.select_tuning_set.python_func(
            pool=artifact(Dataset, ingested["pool"]),
            embeddings=artifact(Artifact, embedded),
            reference_classifier=artifact(Model, reference),
            item=item,
            select=args["select"],
            generate=args["generate"],
            **o,
        )
        outputs[name] = {k: Path(v.path) for k, v in o.items()}
    return outputs


@pytest.fixture(scope="module")
def tuned(stage, args, out, artifact, base, selected, reference, class_images):
    """Only the fine-tuning row reaches fine-tune (the pipeline's `finetune` loop)."""
    model = artifact(Model, out / "random" / "finetune" / "model")
    stage.finetune.python_func(
        base_model=artifact(Model, base),
        tuning_set=artifact(Dataset, selected["random"]["tuning_set"]),
        reference_classifier=artifact(Model, reference),
        class_images=artifact(Artifact, class_images),
        row=ITEMS["random"],
        select=args["select"],
        diffusion=args["diffusion"],
        prompt=args["prompt"],
        finetune=args["finetune"],
        model=model,
    )
    return Path(model.path)


@pytest.fixture(scope="module")
def generators(tuned, base):
    """The model each item generates with: the base for the others."""
    return {"random": tuned, "no-finetune": base, "retrieval": base}


@pytest.fixture(scope="module")
def generated(stage, args, out, artifact, generators, selected):
    """The synthetic set of each item; retrieval's is select's retrieved set (no generate)."""
    outputs = {"retrieval": selected["retrieval"]["retrieved"]}
    for name in ("random", "no-finetune"):
        synthetic = artifact(Dataset, out / name / "generate" / "synthetic")
        stage.generate.python_func(
            model=artifact(Model, generators[name]),
            item=ITEMS[name],
            data=args["data"],
            diffusion=args["diffusion"],
            prompt=args["prompt"],
            generate=args["generate"],
            synthetic=synthetic,
        )
        outputs[name] = Path(synthetic.path)
    return outputs


@pytest.fixture(scope="module")
def evaluated(stage, args, out, artifact, ingested, generated):
    """Each item's three directions, with classifiers from the train-classifier component; the
    real-trained classifier depends on the seed alone, so one serves every item (as KFP's
    cache makes it in the pipeline)."""

    def train(folder: Path, train_set: Path, subsample: str) -> Path:
        model = artifact(Model, folder / "model")
        stage.train_classifier.python_func(
            train_set=artifact(Dataset, train_set),
            classifier=args["classifier"],
            seed=0,
            generate=args["generate"],
            subsample=subsample,
            model=model,
        )
        return Path(model.path)

    def evaluate(folder: Path, model: Path, test_set: Path) -> dict:
        o = {
            "result": artifact(Artifact, folder / "result"),
            "classification": artifact(ClassificationMetrics, folder / "cm"),
        }
        stage.evaluate_classifier.python_func(
            model=artifact(Model, model),
            test_set=artifact(Dataset, test_set),
            evaluation=args["evaluation"],
            **o,
        )
        return {**o, "test_set": test_set}

    real = train(out / "train-real", ingested["real_train"], "match-synthetic")
    r2r = evaluate(out / "r2r", real, ingested["real_test"])
    outputs = {"real_model": real, "r2r": r2r}
    for name, synthetic in generated.items():
        synth = train(out / name / "train-synthetic", synthetic, "all")
        outputs[name] = {
            "synthetic_model": synth,
            "s2r": evaluate(out / name / "s2r", synth, ingested["real_test"]),
            "r2s": evaluate(out / name / "r2s", real, synthetic),
            "r2r": r2r,
        }
    return outputs


@pytest.fixture(scope="module")
def curves(stage, args, out, artifact, ingested, generated):
    outputs = {}
    for name, synthetic in generated.items():
        curve = artifact(Artifact, out / name / "supplementation" / "curve")
        stage.supplementation.python_func(
            item=ITEMS[name],
            real_train=artifact(Dataset, ingested["real_train"]),
            synthetic=artifact(Dataset, synthetic),
            real_test=artifact(Dataset, ingested["real_test"]),
            classifier=args["classifier"],
            generate=args["generate"],
            evaluation=args["evaluation"],
            curve=curve,
        )
        outputs[name] = Path(curve.path)
    return outputs


def fter_inputs(args, artifact, ingested, selected, generated, evaluated, reference):
    def inputs(name: str, supplementation: Path) -> dict:
        return dict(
            item=ITEMS[name],
            s2r=evaluated[name]["s2r"]["result"],
            r2s=evaluated[name]["r2s"]["result"],
            r2r=evaluated[name]["r2r"]["result"],
            supplementation=artifact(Artifact, supplementation),
            synthetic=artifact(Dataset, generated[name]),
            real_test=artifact(Dataset, ingested["real_test"]),
            tuning_set=artifact(Dataset, selected[name]["tuning_set"]),
            reference_classifier=artifact(Model, reference),
            select=args["select"],
            evaluation=args["evaluation"],
        )

    return inputs


@pytest.fixture(scope="module")
def cells(
    stage, args, out, artifact, ingested, selected, generated, evaluated, curves,
    reference,
):  # fmt: skip
    inputs = fter_inputs(args, artifact, ingested, selected, generated, evaluated, reference)
    outputs = {}
    for name in ITEMS:
        o = {
            "cell": artifact(Artifact, out / name / "compute-fter" / "cell"),
        }
        stage.compute_fter.python_func(**inputs(name, curves[name]), **o)
        outputs[name] = o
    return outputs


# --------------------------------------------------------------------------- one test a component


def test_expand_grid_validates_the_run_form_and_grid_items_split_the_rows_by_loop(
    stage, args, config
):
    rows = expand(stage, args)
    assert rows == config.grid_rows() and len(rows) == 6

    def items(kind, of=rows):
        return stage.grid_items.python_func(rows=of, kind=kind)

    assert items("finetune") == [{"method": "random", "size": s, "seed": 0} for s in (4, 8)]
    assert items("retrieval") == [{"method": "retrieval", "size": s, "seed": 0} for s in (4, 8)]
    # One item per seed for no-finetune: the base model generates once for every size.
    assert items("no-finetune") == [{"method": "no-finetune", "seed": 0, "sizes": [4, 8]}]
    two_seeds = expand(stage, args, methods=["random"], seeds=[0, 1], compiled_kinds=["finetune"])
    assert [(r["size"], r["seed"]) for r in items("finetune", two_seeds)] == [
        (4, 0), (4, 1), (8, 0), (8, 1)
    ]  # fmt: skip


def test_expand_grid_rejects_an_unknown_method_and_a_method_whose_loop_is_missing(stage, args):
    with pytest.raises(ConfigError, match="no-such-method"):
        expand(stage, args, methods=["random", "no-such-method"])
    # A method whose loop the compiled spec lacks.
    with pytest.raises(ConfigError, match="need the retrieval loop"):
        expand(stage, args, compiled_kinds=["finetune", "no-finetune"])
    # A compiled loop the run form leaves without methods (the backend cannot collect from it).
    with pytest.raises(ConfigError, match="leave this compiled spec's retrieval loop without"):
        expand(stage, args, methods=["random", "no-finetune"])


def test_fingerprint_hashes_each_source_and_changes_when_the_data_changes(
    stage, args, pneumoniamnist, tmp_path
):
    source = tmp_path / "data"
    shutil.copytree(pneumoniamnist.parent, source)
    data = {**args["data"], "source": str(source)}
    call = dict(select=args["select"], diffusion=args["diffusion"], classifier=args["classifier"])
    first = stage.fingerprint.python_func(data=data, **call)
    assert first.data.startswith("sha256:") and len(first.data) == len("sha256:") + 64
    assert first.base_model == "preset:tiny-pixel"  # built from config: nothing to read
    assert first.curated == first.clip_weights == first.classifier_weights == ""
    found = json.loads(first.all)
    assert found["data"] == {"uri": str(source), "fingerprint": first.data}
    assert set(found) == {"data", "curated", "base_model", "clip_weights", "classifier_weights"}
    assert stage.fingerprint.python_func(data=data, **call).data == first.data  # same listing
    (source / "extra.txt").write_text("a new file in the bucket\n")
    assert stage.fingerprint.python_func(data=data, **call).data != first.data


def test_ingest_writes_four_disjoint_sets_the_real_grids_and_a_summary(ingested, args):
    names = ("pool", "real_train", "real_val", "real_test")
    sets = {name: ImageSet(ingested[name]) for name in names}
    assert sum(len(s) for s in sets.values()) == 160
    ids = [{r.original_id for r in s.records} for s in sets.values()]
    assert sum(len(i) for i in ids) == len(set().union(*ids))  # disjoint
    # MedMNIST: real-val is the npz's official val split
    assert all(i.startswith("val/") for i in ids[2]) and ids[2]
    labels = args["data"]["label_policy"].values()
    assert all(set(s.labels) == set(labels) for s in sets.values())
    # The real test set's sample grids, drawn once here for every cell.
    grids = sorted(p.name for p in ingested["real_test"].glob("real_grid_*.png"))
    assert grids == ["real_grid_no-finding.png", "real_grid_unhealthy.png"]
    summary = ingested["summary"].read_text()
    assert "# Ingest summary" in summary
    assert json.loads((ingested["pool"] / "stage_time.json").read_text())["stage"] == "ingest"


def test_validate_run_accepts_the_grid_and_rejects_a_size_larger_than_the_pool(
    stage, args, artifact, tmp_path, ingested, base
):
    pool = ImageSet(ingested["pool"]).counts()
    call = dict(
        pool=artifact(Dataset, ingested["pool"]),
        real_train=artifact(Dataset, ingested["real_train"]),
        base_model=artifact(Model, base),
        data=args["data"],
        select=args["select"],
        generate=args["generate"],
        evaluation=args["evaluation"],
    )
    checked = artifact(Artifact, tmp_path / "ok" / "checked")
    rows = expand(stage, args)
    stage.validate_run.python_func(rows=rows, checked=checked, **call)
    result = json.loads((Path(checked.path) / "validation.json").read_text())
    assert result["rows"] == 6 and result["counts"]["pool"] == pool and result["problems"] == []
    assert result["base_model"]["resolution"] == 16
    too_big = min(pool.values()) + 1
    bad = [*rows, {"method": "random", "size": too_big, "seed": 0}]
    with pytest.raises(RunValidationError) as failed:
        stage.validate_run.python_func(
            rows=bad, checked=artifact(Artifact, tmp_path / "bad" / "checked"), **call
        )
    message = str(failed.value)
    assert "\n" not in message  # one problem, one line
    assert f"grid row random/{too_big}/0: grid.sizes: {too_big} per label" in message
    assert f"pool has only {min(pool.values())}" in message


def test_train_classifier_trains_on_all_or_as_many_real_images_as_synthetic(
    stage, args, artifact, tmp_path, reference, evaluated, ingested
):
    info = json.loads((reference / "classifier.json").read_text())
    assert info["labels"] == ImageSet(ingested["real_train"]).labels
    real_train = ImageSet(ingested["real_train"]).counts()
    assert info["n_per_label"] == real_train  # "all": every real-train image
    matched = json.loads((evaluated["real_model"] / "classifier.json").read_text())
    # match-synthetic: generate.n_per_label real images per label, as many as are generated
    assert matched["n_per_label"] == {label: 8 for label in real_train}
    assert matched["n_train"] + matched["n_val"] == 16
    with pytest.raises(ValueError, match="subsample 'some'"):
        stage.train_classifier.python_func(
            train_set=artifact(Dataset, ingested["real_train"]),
            classifier=args["classifier"],
            seed=0,
            generate=args["generate"],
            subsample="some",
            model=artifact(Model, tmp_path / "model"),
        )


def test_embed_writes_one_vector_per_pool_image_per_embedder(embedded, ingested):
    pool = ImageSet(ingested["pool"])
    for name in ("pixel", "classifier"):
        info = json.loads((embedded / name / "embedder.json").read_text())
        assert info["count"] == len(pool) and info["content_hash"] == pool.info["content_hash"]
    assert not (embedded / "clip").exists()  # no CLIP weights given: no "CLIP" embeddings


def test_prepare_base_model_builds_the_tiny_preset_and_says_it_is_not_pretrained(base):
    info = json.loads((base / "tgap_model.json").read_text())
    assert info["pretrained"] is False and info["resolution"] == 16
    assert info["content_hash"]
    assert (base / "unet").is_dir() and (base / "tokenizer").is_dir()


def test_class_images_makes_the_prior_images_once_per_fine_tuning_seed(
    stage, args, artifact, tmp_path, class_images, base
):
    assert sorted(p.name for p in class_images.iterdir() if p.is_dir()) == ["seed-0", "seed-1"]
    seed0 = np.load(class_images / "seed-0" / "class_images.npy")
    seed1 = np.load(class_images / "seed-1" / "class_images.npy")
    assert seed0.shape == seed1.shape == (2, 16, 16) and seed0.dtype == np.uint8
    assert not np.array_equal(seed0, seed1)  # each seed samples its own images
    assert seed0.std() > 0

    def run(folder: str, rows: list, finetune: dict) -> Path:
        images = artifact(Artifact, tmp_path / folder / "images")
        stage.class_images.python_func(
            base_model=artifact(Model, base),
            rows=rows,
            diffusion=args["diffusion"],
            prompt=args["prompt"],
            finetune=finetune,
            images=images,
        )
        return Path(images.path)

    # Deterministic per seed: another task makes the same seed-0 images.
    again = run("again", [ITEMS["random"]], args["finetune"])
    assert np.array_equal(np.load(again / "seed-0" / "class_images.npy"), seed0)
    # Rows that do not fine-tune need none; nor does a run without prior preservation.
    assert not list(run("none", [ITEMS["retrieval"]], args["finetune"]).glob("seed-*"))
    no_prior = {**args["finetune"], "with_prior_preservation": False}
    assert not list(run("no-prior", [ITEMS["random"]], no_prior).glob("seed-*"))


def test_select_writes_the_tuning_set_and_only_retrieval_a_retrieved_set(selected):
    for name in ("random", "retrieval"):
        tuning = ImageSet(selected[name]["tuning_set"])
        assert tuning.counts() == {label: 8 for label in tuning.labels}
        report = SelectionReport.read(selected[name]["tuning_set"])
        assert report.method == name and sum(e.picked for e in report.labels.values()) == 16
    assert len(ImageSet(selected["random"]["retrieved"])) == 0
    retrieved = ImageSet(selected["retrieval"]["retrieved"])
    assert retrieved.counts() == {label: 8 for label in retrieved.labels}  # generate.n_per_label
    tuning_ids = {r.original_id for r in ImageSet(selected["retrieval"]["tuning_set"]).records}
    assert not tuning_ids & {r.original_id for r in retrieved.records}
    # The per-seed no-finetune item: one tuning set per size, in size-<n>/ sub-folders.
    root = selected["no-finetune"]["tuning_set"]
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["size-4", "size-8"]
    for size in (4, 8):
        tuning = ImageSet(root / f"size-{size}")
        assert tuning.counts() == {label: size for label in tuning.labels}
        assert SelectionReport.read(root / f"size-{size}").method == "no-finetune"
    assert len(ImageSet(selected["no-finetune"]["retrieved"])) == 0


def test_finetune_stores_the_trained_unet_and_a_reference_to_the_base(
    stage, args, artifact, tmp_path, tuned, base, selected, reference
):
    from tgap.diffusion.build import load_model

    trained = TrainingLog.read(tuned)
    assert trained.fine_tuned and len(trained.loss) == 2
    assert all(loss is not None and loss > 0 for loss in trained.loss)
    info = json.loads((tuned / "tgap_model.json").read_text())
    base_info = json.loads((base / "tgap_model.json").read_text())
    assert info["trained"] == ["unet"]
    assert info["base_model"]["content_hash"] == base_info["content_hash"]
    assert info["base_model"]["uri"] == str(base)
    # Only what training changed is stored: no copy of the base's other components.
    assert sorted(p.name for p in tuned.iterdir() if p.is_dir()) == ["unet"]
    # The shared class images were read, not generated again inside the model folder.
    assert not (tuned / "class_images.npy").exists()
    model, original = load_model(tuned), load_model(base)
    unet = dict(model.unet.named_parameters())
    changed = [n for n, p in original.unet.named_parameters() if not p.equal(unet[n])]
    assert changed, "the stored UNet is the base's: fine-tune trained nothing"
    assert all(
        p.equal(q)
        for p, q in zip(
            model.text_encoder.parameters(), original.text_encoder.parameters(), strict=True
        )
    )
    # A class-images artifact without this seed's folder is an error, not a silent regenerate.
    empty = tmp_path / "class-images"
    empty.mkdir()
    with pytest.raises(ValueError, match="class images .*seed-0.*no such file"):
        stage.finetune.python_func(
            base_model=artifact(Model, base),
            tuning_set=artifact(Dataset, selected["random"]["tuning_set"]),
            reference_classifier=artifact(Model, reference),
            class_images=artifact(Artifact, empty),
            row=ITEMS["random"],
            select=args["select"],
            diffusion=args["diffusion"],
            prompt=args["prompt"],
            finetune=args["finetune"],
            model=artifact(Model, tmp_path / "model"),
        )


def test_generate_samples_n_per_label_with_the_item_model(generated, base, tuned):
    grids = ["grid_no-finding.png", "grid_unhealthy.png"]
    for name in ("random", "no-finetune"):
        synthetic = ImageSet(generated[name])
        assert synthetic.counts() == {label: 8 for label in synthetic.labels}
        assert synthetic.resolution == 16
        assert sorted(p.name for p in generated[name].glob("grid_*.png")) == grids
    # The generator's small files travel beside the images (compute-FTER reads them there).
    for name in ("training_log.json", "tgap_model.json"):
        assert (generated["random"] / name).read_bytes() == (tuned / name).read_bytes()
    assert (generated["random"] / "generator_stage_time.json").is_file()
    assert (generated["no-finetune"] / "tgap_model.json").read_bytes() == (
        base / "tgap_model.json"
    ).read_bytes()
    # The no-finetune item says what the report shows for a model that was not fine-tuned.
    log = TrainingLog.read(generated["no-finetune"])
    assert log.method == "no-finetune" and not log.fine_tuned and "base model" in log.message
    # Same seed and prompts: only the weights differ between the fine-tuned and the base model.
    tuned, untuned = ImageSet(generated["random"]), ImageSet(generated["no-finetune"])
    pixels = [s.load_many(np.arange(len(s))) for s in (tuned, untuned)]
    assert pixels[0].shape == pixels[1].shape == (16, 16, 16)
    assert not np.array_equal(*pixels), "generate ignored the fine-tuned weights"


def test_evaluate_classifier_writes_the_evaluation_and_the_kfp_classification(evaluated):
    for name in ITEMS:
        for direction in ("s2r", "r2s", "r2r"):
            o = evaluated[name][direction]
            result = Evaluation.read(o["result"].path)
            assert result.metrics["n"] == len(ImageSet(o["test_set"]))
            assert 0 <= result["auroc"] <= 1
            assert o["classification"].metadata["confusionMatrix"]["annotationSpecs"]
            assert (Path(o["result"].path) / "predictions.csv").is_file()


def test_supplementation_trains_one_classifier_per_ratio_and_r0_is_the_real_classifier(
    stage, args, artifact, tmp_path, curves, evaluated, ingested, generated
):
    for name, folder in curves.items():
        curve = json.loads((folder / "supplementation.json").read_text())
        assert curve["ratios"] == RATIOS and [p["ratio"] for p in curve["points"]] == RATIOS
        assert curve["seed"] == 0 and curve["size_per_label"] == 8
        assert curve["synthetic"] == str(generated[name])  # this item's synthetic set
        zero, one = curve["points"]
        # r = 0: the R→R classifier itself (the same seeded 8 real images per label).
        assert zero["n_real"] == 16 and zero["n_synthetic"] == 0
        r2r = Evaluation.read(evaluated["r2r"]["result"].path)
        assert zero["auroc"] == pytest.approx(r2r["auroc"])
        assert one["n_real"] == 16 and one["n_synthetic"] == 16  # r x real, per label
    # No ratios configured: an empty curve, and no classifier trained.
    curve = artifact(Artifact, tmp_path / "curve")
    stage.supplementation.python_func(
        item=ITEMS["random"],
        real_train=artifact(Dataset, ingested["real_train"]),
        synthetic=artifact(Dataset, generated["random"]),
        real_test=artifact(Dataset, ingested["real_test"]),
        classifier=args["classifier"],
        generate=args["generate"],
        evaluation={**args["evaluation"], "supplementation_ratios": []},
        curve=curve,
    )
    empty = json.loads((Path(curve.path) / "supplementation.json").read_text())
    assert empty["ratios"] == [] and empty["points"] == []


def test_compute_fter_writes_each_items_cells_from_the_evaluations_and_the_curve(
    stage, cells, evaluated, curves, selected
):
    for name in ITEMS:
        s2r = Evaluation.read(evaluated[name]["s2r"]["result"].path)["auroc"]
        r2s = Evaluation.read(evaluated[name]["r2s"]["result"].path)["auroc"]
        root = Path(cells[name]["cell"].path)
        sizes = ITEMS[name].get("sizes", [ITEMS[name].get("size")])
        folders = [root / f"size-{s}" for s in sizes] if name == "no-finetune" else [root]
        curve = json.loads((curves[name] / "supplementation.json").read_text())
        for size, folder in zip(sizes, folders, strict=True):
            art = CellArtifact.read(folder)
            assert art.key == (name, size, 0)
            assert art.metrics["s2r_auroc"] == pytest.approx(s2r)
            assert art.metrics["fter"] == pytest.approx(s2r / r2s)
            assert art.metrics["n_tuning"] == 2 * size
            # The curve comes from the supplementation stage, unchanged.
            assert art.supplementation.auroc == [p["auroc"] for p in curve["points"]]
            for asset in ("selection.json", "real_grid_no-finding.png", "roc_s2r.json"):
                assert asset in art.assets, (name, asset)
            seconds = json.loads((folder / "assets" / "stage_seconds.json").read_text())
            assert {"select", "evaluate-S2R", "supplementation", "compute-FTER"} <= set(seconds)
            assert ("fine-tune" in seconds) == (KIND[name] == "finetune")
            assert ("generate" in seconds) == (KIND[name] != "retrieval")
    # The fine-tuned generator's files come from beside the synthetic set, not from the model.
    tuned_cell = CellArtifact.read(Path(cells["random"]["cell"].path))
    assert {"training_log.json", "tgap_model.json"} <= set(tuned_cell.assets)
    assert "model" not in inspect.signature(stage.compute_fter.python_func).parameters
    nf = CellArtifact.read(Path(cells["no-finetune"]["cell"].path) / "size-8")
    assert "training_log.json" in nf.assets  # generate's "not fine-tuned" log


def test_compute_fter_reads_the_curve_and_trains_nothing(
    stage, args, artifact, tmp_path, ingested, selected, generated, evaluated,
    reference,
):  # fmt: skip
    inputs = fter_inputs(args, artifact, ingested, selected, generated, evaluated, reference)
    not_a_curve = tmp_path / "curve"
    not_a_curve.mkdir()
    with pytest.raises(EvaluationError, match="not a supplementation folder"):
        stage.compute_fter.python_func(
            **inputs("random", not_a_curve),
            cell=artifact(Artifact, tmp_path / "cell"),
        )


def test_report_builds_every_file_from_each_loops_cells(
    stage, args, out, artifact, cells, ingested, embedded, base, reference
):
    o = {
        "results": artifact(Artifact, out / "report" / "results"),
        "html": artifact(HTML, out / "report" / "html"),
        "summary": artifact(Markdown, out / "report" / "summary"),
        "metrics": artifact(Metrics, out / "report" / "metrics"),
    }
    sections = {name: args[name] for name in ("data", "select", "diffusion", "prompt")}
    stage.report.python_func(
        pool=artifact(Dataset, ingested["pool"]),
        embeddings=artifact(Artifact, embedded),
        base_model=artifact(Model, base),
        reference_classifier=artifact(Model, reference),
        run_name="components",
        **sections,
        finetune=args["finetune"],
        generate=args["generate"],
        classifier=args["classifier"],
        evaluation=args["evaluation"],
        fingerprints=json.dumps({"data": {"uri": "x", "fingerprint": "sha256:abc"}}),
        cells_finetune=[cells["random"]["cell"]],
        cells_no_finetune=[cells["no-finetune"]["cell"]],
        cells_retrieval=[cells["retrieval"]["cell"]],
        rows_finetune=[ITEMS["random"]],
        rows_no_finetune=[ITEMS["no-finetune"]],
        rows_retrieval=[ITEMS["retrieval"]],
        **o,
    )
    results = Path(o["results"].path)
    with open(results / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    expected = {
        ("random", 8): Path(cells["random"]["cell"].path),
        ("no-finetune", 4): Path(cells["no-finetune"]["cell"].path) / "size-4",
        ("no-finetune", 8): Path(cells["no-finetune"]["cell"].path) / "size-8",
        ("retrieval", 8): Path(cells["retrieval"]["cell"].path),
    }
    assert sorted((r["method"], int(r["size"])) for r in rows) == sorted(expected)
    for r in rows:
        fter = CellArtifact.read(expected[(r["method"], int(r["size"]))]).metrics["fter"]
        assert float(r["fter"]) == pytest.approx(fter)
        key = f"fter.{r['method']}.{r['size']}"
        assert o["metrics"].metadata[key] == pytest.approx(fter), key
    assert Path(o["html"].path).read_text() == (results / "report.html").read_text()
    assert Path(o["summary"].path).read_text() == (results / "summary.md").read_text()
    provenance = json.loads((results / "results.json").read_text())["provenance"]
    assert provenance["fingerprints"]["data"]["fingerprint"] == "sha256:abc"
    assert {"ingest", "embed", "prepare-base-model"} <= set(provenance["run_stage_seconds"])
    models = provenance["models"]
    assert {"tgap_model", "base_model", "reference_classifier", "embedders"} <= set(models)
    assert set(models["embedders"]) == {"pixel", "classifier"}
    html = (results / "report.html").read_text()
    assert "models.reference_classifier was randomly initialised" in html
