"""Tuning-set selection on real PneumoniaMNIST images: balance, clusters, determinism, retrieval."""

from __future__ import annotations

import json
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import silhouette_score

from tgap.config import SelectConfig
from tgap.embed import EmbedderError, embed_pool
from tgap.imageset import ImageSet, ImageSetWriter
from tgap.methods import Method, parse_method
from tgap.select import SelectionError, cluster, equal_shares, select_tuning_set

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pneumoniamnist"
LABELS = ["No Finding", "Unhealthy"]
PER_LABEL = 150


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[ImageSet, Path]:
    """A pool of PER_LABEL real train images per label, with its pixel embeddings."""
    path = DATA / "pneumoniamnist.npz"
    if not path.is_file():
        pytest.fail(f"real test data missing: expected {path}")
    with np.load(path) as data:
        images, labels = data["train_images"], data["train_labels"][:, 0]
    root = tmp_path_factory.mktemp("select")
    with ImageSetWriter(root / "pool", LABELS, 28, source_uri=str(path)) as writer:
        for c, label in enumerate(LABELS):
            for i in np.flatnonzero(labels == c)[:PER_LABEL]:
                writer.add(images[i], label, f"p{i}", "pneumoniamnist", "pool", f"train/{i}")
    pool = ImageSet(root / "pool")
    embed_pool(pool, SelectConfig(pixel_side=16), None, root / "embeddings")
    return pool, root / "embeddings"


def run(pool, tmp_path, method: str, size: int, seed: int = 0, n_retrieve: int = 20, **select):
    image_set, embeddings = pool
    config = SelectConfig(pixel_side=16, default_embedder="pixel", **select)
    tag = f"{method}-{size}-{seed}-{len(list(tmp_path.iterdir()))}"
    report = select_tuning_set(
        image_set,
        embeddings,
        parse_method(method, "pixel"),
        size,
        seed,
        config,
        n_retrieve,
        None,
        tmp_path / f"tuning-{tag}",
        tmp_path / f"retrieved-{tag}",
    )
    return report, ImageSet(tmp_path / f"tuning-{tag}"), ImageSet(tmp_path / f"retrieved-{tag}")


def test_random_picks_exactly_n_distinct_pool_images_per_label(pool, tmp_path):
    report, tuning, _ = run(pool, tmp_path, "random", 40)
    assert tuning.counts() == {label: 40 for label in LABELS}
    records = pool[0].records
    for label in LABELS:
        idx = report["pool_indices"][label]
        assert len(set(idx)) == 40 and all(records[i].label == label for i in idx)
    # Manifest columns carried over from the pool, pixels identical.
    first = report["pool_indices"][LABELS[0]][0]
    assert tuning.records[0].original_id == records[first].original_id
    assert tuning.records[0].patient_id == records[first].patient_id
    np.testing.assert_array_equal(tuning.load(0), pool[0].load(first))
    on_disk = json.loads((tuning.root / "selection.json").read_text())
    assert on_disk["pool_indices"] == report["pool_indices"]
    assert tuning.info["selection"]["method"] == "random"
    assert "pool_indices" not in tuning.info["selection"]


