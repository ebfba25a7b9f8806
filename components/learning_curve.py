"""learning-curve: classifiers on nested subsets of a training set, each scored on real-test."""

from kfp.dsl import Artifact, Dataset, Input, Output


def learning_curve(
    train_set: Input[Dataset],
    real_test: Input[Dataset],
    classifier: dict,
    evaluation: dict,
    which: str,
    curve: Output[Artifact],
    seeds: list = [],  # noqa: B006 (KFP reads the literal default)
    item: dict = {},  # noqa: B006
) -> None:
    """`which` "real": `train_set` is real-train, one curve per seed of `seeds` in
    `seed-<s>/` (evaluation.real_curve_sizes; once per run, shared by every method's cells).
    "synthetic": `train_set` is one work item's generated set, S→R at
    evaluation.synthetic_curve_fractions below 1 with the item's seed."""
    from tgap.config import ClassifierConfig, EvaluationConfig, section
    from tgap.grid import work_item
    from tgap.imageset import ImageSet
    from tgap.learning_curve import real_curves_stage, synthetic_curve_stage
    from tgap.provenance import timed_stage

    classifier_cfg = section(ClassifierConfig, classifier, "classifier")
    evaluation_cfg = section(EvaluationConfig, evaluation, "evaluation")
    train, test = ImageSet(train_set.path), ImageSet(real_test.path)
    with timed_stage("learning-curve", curve.path):
        if which == "real":
            real_curves_stage(train, test, classifier_cfg, evaluation_cfg, seeds, curve.path)
        elif which == "synthetic":
            seed = work_item(item).seed
            synthetic_curve_stage(train, test, classifier_cfg, evaluation_cfg, seed, curve.path)
        else:
            raise ValueError(f"which {which!r}: expected 'real' or 'synthetic'")
