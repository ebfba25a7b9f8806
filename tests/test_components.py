"""Each KFP component on its own: its ``python_func`` called on small real artifacts.

In the style of kubeflow/pipelines-components: the function a component wraps is called the way
the KFP executor calls it (parameters as the pipeline passes them, artifacts as objects with a
``.path``), and the test checks what it leaves at its output paths. The inputs are real: the
upstream stages' own outputs on 160 PneumoniaMNIST images and a 16-px diffusion model, so one
module-scoped chain serves every stage (about a minute on two cores).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from components import build_components
from pipelines.tgap_pipeline import pipeline_arguments
from tgap.artifacts import CellArtifact, Evaluation, SelectionReport, TrainingLog
from tgap.config import load_config
from tgap.imageset import ImageSet

ROOT = Path(__file__).resolve().parents[1]
ROWS = {method: {"method": method, "size": 8, "seed": 0} for method in ("random", "retrieval")}
SMALL = [
    "data.max_images=160",
    "data.resolution=16",
    "grid.methods=[random, retrieval]",
    "grid.sizes=[8]",
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
]


@pytest.fixture(scope="module")
def args(pneumoniamnist) -> dict:
    """The pipeline's parameters for a micro run shrunk further, as the pipeline passes them."""
    config = load_config(
        ROOT / "pipelines" / "configs" / "micro.yaml",
        SMALL
        + [
            f"data.source={pneumoniamnist.parent}",
            f"diffusion.tokenizer={pneumoniamnist.parents[1] / 'clip-tokenizer'}",
        ],
    )
    return pipeline_arguments(config)


@pytest.fixture(scope="module")
def stage():
    """The components as the pipeline builds them; ``.python_func`` is the wrapped function."""
    return build_components("cpu-image", "gpu-image")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("components")


# --------------------------------------------------------------------------- the chain


@pytest.fixture(scope="module")
def ingested(stage, args, out, artifact):
    o = {
        "pool": artifact(Dataset, out / "ingest" / "pool"),
        "real_train": artifact(Dataset, out / "ingest" / "real_train"),
        "real_test": artifact(Dataset, out / "ingest" / "real_test"),
        "summary": artifact(Markdown, out / "ingest" / "summary"),
    }
    stage.ingest.python_func(data=args["data"], generate=args["generate"], **o)
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
def selected(stage, args, out, artifact, ingested, embedded, reference):
    outputs = {}
    for method, row in ROWS.items():
        o = {
            "tuning_set": artifact(Dataset, out / method / "select" / "tuning_set"),
            "retrieved": artifact(Dataset, out / method / "select" / "retrieved"),
        }
        stage.select_tuning_set.python_func(
            pool=artifact(Dataset, ingested["pool"]),
            embeddings=artifact(Artifact, embedded),
            reference_classifier=artifact(Model, reference),
            row=row,
            select=args["select"],
            generate=args["generate"],
            **o,
        )
        outputs[method] = {k: Path(v.path) for k, v in o.items()}
    return outputs


@pytest.fixture(scope="module")
def tuned(stage, args, out, artifact, base, selected, reference):
    outputs = {}
    for method, row in ROWS.items():
        model = artifact(Model, out / method / "finetune" / "model")
        stage.finetune.python_func(
            base_model=artifact(Model, base),
            tuning_set=artifact(Dataset, selected[method]["tuning_set"]),
            reference_classifier=artifact(Model, reference),
            row=row,
            select=args["select"],
            diffusion=args["diffusion"],
            prompt=args["prompt"],
            finetune=args["finetune"],
            model=model,
        )
        outputs[method] = Path(model.path)
    return outputs


@pytest.fixture(scope="module")
def generated(stage, args, out, artifact, tuned, selected):
    outputs = {}
    for method, row in ROWS.items():
        synthetic = artifact(Dataset, out / method / "generate" / "synthetic")
        stage.generate.python_func(
            model=artifact(Model, tuned[method]),
            retrieved=artifact(Dataset, selected[method]["retrieved"]),
            row=row,
            data=args["data"],
            diffusion=args["diffusion"],
            prompt=args["prompt"],
            generate=args["generate"],
            synthetic=synthetic,
        )
        outputs[method] = Path(synthetic.path)
    return outputs