@pytest.mark.parametrize("method", ["spectral-pixel", "kmeans-pixel"])
def test_clustered_selection_takes_equal_shares_and_duplicates_only_short_clusters(
    pool, tmp_path, method
):
    size = 140  # k=10 -> share 14; with 150 images per label several clusters are smaller
    report, tuning, _ = run(pool, tmp_path, method, size, n_retrieve=5)
    assert tuning.counts() == {label: size for label in LABELS}
    for label in LABELS:
        entry = report["labels"][label]
        shares = [c["share"] for c in entry["clusters"]]
        assert len(shares) == 10 and sum(shares) == size and set(shares) == {14}
        assert sum(c["size"] for c in entry["clusters"]) == PER_LABEL
        for c in entry["clusters"]:
            assert c["duplicates"] == max(c["share"] - c["size"], 0)
        # The picks agree with the report: per cluster exactly its share, repeats only in
        # clusters smaller than their share, each image repeated as evenly as possible.
        picks = report["pool_indices"][label]
        clusters = report["pick_clusters"][label]
        by_cluster = {c["cluster"]: c for c in entry["clusters"]}
        assert Counter(clusters) == {cid: c["share"] for cid, c in by_cluster.items()}
        counts = Counter(picks)
        for i, n in counts.items():
            cid = clusters[picks.index(i)]
            c = by_cluster[cid]
            if c["size"] >= c["share"]:
                assert n == 1
            else:
                assert n in (c["share"] // c["size"], -(-c["share"] // c["size"]))
        assert (
            entry["duplicates"]
            == size - len(counts)
            == sum(c["duplicates"] for c in entry["clusters"])
        )
        # The tuning manifest repeats exactly the duplicated pool images.
        ids = Counter(r.original_id for r in tuning.records if r.label == label)
        assert sum(ids.values()) - len(ids) == entry["duplicates"]
    # The case under test happened: some cluster was short, some was not.
    clusters = [c for label in LABELS for c in report["labels"][label]["clusters"]]
    assert any(c["duplicates"] for c in clusters) and not all(c["duplicates"] for c in clusters)


def test_cluster_images_clusters_a_seeded_sample_of_the_pool(pool, tmp_path):
    """select.cluster_images (the thesis: 10,000 per label): every pick comes from a seeded
    sample of that many pool images per label, and the sample is the same for every size."""
    report, tuning, _ = run(pool, tmp_path, "spectral-pixel", 40, cluster_images=60)
    again, _, _ = run(pool, tmp_path, "spectral-pixel", 20, cluster_images=60)
    assert tuning.counts() == {label: 40 for label in LABELS}
    for label in LABELS:
        entry = report["labels"][label]
        assert sum(c["size"] for c in entry["clusters"]) == 60
        assert entry["pool_count"] == PER_LABEL
        # both sizes pick from one sample of 60 (the sample does not depend on the size)
        assert len(set(again["pool_indices"][label]) | set(report["pool_indices"][label])) <= 60
    assert report["cluster_images"] == 60
    # A sample too small for the clusters or the size is refused (config.validate refuses both
    # at load; here for a direct call), never padded with duplicates.
    with pytest.raises(SelectionError, match=r"only 5 .* in its select.cluster_images=5 sample"):
        run(pool, tmp_path, "spectral-pixel", 40, cluster_images=5)
    with pytest.raises(SelectionError, match=r"size=40 .* only 30 .*cluster_images=30 sample"):
        run(pool, tmp_path, "spectral-pixel", 40, cluster_images=30)


def test_equal_shares_known_answer():
    clusters = np.array([0] + [1] * 5 + [2] * 10)  # sizes 1, 5, 10
    rng = np.random.default_rng(0)
    positions, report = equal_shares(clusters, 10, rng)
    # 10 // 3 = 3 each, the remaining pick goes to the largest cluster.
    assert [c.share for c in report] == [3, 3, 4]
    assert [c.duplicates for c in report] == [2, 0, 0]
    assert Counter(positions.tolist())[0] == 3  # the one-image cluster is repeated 3 times
    others = [p for p in positions.tolist() if p != 0]
    assert len(others) == len(set(others)) == 7
    assert sum(1 for p in others if 1 <= p <= 5) == 3


def test_selection_is_deterministic_under_a_seed(pool, tmp_path):
    a, tuning_a, retrieved_a = run(pool, tmp_path, "spectral-pixel", 30, seed=3)
    b, tuning_b, retrieved_b = run(pool, tmp_path, "spectral-pixel", 30, seed=3)
    c, _, _ = run(pool, tmp_path, "spectral-pixel", 30, seed=4)
    assert a == b
    assert tuning_a.info["content_hash"] == tuning_b.info["content_hash"]
    assert len(retrieved_a) == len(retrieved_b) == 0  # only method retrieval retrieves
    assert a["pool_indices"] != c["pool_indices"]
    _, _, retrieved_a = run(pool, tmp_path, "retrieval", 30, seed=3)
    _, _, retrieved_b = run(pool, tmp_path, "retrieval", 30, seed=3)
    assert len(retrieved_a) > 0
    assert retrieved_a.info["content_hash"] == retrieved_b.info["content_hash"]


def test_retrieved_set_is_nearest_pool_images_disjoint_from_tuning_set(pool, tmp_path):
    image_set, embeddings = pool
    report, tuning, retrieved = run(pool, tmp_path, "retrieval", 30, n_retrieve=25)
    assert retrieved.counts() == {label: 25 for label in LABELS}
    vectors = np.load(embeddings / "pixel" / "embeddings.npy")
    labels = image_set.label_indices
    for li, label in enumerate(LABELS):
        picked = set(report["pool_indices"][label])
        got = report["retrieved_pool_indices"][label]
        assert not picked & set(got) and len(set(got)) == 25
        assert all(labels[i] == li for i in got)
        # Known answer: every retrieved image is at least as close to the tuning set as every
        # pool image of the label that was left out.
        queries = vectors[sorted(picked)]
        rest = [i for i in np.flatnonzero(labels == li) if i not in picked and i not in got]
        nearest = {i: np.linalg.norm(queries - vectors[i], axis=1).min() for i in [*got, *rest]}
        assert max(nearest[i] for i in got) <= min(nearest[i] for i in rest) + 1e-5
    # Disjoint by identity too (original ids), and drawn only from the pool (so from no test set).
    tuning_ids = {r.original_id for r in tuning.records}
    retrieved_ids = {r.original_id for r in retrieved.records}
    assert not tuning_ids & retrieved_ids
    assert retrieved_ids <= {r.original_id for r in image_set.records}
    assert report["retrieval"]["embedder"] == "pixel"


def test_retrieval_short_of_pool_images_takes_what_is_left_and_reports_it(pool, tmp_path):
    report, tuning, retrieved = run(pool, tmp_path, "retrieval", 130, n_retrieve=40)
    assert retrieved.counts() == {label: 20 for label in LABELS}
    for label in LABELS:
        entry = report["retrieval"]["labels"][label]
        assert (entry["retrieved"], entry["short"]) == (20, 20)
    assert not {r.original_id for r in tuning.records} & {r.original_id for r in retrieved.records}


def test_random_retrieval_and_no_finetune_share_the_tuning_set(pool, tmp_path):
    a, _, _ = run(pool, tmp_path, "random", 20, seed=1)
    b, _, _ = run(pool, tmp_path, "retrieval", 20, seed=1)
    assert a["pool_indices"] == b["pool_indices"]


def test_spectral_clusters_of_pixels_separate_better_than_random_assignment(pool):
    image_set, embeddings = pool
    vectors = np.load(embeddings / "pixel" / "embeddings.npy")
    members = np.flatnonzero(image_set.label_indices == 1)
    x = vectors[members]
    assignment = cluster(x, 10, "spectral", 10, seed=0)
    assert len(np.unique(assignment)) == 10
    shuffled = np.random.default_rng(0).permutation(assignment)  # same sizes, random members
    spectral, chance = silhouette_score(x, assignment), silhouette_score(x, shuffled)
    assert spectral > chance + 0.05, (spectral, chance)


def test_bad_requests_are_clear_errors(pool, tmp_path):
    with pytest.raises(SelectionError, match=r"select\.k=200 clusters but the pool has only 150"):
        run(pool, tmp_path, "spectral-pixel", 100, k=200)
    with pytest.raises(SelectionError, match="size=151 per label but the pool has only 150"):
        run(pool, tmp_path, "random", 151)
    with pytest.raises(SelectionError, match="smaller than select.k=10"):
        run(pool, tmp_path, "spectral-pixel", 5)
    with pytest.raises(SelectionError, match="no 'No Finding' pool images are left"):
        run(pool, tmp_path, "retrieval", 150, n_retrieve=1)
    with pytest.raises(EmbedderError, match=r"no clip embeddings.*select\.clip_weights"):
        run(pool, tmp_path, "spectral-clip", 30)
    with pytest.raises(EmbedderError, match="unknown embedder 'dino'"):
        image_set, embeddings = pool
        method = Method("spectral-dino", "spectral", "dino", "dreambooth")
        select_tuning_set(
            image_set,
            embeddings,
            method,
            30,
            0,
            SelectConfig(),
            5,
            None,
            tmp_path / "t",
            tmp_path / "r",
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(SelectionError, match="holds no images"):
        run(pool, tmp_path, "curated", 10, curated_source=str(tmp_path / "empty"))
    with pytest.raises(SelectionError, match="needs select.curated_source"):
        run(pool, tmp_path, "curated", 10)
    # Nothing half-written is left behind by a failed selection.
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".tuning", "tuning"))]


