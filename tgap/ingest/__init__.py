"""Ingest: real images from a local folder, ``s3://`` or ``gs://`` into four image sets.

The four sets are pool (tuning sets, retrieval), real-train, real-val (where every choice is made:
tuning, sweeps) and real-test (sealed: read only by the tasks that report on it).

Modules: ``stage`` (``ingest``, the stage itself), one reader per format (``nih``, ``folder``,
``csv_source``, ``medmnist``) on what they share (``rows``), ``splits`` (by patient, official
splits, the sealed test), ``streaming``, ``summary`` and ``external`` (``select.external_sets``).
"""

from tgap.ingest.external import read_external_set
from tgap.ingest.folder import image_uris, load_image
from tgap.ingest.medmnist import find_npz, read_npz
from tgap.ingest.nih import load_nih_metadata
from tgap.ingest.rows import IngestError
from tgap.ingest.splits import split_by_patient
from tgap.ingest.stage import ingest
from tgap.ingest.summary import summary_markdown

__all__ = [
    "IngestError",
    "find_npz",
    "image_uris",
    "ingest",
    "load_image",
    "load_nih_metadata",
    "read_external_set",
    "read_npz",
    "split_by_patient",
    "summary_markdown",
]