@pytest.fixture(scope="module")
def evaluated(stage, args, out, artifact, ingested, generated):
    """random's three directions: classifiers trained by the train-classifier component."""

    def train(name: str, train_set: Path, subsample: str) -> Path:
        model = artifact(Model, out / "random" / name / "model")
        stage.train_classifier.python_func(
            train_set=artifact(Dataset, train_set),
            classifier=args["classifier"],
            seed=0,
            generate=args["generate"],
            subsample=subsample,
            model=model,
        )
        return Path(model.path)

    synth = train("train-synthetic", generated["random"], "all")
    real = train("train-real", ingested["real_train"], "match-synthetic")
    outputs = {}
    for direction, model, test_set in (
        ("s2r", synth, ingested["real_test"]),
        ("r2s", real, generated["random"]),
        ("r2r", real, ingested["real_test"]),
    ):
        o = {
            "result": artifact(Artifact, out / "random" / direction / "result"),
            "metrics": artifact(Metrics, out / "random" / direction / "metrics"),
            "classification": artifact(ClassificationMetrics, out / "random" / direction / "cm"),
        }
        stage.evaluate_classifier.python_func(
            model=artifact(Model, model),
            test_set=artifact(Dataset, test_set),
            evaluation=args["evaluation"],
            **o,
        )
        outputs[direction] = {**o, "test_set": test_set}
    return {"models": {"synthetic": synth, "real": real}, **outputs}


@pytest.fixture(scope="module")
def cell(stage, args, out, artifact, ingested, selected, tuned, generated, evaluated, reference):
    o = {
        "cell": artifact(Artifact, out / "random" / "compute-fter" / "cell"),
        "metrics": artifact(Metrics, out / "random" / "compute-fter" / "metrics"),
    }
    stage.compute_fter.python_func(
        row=ROWS["random"],
        s2r=evaluated["s2r"]["result"],
        r2s=evaluated["r2s"]["result"],
        r2r=evaluated["r2r"]["result"],
        synthetic=artifact(Dataset, generated["random"]),
        real_test=artifact(Dataset, ingested["real_test"]),
        real_train=artifact(Dataset, ingested["real_train"]),
        tuning_set=artifact(Dataset, selected["random"]["tuning_set"]),
        model=artifact(Model, tuned["random"]),
        reference_classifier=artifact(Model, reference),
        select=args["select"],
        classifier=args["classifier"],
        generate=args["generate"],
        evaluation=args["evaluation"],
        **o,
    )
    return o


# --------------------------------------------------------------------------- one test a component


