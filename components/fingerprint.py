"""fingerprint: hashes of every source the run reads; never cached, so a rerun sees new data."""

from typing import NamedTuple


def fingerprint(data: dict, select: dict, diffusion: dict, classifier: dict) -> NamedTuple(
    "Fingerprints",
    [
        ("data", str),
        ("curated", str),
        ("base_model", str),
        ("clip_weights", str),
        ("classifier_weights", str),
        ("all", str),
    ],
):
    """Hash the listings of data.source, the curated source, the base model and the weights.

    Each output is an input of the stages that read that source, so KFP's cache reuses their
    work exactly when the content is unchanged; `all` (JSON) goes to the report's provenance.
    """
    import json
    from collections import namedtuple

    from tgap.config import ClassifierConfig, DataConfig, DiffusionConfig, SelectConfig, section
    from tgap.fingerprint import SOURCES, fingerprints, source_uris

    found = fingerprints(
        source_uris(
            section(DataConfig, data, "data"),
            section(SelectConfig, select, "select"),
            section(DiffusionConfig, diffusion, "diffusion"),
            section(ClassifierConfig, classifier, "classifier"),
        )
    )
    outputs = namedtuple("Fingerprints", [*SOURCES, "all"])
    return outputs(*(found[name]["fingerprint"] for name in SOURCES), json.dumps(found))
