"""Classifier training/evaluation on real PneumoniaMNIST images (small sets built in tmp)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tgap import metrics
from tgap.classify import (
    ARCHS,
    NORMALISATION,
    Classifier,
    ClassifierError,
    build_model,
    evaluate_classifier,
    head_loss,
    load_resized,
    read_predictions,
    resize_images,
    train_classifier,
)
from tgap.config import ClassifierConfig
from tgap.imageset import ImageSet, ImageSetError, ImageSetWriter, to_grey_square

NPZ = Path(__file__).resolve().parents[1] / "../shared/data/pneumoniamnist/pneumoniamnist.npz"
LABELS = ["No Finding", "Unhealthy"]
FAST = ClassifierConfig(epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def pneumonia() -> dict[str, np.ndarray]:
    if not NPZ.is_file():
        pytest.skip(f"PneumoniaMNIST not found at {NPZ}")
    with np.load(NPZ) as data:
        return {k: data[k] for k in data.files}


def write_set(root: Path, images, ys, n_per_label, labels=LABELS, seed=0, resolution=32):
    rng = np.random.default_rng(seed)
    with ImageSetWriter(root, labels, resolution) as writer:
        for c, label in enumerate(labels):
            for i in rng.choice(np.flatnonzero(ys == c), n_per_label[c], replace=False):
                writer.add(images[i], label)
    return ImageSet(root)


@pytest.fixture(scope="module")
def sets(pneumonia, tmp_path_factory) -> dict[str, ImageSet]:
    root = tmp_path_factory.mktemp("classify")
    train_y = pneumonia["train_labels"].ravel()
    test_y = pneumonia["test_labels"].ravel()
    return {
        "train": write_set(root / "train", pneumonia["train_images"], train_y, (300, 300)),
        "small": write_set(root / "small", pneumonia["train_images"], train_y, (40, 40), seed=1),
        "test": write_set(root / "test", pneumonia["test_images"], test_y, (150, 150)),
        "one_class": write_set(root / "one", pneumonia["test_images"], test_y, (0, 30)),
    }


@pytest.fixture(scope="module")
def trained(sets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clf") / "model"
    train_classifier(sets["train"], ClassifierConfig(), seed=0, size_per_label=None, out_dir=out)
    return out


def test_every_config_arch_has_a_model_and_a_normalisation():
    # ARCHS is the config's classifier.arch choices: a new one needs both of these.
    for arch in ARCHS:
        channels = NORMALISATION[arch]["channels"]
        assert build_model(arch, 3)(torch.zeros(2, channels, 32, 32)).shape == (2, 3)


def test_small_cnn_reaches_a_sensible_auroc_on_real_xrays(trained, sets, tmp_path):
    result = evaluate_classifier(trained, sets["test"], tmp_path, resamples=200)
    # Measured: 0.948 (300 per label, 32 px, 15 epochs max, seed 0).
    assert result["auroc"] > 0.85
    assert result["accuracy"] > 0.7
    assert result["auroc_ci_low"] < result["auroc"] < result["auroc_ci_high"]


def test_classifier_folder_has_weights_and_truthful_info(trained):
    info = json.loads((trained / "classifier.json").read_text())
    assert info["arch"] == "small-cnn" and info["labels"] == LABELS and info["resolution"] == 32
    assert info["n_per_label"] == {"No Finding": 300, "Unhealthy": 300}
    # The validation split is carved from the 600 training images, at least one per label.
    assert info["n_train"] + info["n_val"] == 600 and info["n_val"] == 90
    assert 0 < info["threshold"] < 1
    assert 1 <= info["best_epoch"] <= len(info["history"]) <= 15
    assert info["val_auroc"] == max(h["val_auroc"] for h in info["history"])
    assert set(load_file(str(trained / "model.safetensors")))  # readable safetensors


def test_loaded_classifier_predicts_probabilities_and_features(trained, sets):
    clf = Classifier.load(trained)
    images = sets["test"].load_many(range(10))
    proba = clf.predict_proba(images)
    assert proba.shape == (10, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    features = clf.features(images)
    assert features.shape == (10, 128) and features.dtype == np.float32
    assert clf.predict_proba(images[:0]).shape == (0, 2)
    # Other resolutions are resized to the classifier's with the image-set resize.
    big = np.stack([np.asarray(Image.fromarray(im).resize((64, 64))) for im in images])
    small = np.stack([to_grey_square(im, 32) for im in big])
    np.testing.assert_allclose(clf.predict_proba(big), clf.predict_proba(small), atol=1e-6)
    np.testing.assert_array_equal(clf.predict(images), metrics.predict_labels(proba, clf.threshold))


def test_same_seed_gives_identical_weights_and_another_seed_does_not(sets, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train_classifier(sets["small"], FAST, seed=seed, size_per_label=30, out_dir=tmp_path / name)
    a, b, c = (load_file(str(tmp_path / n / "model.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_size_per_label_subsamples_each_label_and_rejects_too_many(sets, tmp_path):
    info = train_classifier(sets["small"], FAST, seed=0, size_per_label=10, out_dir=tmp_path / "m")
    assert info["n_per_label"] == {"No Finding": 10, "Unhealthy": 10}
    with pytest.raises(
        ClassifierError, match="'No Finding' has 40 images, fewer than size_per_label=41"
    ):
        train_classifier(sets["small"], FAST, seed=0, size_per_label=41, out_dir=tmp_path / "x")


def test_evaluation_files_agree_with_each_other(trained, sets, tmp_path):
    result = evaluate_classifier(trained, sets["test"], tmp_path, resamples=50)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["auroc"] == pytest.approx(result["auroc"])
    assert saved["n_per_class"] == {"No Finding": 150, "Unhealthy": 150}
    assert np.sum(saved["confusion_matrix"]) == 300
    assert saved["roc"]["fpr"][0] == 0 and saved["roc"]["tpr"][-1] == 1
    labels, y, scores = read_predictions(tmp_path)
    assert labels == LABELS and len(y) == 300
    assert metrics.auroc(y, scores) == pytest.approx(result["auroc"], abs=1e-5)
    with open(tmp_path / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0].keys() == {"file", "label", "score_No Finding", "score_Unhealthy", "predicted"}
    correct = np.mean([r["label"] == r["predicted"] for r in rows])
    assert correct == pytest.approx(result["accuracy"])
    cm = np.array(saved["confusion_matrix"])
    assert saved["accuracy_Unhealthy"] == pytest.approx(cm[1, 1] / cm[1].sum())


def test_one_class_test_set_gives_nan_auroc_with_a_reason(trained, sets, tmp_path):
    result = evaluate_classifier(trained, sets["one_class"], tmp_path, resamples=50)
    assert np.isnan(result["auroc"]) and np.isnan(result["auroc_ci_low"])
    assert "only one class" in result["auroc_undefined_reason"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["auroc"] is None  # strict JSON: null, never NaN
    assert 0 <= saved["accuracy"] <= 1


def test_mismatched_label_names_are_a_clear_error(trained, pneumonia, tmp_path):
    other = write_set(
        tmp_path / "other", pneumonia["test_images"], pneumonia["test_labels"].ravel(), (5, 5),
        labels=["Normal", "Pneumonia"],
    )  # fmt: skip
    with pytest.raises(ClassifierError, match="label names differ"):
        evaluate_classifier(trained, other, tmp_path / "out")


def test_empty_sets_are_a_clear_error(trained, tmp_path):
    with ImageSetWriter(tmp_path / "empty", LABELS, 32):
        pass
    empty = ImageSet(tmp_path / "empty")
    with pytest.raises(ImageSetError, match="empty image set"):
        evaluate_classifier(trained, empty, tmp_path / "out")
    with pytest.raises(ImageSetError, match="empty image set"):
        train_classifier(empty, FAST, 0, None, tmp_path / "m")


def test_a_label_with_one_image_cannot_be_split_for_validation(pneumonia, tmp_path):
    images, ys = pneumonia["train_images"], pneumonia["train_labels"].ravel()
    lopsided = write_set(tmp_path / "lop", images, ys, (1, 10))
    with pytest.raises(
        ClassifierError, match="'No Finding' has 1 training images; need at least 2"
    ):
        train_classifier(lopsided, FAST, 0, None, tmp_path / "m")


def test_densenet121_trains_loads_and_gives_1024_features(sets, tmp_path):
    config = ClassifierConfig(arch="densenet121", epochs=1, batch_size=16)
    info = train_classifier(sets["small"], config, seed=0, size_per_label=8, out_dir=tmp_path / "m")
    assert info["input"] == "grey repeated to 3 channels"
    clf = Classifier.load(tmp_path / "m")
    images = sets["small"].load_many(range(4))
    assert clf.features(images).shape == (4, 1024)
    assert clf.predict_proba(images).shape == (4, 2)


def test_densenet121_loads_trunk_weights_from_a_chexnet_style_checkpoint(sets, tmp_path):
    from torchvision.models import densenet121

    reference = densenet121(weights=None).state_dict()
    # CheXNet checkpoints: DataParallel prefix, wrapper name, legacy `norm.1` layer names.
    legacy = {
        "module.densenet121." + k.replace("norm1", "norm.1").replace("conv1", "conv.1"): v
        for k, v in reference.items()
    }
    torch.save({"state_dict": legacy}, tmp_path / "chexnet.pth.tar")
    config = ClassifierConfig(
        arch="densenet121", epochs=1, batch_size=16, learning_rate=0.0,
        weights=str(tmp_path / "chexnet.pth.tar"), augment=False,
    )  # fmt: skip
    info = train_classifier(sets["small"], config, seed=0, size_per_label=4, out_dir=tmp_path / "m")
    assert info["pretrained"]["tensors"] == sum(k.startswith("features.") for k in reference)
    loaded = load_file(str(tmp_path / "m" / "model.safetensors"))
    key = "denseblock1.denselayer1.conv1.weight"
    # Learning rate 0: the saved trunk is exactly the checkpoint's.
    assert torch.equal(loaded[f"trunk.{key}"], reference[f"features.{key}"])


def test_unknown_weights_layout_is_rejected(sets, tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    config = ClassifierConfig(arch="densenet121", epochs=1, weights=str(tmp_path / "bad.pt"))
    with pytest.raises(ClassifierError, match="no DenseNet-121 'features"):
        train_classifier(sets["small"], config, seed=0, size_per_label=4, out_dir=tmp_path / "m")


def test_load_resized_reads_in_chunks_the_same_pixels_as_resizing_the_whole_load(sets):
    images = sets["small"]
    picks = np.array([5, 0, 79, 3, 3, 41, 60])  # any order, repeats allowed (a subsample's)
    whole = resize_images(images.load_many(picks), 20)
    chunked = load_resized(images, picks, 20, chunk=3)
    assert chunked.dtype == np.uint8 and chunked.shape == (7, 20, 20)
    np.testing.assert_array_equal(chunked, whole)
    # At its own resolution it is the plain load; no indices give an empty (0, r, r) array.
    np.testing.assert_array_equal(load_resized(images, picks, 32, chunk=2), images.load_many(picks))
    assert load_resized(images, [], 20).shape == (0, 20, 20)


# --------------------------------------------------------------------------- heads

# Per image: class 0's own score ranks its images perfectly, class 1's misplaces one pair
# (image 0's 0.5 is above image 3's 0.4); labels [0, 0, 0, 1, 1, 1].
OWN_SCORES = np.array([[0.9, 0.5], [0.8, 0.2], [0.7, 0.3], [0.1, 0.4], [0.2, 0.9], [0.3, 0.8]])


class FixedLogits(torch.nn.Module):
    """Image k of ``fixed_images()`` (grey level 40 k) -> the logits of OWN_SCORES' row k."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey = x.mean(dim=(1, 2, 3)) * 0.25 + 0.5  # undo small-cnn's normalisation
        row = torch.round(grey * 255 / 40).long()
        return torch.logit(torch.tensor(OWN_SCORES, dtype=torch.float32))[row]


