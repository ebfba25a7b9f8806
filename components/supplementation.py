"""supplementation: train on real + r × synthetic images for each ratio, test on real."""

from kfp.dsl import Artifact, Dataset, Input, Output


def supplementation(
    item: dict,
    real_train: Input[Dataset],
    synthetic: Input[Dataset],
    real_test: Input[Dataset],
    classifier: dict,
    generate: dict,
    evaluation: dict,
    curve: Output[Artifact],
) -> None:
    """One classifier per `evaluation.supplementation_ratios` entry (an empty curve without)."""
    from tgap.config import ClassifierConfig, EvaluationConfig, GenerateConfig, section
    from tgap.evaluation import supplementation_stage
    from tgap.grid import work_item
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    with timed_stage("supplementation", curve.path):
        supplementation_stage(
            ImageSet(real_train.path),
            ImageSet(synthetic.path),
            ImageSet(real_test.path),
            section(ClassifierConfig, classifier, "classifier"),
            section(EvaluationConfig, evaluation, "evaluation"),
            # As many real images per label as the R→S classifier trains on.
            section(GenerateConfig, generate, "generate").n_per_label,
            work_item(item).seed,
            curve.path,
        )