class BrightnessClassifier:
    """Stand-in for tgap.classify.Classifier: P(Unhealthy) rises with mean brightness."""

    labels = LABELS

    @classmethod
    def load(cls, model_dir):
        assert Path(model_dir).name == "clf"
        return cls()

    def predict_proba(self, images):
        p = images.reshape(len(images), -1).mean(1) / 255.0
        return np.stack([1 - p, p], axis=1)


def test_curated_source_is_pseudo_labelled_above_the_threshold(pool, tmp_path, monkeypatch):
    fake = types.ModuleType("tgap.classify")
    fake.Classifier = BrightnessClassifier
    monkeypatch.setitem(sys.modules, "tgap.classify", fake)
    source = tmp_path / "textbook"
    (source / "sub").mkdir(parents=True)
    # Known answer at threshold 0.8: brightness 0.9 and 0.95 -> Unhealthy, 0.1 -> No Finding,
    # 0.5 and 0.7 -> below threshold.
    for name, level in [("a", 0.9), ("b", 0.95), ("c", 0.1), ("d", 0.5), ("sub/e", 0.7)]:
        Image.fromarray(np.full((40, 40), round(level * 255), np.uint8)).save(
            source / f"{name}.png"
        )
    image_set, embeddings = pool
    report = select_tuning_set(
        image_set,
        embeddings,
        parse_method("curated"),
        2,
        0,
        SelectConfig(curated_source=str(source), curated_threshold=0.8, default_embedder="pixel"),
        5,
        tmp_path / "clf",
        tmp_path / "tuning",
        tmp_path / "retrieved",
    )
    tuning = ImageSet(tmp_path / "tuning")
    assert report["curated"]["passed"] == {"No Finding": 1, "Unhealthy": 2}
    assert report["curated"]["below_threshold"] == 2
    assert report["labels"]["No Finding"]["short"] == 1  # only one passes: reported, not padded
    assert tuning.counts() == {"No Finding": 1, "Unhealthy": 2}
    assert {r.original_id for r in tuning.records if r.label == "Unhealthy"} == {"a.png", "b.png"}
    assert all(r.split == "curated" for r in tuning.records)
    # Only method retrieval reads a retrieved set: for curated it is empty.
    assert len(ImageSet(tmp_path / "retrieved")) == 0 and "retrieval" not in report
    # Everything in the source below the threshold for one label -> a clear error.
    with pytest.raises(SelectionError, match="no image is labelled 'No Finding'"):
        select_tuning_set(
            image_set,
            embeddings,
            parse_method("curated"),
            2,
            0,
            SelectConfig(curated_source=str(source), curated_threshold=0.95),
            5,
            tmp_path / "clf",
            tmp_path / "tuning2",
            tmp_path / "retrieved2",
        )
