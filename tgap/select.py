"""Tuning-set selection (random, spectral, k-means, curated) and the retrieval baseline.

``select_tuning_set`` writes two image sets for one grid row:

- the tuning set: exactly ``size`` images per label (``curated``: as many as pass the
  confidence threshold, up to ``size``), and ``selection.json`` beside its manifest;
- the retrieved set, for method ``retrieval`` only (the synthetic set's stand-in): the
  ``n_retrieve_per_label`` real pool images per label nearest to the tuning set in an
  embedding, disjoint from it (fewer, reported as ``short``, when the tuning set leaves fewer
  unused). For every other method it is an empty image set: nothing reads it.

Clustered selection (the thesis's): per label, cluster the pool's embeddings into ``k`` clusters
and take an equal share of ``size`` from each, so every cluster carries equal weight. A cluster
smaller than its share contributes all its images, repeated in turn until the share is filled
(each image then appears ⌊share/m⌋ or ⌈share/m⌉ times); the report records how many picks are
such duplicates, cluster by cluster.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans, SpectralClustering
from sklearn.neighbors import NearestNeighbors

from tgap.artifacts import (
    ClusterShare,
    LabelSelection,
    Retrieval,
    RetrievedLabel,
    SelectionReport,
)
from tgap.config import SelectConfig
from tgap.embed import EMBEDDER_JSON, load_embeddings
from tgap.imageset import ImageSet, ImageSetWriter, check_same_labels, to_grey_square
from tgap.ingest import IngestError, find_npz, image_uris, load_image, read_npz
from tgap.methods import Method
from tgap.seeding import derive_seed

log = logging.getLogger(__name__)


class SelectionError(ValueError):
    """A selection cannot be made as asked; the message names the value and what was expected."""


# --------------------------------------------------------------------------- clustering


def spectral_solver() -> str:
    """``amg`` when pyamg is installed (fastest on large graphs), else ``lobpcg``.

    Measured on one label of 10,000 pixel embeddings (benchmarks/selection.py, 2 cores): lobpcg
    about 4 s and 774 MB peak RSS vs arpack (shift-invert) 19-37 s and 1,223 MB, same kNN graph.
    """
    try:
        import pyamg  # noqa: F401
    except ImportError:
        return "lobpcg"
    return "amg"


def cluster(vectors: np.ndarray, k: int, algorithm: str, n_neighbors: int, seed: int) -> np.ndarray:
    """Cluster ``vectors`` into ``k`` clusters; returns a cluster id per row.

    ``spectral`` uses a sparse symmetric kNN affinity graph (``n_neighbors`` per point), so memory
    grows with n·n_neighbors, never n²; labels come from ``cluster_qr`` (no k-means restarts,
    deterministic given the eigenvectors). ``kmeans`` clusters the embeddings directly.
    """
    n = len(vectors)
    if k < 1:
        raise SelectionError(f"select.k={k}: expected at least 1 cluster")
    if k > n:
        raise SelectionError(f"select.k={k} clusters but only {n} images to cluster")
    if k == 1:
        return np.zeros(n, dtype=np.int64)
    if algorithm == "kmeans":
        model = KMeans(n_clusters=k, n_init=4, random_state=seed)
        return model.fit_predict(vectors).astype(np.int64)
    if algorithm == "spectral":
        if n_neighbors < 1:
            raise SelectionError(f"select.n_neighbors={n_neighbors}: expected at least 1")
        model = SpectralClustering(
            n_clusters=k,
            affinity="nearest_neighbors",
            n_neighbors=min(n_neighbors, n - 1),
            eigen_solver=spectral_solver(),
            assign_labels="cluster_qr",
            random_state=seed,
        )
        return model.fit_predict(vectors).astype(np.int64)
    raise SelectionError(f"clustering {algorithm!r}: expected spectral or kmeans")


def equal_shares(
    clusters: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[ClusterShare]]:
    """Pick ``size`` positions with an equal share from each cluster of ``clusters``.

    Shares are ``size // k``; the ``size % k`` remaining picks go one each to the largest
    clusters (fewest duplicates). Within a cluster the picks are a seeded random sample; a
    cluster smaller than its share is repeated in turn. Returns positions and a per-cluster report.
    """
    ids, counts = np.unique(clusters, return_counts=True)
    k = len(ids)
    shares = np.full(k, size // k)
    largest_first = np.lexsort((ids, -counts))  # ties broken by cluster id: deterministic
    shares[largest_first[: size % k]] += 1
    picks, report = [], []
    for cid, count, share in zip(ids, counts, shares, strict=True):
        members = np.flatnonzero(clusters == cid)
        if count >= share:
            chosen = rng.choice(members, size=share, replace=False)
        else:
            rounds = -(-share // count)
            chosen = np.concatenate([rng.permutation(members) for _ in range(rounds)])[:share]
        picks.append(chosen)
        report.append(
            ClusterShare(
                cluster=int(cid),
                size=int(count),
                share=int(share),
                unique=int(min(count, share)),
                duplicates=int(max(share - count, 0)),
            )
        )
    return np.concatenate(picks), report


# --------------------------------------------------------------------------- curated source


def load_curated_images(select: SelectConfig, resolution: int) -> tuple[np.ndarray, list[str]]:
    """The unlabelled curated source as uint8 ``(n, resolution, resolution)`` and an id per image.

    ``select.curated_source`` is a folder of images (searched recursively), a MedMNIST-style
    ``.npz`` (every ``*_images`` array), or a URI of either: read by ingest's readers.
    """
    source = select.curated_source
    if not source:
        raise SelectionError(
            "method curated needs select.curated_source: a folder, .npz file or URI of unlabelled "
            "images"
        )
    if select.curated_format == "nih-csv":
        raise SelectionError(
            "select.curated_format='nih-csv' is not supported for the curated source (its labels "
            "would be ignored anyway): point select.curated_source at the images folder and use "
            "curated_format 'image-folder'"
        )
    try:
        if select.curated_format == "medmnist-npz":
            with read_npz(
                find_npz(source, "select.curated_source"), "select.curated_source"
            ) as npz:
                keys = sorted(k for k in npz.files if k.endswith("_images"))
                arrays = [npz[k] for k in keys]
            images = [to_grey_square(a, resolution) for arr in arrays for a in arr]
            ids = [f"{k}/{i}" for k, arr in zip(keys, arrays, strict=True) for i in range(len(arr))]
        else:
            prefix = source.rstrip("/") + "/"
            uris = image_uris(source, "select.curated_source")
            images = [load_image(uri, resolution) for uri in uris]
            ids = [uri.removeprefix(prefix) for uri in uris]
    except IngestError as exc:
        raise SelectionError(f"select.curated_source={source!r}: {exc}") from None
    if not images:
        raise SelectionError(
            f"select.curated_source={source!r}: the curated source holds no images "
            f"(format {select.curated_format})"
        )
    return np.stack(images), ids


def pseudo_label(
    images: np.ndarray, labels: list[str], classifier_dir: Path | None, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Label index and confidence per image from the reference classifier; -1 below threshold."""
    if classifier_dir is None:
        raise SelectionError(
            "method curated needs the reference classifier (classifier_dir) to pseudo-label "
            "the curated source"
        )
    from tgap.classify import Classifier  # lazy: avoids an import cycle through tgap.embed

    classifier = Classifier.load(Path(classifier_dir))
    check_same_labels(
        ("the pool", labels), {f"classifier {classifier_dir}": classifier.labels}, SelectionError
    )
    proba = np.asarray(classifier.predict_proba(images), dtype=np.float64)
    if proba.shape != (len(images), len(labels)):
        raise SelectionError(
            f"classifier {classifier_dir}: predict_proba gave shape {proba.shape}, expected "
            f"({len(images)}, {len(labels)})"
        )
    best = proba.argmax(1)
    confidence = proba.max(1)
    return np.where(confidence >= threshold, best, -1), confidence


