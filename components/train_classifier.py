"""train-classifier: one classifier code path for real and synthetic training sets."""

from kfp.dsl import Dataset, Input, Model, Output


def train_classifier(
    train_set: Input[Dataset],
    classifier: dict,
    seed: int,
    generate: dict,
    subsample: str,
    model: Output[Model],
    weights_fingerprint: str = "",
) -> None:
    """Train the configured classifier on `train_set`; `weights_fingerprint` is the hash of
    `classifier.weights` (a new cache key when they change).

    `subsample` is "all" (every image) or "match-synthetic" (generate.n_per_label images per
    label: R→S trains on as many real images per class as the synthetic set has, as in the thesis).
    No Metrics output on purpose: kfp.local's cache treats a Metrics artifact (which has no file)
    as missing, and that would defeat training the real classifier once per seed.
    """
    from tgap.classify import train_classifier as run_train
    from tgap.config import ClassifierConfig, GenerateConfig, section
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    if subsample not in ("all", "match-synthetic"):
        raise ValueError(f"subsample {subsample!r}: expected 'all' or 'match-synthetic'")
    size_per_label = None
    if subsample == "match-synthetic":
        size_per_label = section(GenerateConfig, generate, "generate").n_per_label
    with timed_stage("train-classifier", model.path):
        run_train(
            ImageSet(train_set.path),
            section(ClassifierConfig, classifier, "classifier"),
            seed=seed,
            size_per_label=size_per_label,
            out_dir=model.path,
        )
