"""The image-set format: tar shards + a JSON manifest, read back exactly, by seek, in order."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tgap.imageset import (
    INFO,
    SHARD_SIZE,
    ImageSet,
    ImageSetError,
    ImageSetWriter,
    shard_name,
)

LABELS = ["a", "b", "c"]


def _images(n: int, side: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side), dtype=np.uint8)


def _write(path: Path, images: np.ndarray, shard_size: int = SHARD_SIZE) -> ImageSet:
    with ImageSetWriter(path, LABELS, images.shape[1], shard_size=shard_size) as writer:
        for i, image in enumerate(images):
            writer.add(image, LABELS[i % 3], patient_id=f"p{i // 2}", original_id=f"id{i}")
    return ImageSet(path)


@pytest.mark.parametrize(
    ("n", "shard_size", "shards"), [(0, 4, 0), (1, 4, 1), (8, 4, 2), (10, 4, 3), (10, 1, 10)]
)
def test_round_trip_gives_the_same_pixels_labels_and_records_at_any_shard_boundary(
    tmp_path, n, shard_size, shards
):
    images = _images(n)
    image_set = _write(tmp_path / "set", images, shard_size)
    assert len(image_set) == n
    assert [s["file"] for s in image_set.shards] == [shard_name(k) for k in range(shards)]
    assert sum(s["count"] for s in image_set.shards) == n
    assert all(s["count"] == shard_size for s in image_set.shards[:-1])
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == [
        INFO,
        *(shard_name(k) for k in range(shards)),
    ]
    assert image_set.load_all().shape == (n, 8, 8)
    np.testing.assert_array_equal(image_set.load_all(), images)
    assert list(image_set.label_indices) == [i % 3 for i in range(n)]
    assert [r.original_id for r in image_set.records] == [f"id{i}" for i in range(n)]
    assert image_set.info["count"] == n
    assert image_set.counts() == {label: len(range(k, n, 3)) for k, label in enumerate(LABELS)}


def test_random_access_reads_any_order_with_repeats_and_negative_indices(tmp_path):
    images = _images(11)
    image_set = _write(tmp_path / "set", images, shard_size=3)
    picks = [10, 0, 4, 4, 7, 1, -1]
    np.testing.assert_array_equal(image_set.load_many(picks), images[picks])
    np.testing.assert_array_equal(image_set.load(5), images[5])
    with pytest.raises(IndexError):
        image_set.load(11)


def test_batches_stream_in_manifest_order_across_shards(tmp_path):
    images = _images(10)
    image_set = _write(tmp_path / "set", images, shard_size=4)
    batches = list(image_set.iter_batches(3))
    assert [len(x) for x, _ in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), image_set.label_indices)


def test_manifest_offsets_are_the_tar_members_data_offsets(tmp_path):
    """Any tar tool reads a shard; the manifest's offsets are where tarfile finds each member."""
    _write(tmp_path / "set", _images(7), shard_size=3)
    manifest = json.loads((tmp_path / "set" / INFO).read_text())
    for shard_index, shard in enumerate(manifest["shards"]):
        with tarfile.open(tmp_path / "set" / shard["file"]) as tar:
            members = {m.name: (m.offset_data, m.size) for m in tar.getmembers()}
        listed = {r[0]: (r[7], r[8]) for r in manifest["records"] if r[6] == shard_index}
        assert members == listed


def test_the_same_images_give_the_same_bytes(tmp_path):
    first, second = (_write(tmp_path / name, _images(5), shard_size=2) for name in ("x", "y"))
    for name in [INFO, *(s["file"] for s in first.shards)]:
        assert (first.root / name).read_bytes() == (second.root / name).read_bytes()


def test_a_bad_shard_size_or_an_info_key_of_the_layout_is_refused():
    with pytest.raises(ValueError, match="shard_size 0"):
        ImageSetWriter("unused", LABELS, 8, shard_size=0)
    with pytest.raises(ValueError, match=r"info keys \['shards'\]"):
        ImageSetWriter("unused", LABELS, 8, info={"shards": 1, "format": "csv"})