def test_ingest_writes_three_disjoint_sets_the_real_grids_and_a_summary(ingested, args):
    sets = {name: ImageSet(ingested[name]) for name in ("pool", "real_train", "real_test")}
    assert sum(len(s) for s in sets.values()) == 160
    ids = [{r.original_id for r in s.records} for s in sets.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    labels = args["data"]["label_policy"].values()
    assert all(s.labels == sorted(labels) or set(s.labels) == set(labels) for s in sets.values())
    # The real test set's sample grids, drawn once here for every cell.
    grids = sorted(p.name for p in ingested["real_test"].glob("real_grid_*.png"))
    assert grids == ["real_grid_no-finding.png", "real_grid_unhealthy.png"]
    assert "# Ingest summary" in ingested["summary"].read_text()
    assert json.loads((ingested["pool"] / "stage_time.json").read_text())["stage"] == "ingest"


def test_train_classifier_trains_on_all_or_as_many_real_images_as_synthetic(
    stage, args, artifact, tmp_path, reference, evaluated, ingested
):
    info = json.loads((reference / "classifier.json").read_text())
    assert info["labels"] == ImageSet(ingested["real_train"]).labels
    matched = json.loads((evaluated["models"]["real"] / "classifier.json").read_text())
    assert matched != info  # match-synthetic: a subsample of real-train, not every image
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
    assert info["pretrained"] is False
    assert (base / "unet").is_dir() and (base / "tokenizer").is_dir()


def test_select_writes_the_tuning_set_and_only_retrieval_a_retrieved_set(selected):
    for method in ROWS:
        tuning = ImageSet(selected[method]["tuning_set"])
        assert tuning.counts() == {label: 8 for label in tuning.labels}
        report = SelectionReport.read(selected[method]["tuning_set"])
        assert report.method == method and sum(e.picked for e in report.labels.values()) == 16
    assert len(ImageSet(selected["random"]["retrieved"])) == 0
    retrieved = ImageSet(selected["retrieval"]["retrieved"])
    assert retrieved.counts() == {label: 8 for label in retrieved.labels}  # generate.n_per_label
    tuning_ids = {r.original_id for r in ImageSet(selected["retrieval"]["tuning_set"]).records}
    assert not tuning_ids & {r.original_id for r in retrieved.records}


def test_finetune_trains_dreambooth_methods_and_passes_the_base_through_for_retrieval(tuned):
    trained = TrainingLog.read(tuned["random"])
    assert trained.fine_tuned and len(trained.loss) == 2
    passed = TrainingLog.read(tuned["retrieval"])
    assert not passed.fine_tuned and "base model" in passed.message
    assert (tuned["retrieval"] / "unet").is_dir()  # still a loadable model folder


def test_generate_samples_n_per_label_and_retrieval_stands_in_the_retrieved_set(
    generated, selected
):
    synthetic = ImageSet(generated["random"])
    assert synthetic.counts() == {label: 8 for label in synthetic.labels}
    assert sorted(p.name for p in generated["random"].glob("grid_*.png")) == [
        "grid_no-finding.png",
        "grid_unhealthy.png",
    ]
    stand_in = ImageSet(generated["retrieval"])
    retrieved = ImageSet(selected["retrieval"]["retrieved"])
    assert stand_in.info["content_hash"] == retrieved.info["content_hash"]


def test_evaluate_classifier_writes_the_evaluation_and_the_kfp_metrics(evaluated):
    for direction in ("s2r", "r2s", "r2r"):
        o = evaluated[direction]
        result = Evaluation.read(o["result"].path)
        assert result.metrics["n"] == len(ImageSet(o["test_set"]))
        assert o["metrics"].metadata["accuracy"] == pytest.approx(result["accuracy"])
        assert o["classification"].metadata["confusionMatrix"]["annotationSpecs"]
        assert (Path(o["result"].path) / "predictions.csv").is_file()


def test_compute_fter_writes_the_cell_with_fter_assets_and_stage_times(cell, evaluated):
    art = CellArtifact.read(cell["cell"].path)
    s2r = Evaluation.read(evaluated["s2r"]["result"].path)["auroc"]
    r2s = Evaluation.read(evaluated["r2s"]["result"].path)["auroc"]
    assert art.metrics["s2r_auroc"] == pytest.approx(s2r)
    assert art.metrics["fter"] == pytest.approx(s2r / r2s)
    for name in ("training_log.json", "selection.json", "real_grid_no-finding.png", "roc_s2r.json"):
        assert name in art.assets, name
    seconds = json.loads((Path(cell["cell"].path) / "assets" / "stage_seconds.json").read_text())
    assert {"select", "fine-tune", "generate", "evaluate-S2R", "compute-FTER"} <= set(seconds)
    assert cell["metrics"].metadata["fter"] == pytest.approx(art.metrics["fter"])


def test_report_builds_every_file_and_names_each_models_source(
    stage, args, out, artifact, cell, ingested, embedded, base, reference
):
    o = {
        "results": artifact(Artifact, out / "report" / "results"),
        "html": artifact(HTML, out / "report" / "html"),
        "summary": artifact(Markdown, out / "report" / "summary"),
        "metrics": artifact(Metrics, out / "report" / "metrics"),
    }
    stage.report.python_func(
        cells=[cell["cell"]],
        pool=artifact(Dataset, ingested["pool"]),
        embeddings=artifact(Artifact, embedded),
        base_model=artifact(Model, base),
        reference_classifier=artifact(Model, reference),
        run_name="components",
        data=args["data"],
        grid=[ROWS["random"]],
        select=args["select"],
        diffusion=args["diffusion"],
        prompt=args["prompt"],
        finetune=args["finetune"],
        generate=args["generate"],
        classifier=args["classifier"],
        evaluation=args["evaluation"],
        **o,
    )
    results = Path(o["results"].path)
    with open(results / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    fter = CellArtifact.read(cell["cell"].path).metrics["fter"]
    assert [r["method"] for r in rows] == ["random"] and float(rows[0]["fter"]) == pytest.approx(
        fter
    )
    assert o["metrics"].metadata["fter.random.8"] == pytest.approx(fter)
    assert Path(o["html"].path).read_text() == (results / "report.html").read_text()
    models = json.loads((results / "results.json").read_text())["provenance"]["models"]
    assert {"tgap_model", "base_model", "reference_classifier", "embedders"} <= set(models)
    assert set(models["embedders"]) == {"pixel", "classifier"}
    html = (results / "report.html").read_text()
    assert "models.reference_classifier was randomly initialised" in html
