"""train-classifier: one classifier code path for real and synthetic training sets."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def train_classifier(
    train_set: Input[Dataset],
    classifier: dict,
    seed: int,
    generate: dict,
    subsample: str,
    model: Output[Model],
    metrics: Output[Metrics],
) -> None:
    """Train the configured classifier on `train_set`.

    `subsample` is "all" (every image) or "match-synthetic" (generate.n_per_label images per
    label: R→S trains on as many real images per class as the synthetic set has, as in the thesis).
    """
    from tgap.classify import train_classifier as run_train
    from tgap.config import ClassifierConfig, GenerateConfig, section
    from tgap.imageset import ImageSet

    if subsample not in ("all", "match-synthetic"):
        raise ValueError(f"subsample {subsample!r}: expected 'all' or 'match-synthetic'")
    size_per_label = None
    if subsample == "match-synthetic":
        size_per_label = section(GenerateConfig, generate, "generate").n_per_label
    result = run_train(
        ImageSet(train_set.path),
        section(ClassifierConfig, classifier, "classifier"),
        seed=seed,
        size_per_label=size_per_label,
        out_dir=model.path,
    )
    for key, value in result.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