def fixed_images() -> np.ndarray:
    return np.stack([np.full((32, 32), 40 * k, np.uint8) for k in range(6)])


def fixed_classifier(head: str) -> Classifier:
    info = {"labels": LABELS, "resolution": 32, "arch": "small-cnn", "head": head,
            "normalisation": NORMALISATION["small-cnn"]}  # fmt: skip
    return Classifier(FixedLogits(), info)


def test_sigmoid_head_scores_each_label_on_its_own_output_so_per_class_aurocs_differ():
    y = np.array([0, 0, 0, 1, 1, 1])
    sigmoid = fixed_classifier("sigmoid").predict_proba(fixed_images())
    np.testing.assert_allclose(sigmoid, OWN_SCORES, atol=1e-6)  # not normalised
    result = metrics.classification_metrics(y, sigmoid, LABELS)
    assert result["auroc_No Finding"] == 1.0
    assert result["auroc_Unhealthy"] == pytest.approx(8 / 9)
    assert result["auroc"] == result["auroc_Unhealthy"]  # two labels: the positive label's
    # The same logits through softmax: one score is 1 - the other, one AUROC for both labels.
    softmax = fixed_classifier("softmax").predict_proba(fixed_images())
    np.testing.assert_allclose(softmax.sum(axis=1), 1, atol=1e-6)
    result = metrics.classification_metrics(y, softmax, LABELS)
    assert result["auroc_No Finding"] == result["auroc_Unhealthy"] == result["auroc"]


