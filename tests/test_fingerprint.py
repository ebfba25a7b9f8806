"""Fingerprints: a changed source is a new fingerprint, so KFP's cache sees new data."""

from __future__ import annotations

import uuid

import pytest

from tgap import storage
from tgap.config import load_config
from tgap.fingerprint import fingerprint, fingerprints, source_uris

try:
    from servers import loopback_only, s3, s3_server  # noqa: F401
except ImportError:  # tests/ is a package
    from tests.servers import loopback_only, s3, s3_server  # noqa: F401


def test_a_file_added_to_a_local_source_changes_the_fingerprint(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"a")
    before = fingerprint(str(tmp_path))
    assert before.startswith("sha256:") and fingerprint(str(tmp_path)) == before
    (tmp_path / "images" / "b.png").write_bytes(b"b")
    assert fingerprint(str(tmp_path)) != before


def test_no_source_and_presets_need_no_listing_and_a_missing_source_is_named(tmp_path):
    assert fingerprint("") == ""
    assert fingerprint("tiny-pixel") == "preset:tiny-pixel"
    with pytest.raises(storage.StorageError, match="no-such"):
        fingerprint(str(tmp_path / "no-such"))


def test_every_source_of_the_config_is_fingerprinted(tmp_path):
    config = load_config("pipelines/configs/micro.yaml", [f"select.curated_source={tmp_path}"])
    (tmp_path / "x.png").write_bytes(b"x")
    found = fingerprints(
        source_uris(config.data, config.select, config.diffusion, config.classifier)
    )
    assert set(found) == {"data", "curated", "base_model", "clip_weights", "classifier_weights"}
    assert found["data"]["fingerprint"].startswith("sha256:")
    assert found["curated"]["fingerprint"].startswith("sha256:")
    assert found["base_model"]["fingerprint"] == "preset:tiny-pixel"


@pytest.mark.servers
def test_an_object_rewritten_on_s3_changes_the_fingerprint(s3):
    bucket = f"fp-{uuid.uuid4().hex[:8]}"
    s3.client().make_bucket(bucket)
    storage.write_bytes(f"s3://{bucket}/data/a.png", b"first")
    storage.write_bytes(f"s3://{bucket}/data/b.png", b"b")
    before = fingerprint(f"s3://{bucket}/data")
    assert fingerprint(f"s3://{bucket}/data") == before
    storage.write_bytes(f"s3://{bucket}/data/a.png", b"other")  # same name, same size
    after = fingerprint(f"s3://{bucket}/data")
    assert after != before
    # A single object (a weights file) is fingerprinted by its own etag.
    single = fingerprint(f"s3://{bucket}/data/b.png")
    storage.write_bytes(f"s3://{bucket}/data/b.png", b"c")
    assert fingerprint(f"s3://{bucket}/data/b.png") != single
