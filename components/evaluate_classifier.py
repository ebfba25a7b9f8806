"""evaluate-classifier: a trained classifier on a test image set (S→R, R→S or R→R)."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Model, Output


def evaluate_classifier(
    model: Input[Model],
    test_set: Input[Dataset],
    evaluation: dict,
    result: Output[Artifact],
    classification: Output[ClassificationMetrics],
) -> None:
    """Score `test_set` with `model`; write metrics.json, predictions.csv and the ROC curve and
    confusion matrix for the KFP UI.

    No KFP Metrics output: the compare page makes every Metrics artifact a column named
    "<task> > metrics" without method, size or seed (hundreds per thesis run); the numbers a
    person compares are the report's one Metrics artifact (`fter.<method>.<size>`, ...).
    """
    from tgap.artifacts import Evaluation
    from tgap.classify import evaluate_classifier as run_evaluate
    from tgap.config import EvaluationConfig, section
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    settings = section(EvaluationConfig, evaluation, "evaluation")
    with timed_stage("evaluate", result.path):
        run_evaluate(
            model.path,
            ImageSet(test_set.path),
            result.path,
            resamples=settings.bootstrap_resamples,
            confidence=settings.confidence,
        )
    out = Evaluation.read(result.path)
    # KFP's ROC viewer takes one curve with thresholds: the binary one (a multi-class macro
    # average has none; its one-vs-rest curves are in the report).
    if out.roc.fpr and not out.roc.per_class:
        thresholds = [min(float(t), 1e6) for t in out.roc.thresholds]
        classification.log_roc_curve(out.roc.fpr, out.roc.tpr, thresholds)
    if out.confusion_matrix:
        classification.log_confusion_matrix(out.labels, out.confusion_matrix)
