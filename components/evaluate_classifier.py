"""evaluate-classifier: a trained classifier on a test image set (S→R, R→S or R→R)."""

from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def evaluate_classifier(
    model: Input[Model],
    test_set: Input[Dataset],
    evaluation: dict,
    result: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
) -> None:
    """Score `test_set` with `model`; write metrics.json, predictions.csv and KFP metrics."""
    import math

    from tgap.classify import evaluate_classifier as run_evaluate
    from tgap.config import EvaluationConfig, section
    from tgap.imageset import ImageSet
    from tgap.provenance import timed_stage

    settings = section(EvaluationConfig, evaluation, "evaluation")
    with timed_stage("evaluate", result.path):
        out = run_evaluate(
            model.path,
            ImageSet(test_set.path),
            result.path,
            resamples=settings.bootstrap_resamples,
            confidence=settings.confidence,
        )
    for key, value in out.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            metrics.log_metric(key, float(value))
    roc = out.get("roc") or {}
    if roc.get("fpr"):
        thresholds = [min(float(t), 1e6) for t in roc.get("thresholds", [0.0] * len(roc["fpr"]))]
        classification.log_roc_curve(list(roc["fpr"]), list(roc["tpr"]), thresholds)
    confusion = out.get("confusion_matrix")
    if confusion:
        classification.log_confusion_matrix(list(out["labels"]), [list(r) for r in confusion])