def _edit_manifest(root: Path, change) -> None:
    manifest = json.loads((root / INFO).read_text())
    change(manifest)
    (root / INFO).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("records"), "missing field 'records'"),
        (lambda m: m.update(image_set_format="x"), "image_set_format 'x'"),
        (lambda m: m.update(columns=m["columns"][:-1]), "columns"),
        (lambda m: m["records"][1].pop(), "record 1 is not a list of 9"),
        (lambda m: m["records"][2].__setitem__(6, 5), r"record 2 \(0000002.png\) lies outside"),
        (lambda m: m["records"][0].__setitem__(7, -1), "record 0: shard, offset, size"),
        (lambda m: m["records"][0].__setitem__(1, "zebra"), r"labels \['zebra'\]"),
        (lambda m: m["shards"][0].update(file="../x.tar"), "is a path"),
        (lambda m: m["shards"][0].update(bytes=1), "truncated or replaced"),
    ],
)
def test_a_malformed_manifest_is_named_with_what_is_wrong(tmp_path, change, message):
    _write(tmp_path / "set", _images(4), shard_size=2)
    _edit_manifest(tmp_path / "set", change)
    with pytest.raises(ImageSetError, match=message):
        ImageSet(tmp_path / "set")


def test_a_missing_shard_or_manifest_is_named(tmp_path):
    _write(tmp_path / "set", _images(4), shard_size=2)
    (tmp_path / "set" / shard_name(1)).unlink()
    with pytest.raises(ImageSetError, match="shard-00001.tar: shard listed in dataset.json"):
        ImageSet(tmp_path / "set")
    with pytest.raises(ImageSetError, match="dataset.json is missing"):
        ImageSet(tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / INFO).write_text("{")
    with pytest.raises(ImageSetError, match="not valid JSON"):
        ImageSet(tmp_path / "bad")


def test_a_damaged_png_is_named_with_its_shard_and_member(tmp_path):
    image_set = _write(tmp_path / "set", _images(4), shard_size=2)
    shard = tmp_path / "set" / shard_name(1)
    data = bytearray(shard.read_bytes())
    offset = 512  # the first member's data, right after its header
    data[offset : offset + 8] = b"\0" * 8  # the PNG signature
    shard.write_bytes(bytes(data))
    np.testing.assert_array_equal(image_set.load(1), _images(4)[1])
    with pytest.raises(ImageSetError, match=r"shard-00001.tar:0000002.png: not a readable image"):
        image_set.load(2)


def test_a_folder_in_the_old_per_image_layout_says_to_remake_it(tmp_path):
    old = tmp_path / "old"
    (old / "images").mkdir(parents=True)
    (old / "manifest.csv").write_text("file,label,patient_id,source,split,original_id\n")
    (old / INFO).write_text(json.dumps({"labels": LABELS, "resolution": 8}))
    with pytest.raises(ImageSetError, match="per-image layout .* re-make it"):
        ImageSet(old)
    (old / INFO).unlink()
    with pytest.raises(ImageSetError, match="per-image layout"):
        ImageSet(old)


def test_a_failed_write_leaves_nothing_and_an_existing_set_is_not_clobbered(tmp_path):
    with (
        pytest.raises(RuntimeError),
        ImageSetWriter(tmp_path / "set", LABELS, 8, shard_size=1) as w,
    ):
        w.add(_images(1)[0], "a")
        raise RuntimeError("stage failed")
    assert list(tmp_path.iterdir()) == []
    _write(tmp_path / "set", _images(2))
    with (
        pytest.raises(ImageSetError, match="already exists"),
        ImageSetWriter(tmp_path / "set", LABELS, 8),
    ):
        pass
    assert len(ImageSet(tmp_path / "set")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["set"]