def test_sigmoid_loss_is_the_mean_one_vs_rest_binary_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -3.0]])
    y = torch.tensor([0, 2])
    p = torch.sigmoid(logits)
    target = torch.tensor([[1.0, 0, 0], [0, 0, 1]])
    by_hand = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert head_loss(logits, y, "sigmoid").item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert head_loss(logits, y, "softmax").item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item()
    )


def test_sigmoid_head_trains_reproducibly_and_lowers_its_loss(sets, tmp_path):
    config = ClassifierConfig(epochs=3, batch_size=8, head="sigmoid", augment=False)
    for name in ("a", "b"):
        train_classifier(sets["small"], config, seed=5, size_per_label=15, out_dir=tmp_path / name)
    info = json.loads((tmp_path / "a" / "classifier.json").read_text())
    assert info["head"] == "sigmoid" and info["config"]["head"] == "sigmoid"
    losses = [h["train_loss"] for h in info["history"]]
    assert losses[-1] < losses[0]
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    clf = Classifier.load(tmp_path / "a")
    assert clf.head == "sigmoid"
    result = evaluate_classifier(tmp_path / "a", sets["small"], tmp_path / "eval", resamples=20)
    assert result["head"] == "sigmoid"
    assert result["auroc"] == pytest.approx(result["auroc_Unhealthy"])
    scores = read_predictions(tmp_path / "eval")[2]
    assert not np.allclose(scores.sum(axis=1), 1, atol=1e-3)  # independent outputs


def test_an_unknown_head_is_a_clear_error(sets, tmp_path):
    config = ClassifierConfig(epochs=1, head="tanh")
    with pytest.raises(ClassifierError, match="classifier.head 'tanh': expected one of softmax"):
        train_classifier(sets["small"], config, seed=0, size_per_label=4, out_dir=tmp_path / "m")
    with pytest.raises(ClassifierError, match="classifier.json head 'tanh'"):
        fixed_classifier("tanh")
