"""Where the KFP layer comes from: ``components/`` and ``pipelines/`` of the tgap checkout.

The wheel installs only the library (``tgap``): the containers run the component functions'
own source, which KFP embeds in the compiled spec, so they never import ``components`` or
``pipelines``, and those two generic names stay out of site-packages. The commands that build
the DAG (``tgap run``, ``compile``, ``submit``, ``schedule``) do import them, from the checkout
this ``tgap`` package lives in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def pipeline_module() -> ModuleType:
    """``pipelines.tgap_pipeline``, from the import path or else from the checkout at ``ROOT``."""
    try:
        from pipelines import tgap_pipeline
    except ModuleNotFoundError as exc:
        if exc.name not in ("pipelines", "components"):
            raise
        if not (ROOT / "pipelines" / "tgap_pipeline.py").is_file():
            raise RuntimeError(
                f"the pipeline (pipelines/, components/) is not installed with tgap and {ROOT} "
                "is not a tgap checkout: run tgap from a checkout (pip install -e .)"
            ) from None
        sys.path.insert(0, str(ROOT))
        from pipelines import tgap_pipeline
    return tgap_pipeline