# --------------------------------------------------------------------------- retrieval


def retrieve(
    vectors: np.ndarray, candidates: np.ndarray, queries: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` rows of ``candidates`` closest (Euclidean) to any of ``queries``.

    Returns candidate indices ordered by that distance (ties by index) and the distances.
    """
    search = NearestNeighbors(n_neighbors=1).fit(queries)
    distance = search.kneighbors(vectors[candidates], return_distance=True)[0][:, 0]
    order = np.argsort(distance, kind="stable")[:n]
    return candidates[order], distance[order]


# --------------------------------------------------------------------------- stage


def _embedder_info(embeddings_dir: Path, name: str) -> str:
    path = Path(embeddings_dir) / name / EMBEDDER_JSON
    return json.loads(path.read_text()).get("description", name) if path.is_file() else name


def _cluster_sample(members: np.ndarray, n: int, seed: int, label: str) -> np.ndarray:
    """``n`` of a label's pool indices, seeded and sorted (``n`` 0 or >= all: every one)."""
    if n == 0 or n >= len(members):
        return members
    rng = np.random.default_rng(derive_seed(seed, "cluster-sample", label))
    return np.sort(rng.choice(members, size=n, replace=False))


def _check_size(size: int, available: int, label: str, what: str) -> None:
    if size < 1:
        raise SelectionError(f"size={size}: expected at least 1 image per label")
    if size > available:
        raise SelectionError(
            f"size={size} per label but the pool has only {available} {label!r} images {what}"
        )


def select_tuning_set(
    pool: ImageSet,
    embeddings_dir: str | Path,
    method: Method,
    size: int,
    seed: int,
    select: SelectConfig,
    n_retrieve_per_label: int,
    classifier_dir: Path | None,
    tuning_dir: str | Path,
    retrieved_dir: str | Path,
) -> dict[str, Any]:
    """Select the tuning set for one grid row (and, for method retrieval, its nearest real pool
    images).

    Writes the tuning set to ``tuning_dir`` (with ``selection.json``: the full report, pool
    indices included; its ``dataset.json`` carries the report without the indices under
    ``selection``) and the retrieved set to ``retrieved_dir`` (empty unless method retrieval).
    Returns the full report.

    Seeds derive from ``(seed, selection, label)``, so ``random``, ``no-finetune`` and
    ``retrieval`` share their tuning set under one seed. ``external:<name>`` selects nothing: see
    ``select_external``.
    """
    if method.generator == "external":
        return select_external(pool, method, size, seed, select, tuning_dir, retrieved_dir)
    report = SelectionReport(method.name, method.selection, method.embedder, int(size), int(seed))
    if n_retrieve_per_label < 0:
        raise SelectionError(f"n_retrieve_per_label={n_retrieve_per_label}: expected >= 0")

    picks: dict[str, np.ndarray] = {}  # label -> pool indices, in tuning-set order (pool methods)
    curated: dict[str, tuple[np.ndarray, list[str]]] = {}  # label -> (images, source ids)
    if method.selection in ("random", "spectral", "kmeans"):
        picks = _select_from_pool(pool, embeddings_dir, method, size, seed, select, report)
    elif method.selection == "curated":
        curated = _select_curated(pool, size, seed, select, classifier_dir, report)
    else:
        raise SelectionError(f"method {method.name!r}: unknown selection {method.selection!r}")

    # Method retrieval only: the pool images nearest to the tuning set, not in it.
    retrieved: dict[str, np.ndarray] = {}
    if method.generator == "retrieval":
        report.retrieval = _retrieve_for_tuning_set(
            pool, embeddings_dir, method.embedder or select.default_embedder, picks,
            n_retrieve_per_label, retrieved,
        )  # fmt: skip

    _write_sets(pool, method, select, report, picks, curated, retrieved, tuning_dir, retrieved_dir)
    log.info(
        "%s: tuning set %s, %d duplicates; retrieved %s",
        method.name,
        {label: e.picked for label, e in report.labels.items()},
        sum(e.duplicates for e in report.labels.values()),
        {label: len(idx) for label, idx in retrieved.items()} or "none (not method retrieval)",
    )
    return report.to_json()


def _select_from_pool(
    pool: ImageSet,
    embeddings_dir: str | Path,
    method: Method,
    size: int,
    seed: int,
    select: SelectConfig,
    report: SelectionReport,
) -> dict[str, np.ndarray]:
    """Pool indices per label, in tuning-set order: drawn at random, or in equal shares of the
    label's clusters (spectral, kmeans). Records each label's picks (and the clustering) in
    ``report``."""
    vectors = None
    if method.selection != "random":
        vectors = load_embeddings(embeddings_dir, method.embedder, pool)
        report.embedder_description = _embedder_info(embeddings_dir, method.embedder)
        report.clustering = {
            "k": select.k,
            "cluster_images": select.cluster_images,
            "n_neighbors": select.n_neighbors,
            "clustering": (
                "sklearn SpectralClustering(affinity=nearest_neighbors, "
                f"eigen_solver={spectral_solver()}, assign_labels=cluster_qr)"
                if method.selection == "spectral"
                else "sklearn KMeans(n_init=4)"
            ),
        }
    picks: dict[str, np.ndarray] = {}
    pick_clusters: dict[str, list[int]] = {}  # label -> cluster id of each pick (clustered)
    for li, label in enumerate(pool.labels):
        members = np.flatnonzero(pool.label_indices == li)
        pool_count, where = len(members), "in the pool"
        if vectors is not None:
            members = _cluster_sample(members, select.cluster_images, seed, label)
            if len(members) < pool_count:
                where = f"in its select.cluster_images={select.cluster_images} sample"
            if select.k > len(members):
                raise SelectionError(
                    f"select.k={select.k} clusters but the pool has only {len(members)} "
                    f"{label!r} images {where}"
                )
        _check_size(size, len(members), label, where)
        if vectors is not None and size < select.k:
            raise SelectionError(
                f"size={size} per label is smaller than select.k={select.k} clusters: every "
                "cluster needs at least one pick"
            )
        rng = np.random.default_rng(derive_seed(seed, "select", method.selection, label))
        shares = None
        if vectors is None:
            chosen = rng.choice(members, size=size, replace=False)
        else:
            cluster_seed = derive_seed(seed, "cluster", method.selection, method.embedder, label)
            assignment = cluster(
                vectors[members], select.k, method.selection, select.n_neighbors, cluster_seed
            )
            positions, shares = equal_shares(assignment, size, rng)
            chosen = members[positions]
            pick_clusters[label] = [int(c) for c in assignment[positions]]
        unique = int(len(np.unique(chosen)))
        report.labels[label] = LabelSelection(
            picked=int(len(chosen)),
            unique=unique,
            duplicates=int(len(chosen) - unique),
            pool_count=int(pool_count),
            clusters=shares,
        )
        picks[label] = chosen
    report.pool_indices = {label: [int(i) for i in idx] for label, idx in picks.items()}
    if pick_clusters:
        report.pick_clusters = pick_clusters
    return picks


def _select_curated(
    pool: ImageSet,
    size: int,
    seed: int,
    select: SelectConfig,
    classifier_dir: Path | None,
    report: SelectionReport,
) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Per label, up to ``size`` curated images the reference classifier labels with enough
    confidence, and their source ids. Records the pseudo-labelling in ``report``."""
    labels = pool.labels
    images, ids = load_curated_images(select, pool.resolution)
    assigned, confidence = pseudo_label(images, labels, classifier_dir, select.curated_threshold)
    report.curated = {
        "source": select.curated_source,
        "threshold": select.curated_threshold,
        "source_images": int(len(images)),
        "below_threshold": int((assigned < 0).sum()),
        "passed": {label: int((assigned == li).sum()) for li, label in enumerate(labels)},
    }
    curated: dict[str, tuple[np.ndarray, list[str]]] = {}
    for li, label in enumerate(labels):
        passed = np.flatnonzero(assigned == li)
        if len(passed) == 0:
            raise SelectionError(
                f"curated source {select.curated_source!r}: no image is labelled {label!r} with "
                f"confidence >= select.curated_threshold={select.curated_threshold} "
                f"({len(images)} images)"
            )
        rng = np.random.default_rng(derive_seed(seed, "select", "curated", label))
        chosen = rng.choice(passed, size=min(size, len(passed)), replace=False)
        if len(chosen) < size:
            log.warning(
                "curated: only %d %r images pass threshold %.2f (asked %d per label)",
                len(chosen),
                label,
                select.curated_threshold,
                size,
            )
        report.labels[label] = LabelSelection(
            picked=int(len(chosen)),
            unique=int(len(chosen)),
            duplicates=0,
            short=int(size - len(chosen)),
            mean_confidence=float(confidence[chosen].mean()),
        )
        curated[label] = (images[chosen], [ids[i] for i in chosen])
    return curated


def _write_sets(
    pool: ImageSet,
    method: Method,
    select: SelectConfig,
    report: SelectionReport,
    picks: dict[str, np.ndarray],
    curated: dict[str, tuple[np.ndarray, list[str]]],
    retrieved: dict[str, np.ndarray],
    tuning_dir: str | Path,
    retrieved_dir: str | Path,
) -> None:
    """Write the tuning set (pool picks or curated images) with ``report``, and the retrieved
    set (empty unless method retrieval)."""
    labels = pool.labels
    if retrieved:
        report.retrieved_pool_indices = {
            label: [int(i) for i in idx] for label, idx in retrieved.items()
        }
    tuning_dir, retrieved_dir = Path(tuning_dir), Path(retrieved_dir)
    source = pool.info.get("source_uri", "") or str(pool.root)
    with ImageSetWriter(
        tuning_dir, labels, pool.resolution, source_uri=source, info={"selection": report.summary()}
    ) as writer:
        for label in labels:
            if label in picks:
                _copy_from_pool(pool, picks[label], writer)
            else:
                images, ids = curated[label]
                for image, original_id in zip(images, ids, strict=True):
                    writer.add(
                        image,
                        label,
                        source=select.curated_source,
                        split="curated",
                        original_id=original_id,
                    )
    report.write(tuning_dir)
    with ImageSetWriter(
        retrieved_dir,
        labels,
        pool.resolution,
        source_uri=source,
        info={
            "retrieval": report.retrieval.to_json() if report.retrieval else None,
            "retrieved_for": method.name,
        },
    ) as writer:
        for label in labels:
            if label in retrieved:
                _copy_from_pool(pool, retrieved[label], writer)


def _retrieve_for_tuning_set(
    pool: ImageSet,
    embeddings_dir: str | Path,
    embedder: str,
    picks: dict[str, np.ndarray],
    n_per_label: int,
    retrieved: dict[str, np.ndarray],
) -> Retrieval:
    """Fill ``retrieved`` with each label's ``n_per_label`` pool images nearest to its tuning
    picks (disjoint from them); return the retrieval report."""
    report = Retrieval(embedder, int(n_per_label))
    if n_per_label == 0:
        return report
    vectors = load_embeddings(embeddings_dir, embedder, pool)
    report.embedder_description = _embedder_info(embeddings_dir, embedder)
    for li, label in enumerate(pool.labels):
        members = np.flatnonzero(pool.label_indices == li)
        candidates = np.setdiff1d(members, picks[label])
        if len(candidates) == 0:
            raise SelectionError(
                f"no {label!r} pool images are left outside the tuning set to retrieve "
                f"(pool has {len(members)}, tuning set uses them all)"
            )
        if n_per_label > len(candidates):
            # The tuning set has used most of this label's pool: retrieve what is left and
            # say so (report `short`) rather than fail the whole grid row.
            log.warning(
                "retrieval: only %d %r pool images left outside the tuning set (asked %d)",
                len(candidates),
                label,
                n_per_label,
            )
        queries = vectors[np.unique(picks[label])]
        chosen, distance = retrieve(vectors, candidates, queries, n_per_label)
        retrieved[label] = chosen
        report.labels[label] = RetrievedLabel(
            retrieved=int(len(chosen)),
            short=int(n_per_label - len(chosen)),
            mean_distance=float(distance.mean()),
            max_distance=float(distance.max()),
        )
    return report


def _copy_from_pool(pool: ImageSet, indices: np.ndarray, writer: ImageSetWriter) -> None:
    for i in indices:
        r = pool.records[int(i)]
        writer.add(pool.load(int(i)), r.label, r.patient_id, r.source, r.split, r.original_id)


def select_external(
    pool: ImageSet,
    method: Method,
    size: int,
    seed: int,
    select: SelectConfig,
    tuning_dir: str | Path,
    retrieved_dir: str | Path,
) -> dict[str, Any]:
    """``external:<name>``: no selection. The external set is read into ``retrieved_dir`` (the
    stand-in slot generation copies, as for ``retrieval``), and the tuning set is the whole pool,
    so memorisation is measured against every real image the generator could have copied.

    The pool is hard-linked where the file system allows (no copy of its images).
    """
    from tgap.ingest import read_external_set

    name = method.external_name
    if name not in select.external_sets:
        raise SelectionError(
            f"method {method.name!r}: no set {name!r} in select.external_sets "
            f"(known: {', '.join(sorted(select.external_sets)) or 'none'})"
        )
    uri = select.external_sets[name]
    external = read_external_set(name, uri, pool.labels, pool.resolution, retrieved_dir)
    tuning_dir = Path(tuning_dir)
    if tuning_dir.exists() and any(tuning_dir.iterdir()):
        raise SelectionError(f"{tuning_dir}: output already exists and is not empty")
    tmp = tuning_dir.parent / f".{tuning_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(pool.root, tmp, copy_function=_link_or_copy)
    report = SelectionReport(
        method=method.name,
        selection="external",
        embedder=None,
        size=size,
        seed=seed,
        labels={
            label: LabelSelection(picked=n, unique=n, duplicates=0)
            for label, n in pool.counts().items()
        },
        external=external,
        message=f"no selection: the external set {name!r} ({uri}) is the synthetic set; "
        "the tuning set is the whole pool (memorisation against the pool)",
    )
    report.write(tmp)
    if tuning_dir.exists():
        tuning_dir.rmdir()
    os.replace(tmp, tuning_dir)
    log.info("%s: %s", method.name, report.message)
    return report.to_json()


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
