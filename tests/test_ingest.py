"""tgap.ingest on the real NIH mini set, PneumoniaMNIST, image folders, S3 and GCS."""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import socket
import tarfile
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tgap import storage
from tgap.config import DataConfig, SplitConfig
from tgap.imageset import ImageSet
from tgap.ingest import IngestError, ingest, load_nih_metadata, split_by_patient

try:
    from servers import gcs, gcs_server, loopback_only, s3, s3_server  # noqa: F401
except ImportError:  # tests/ is a package
    from tests.servers import gcs, gcs_server, loopback_only, s3, s3_server  # noqa: F401

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NIH_MINI = DATA / "nih-cxr14-mini"
NIH_META = DATA / "nih-cxr14-metadata" / "Data_Entry_2017_v2020.csv.gz"
PNEUMONIA = DATA / "pneumoniamnist"
CSV_NAME = "Data_Entry_2017_v2020.csv"

if not NIH_MINI.is_dir():
    pytest.skip(f"real data not found at {DATA}", allow_module_level=True)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def make_nih(
    root: Path, rows: list[dict[str, str]] | None = None, columns: list[str] | None = None
) -> Path:
    """A NIH-layout copy (CSV + images/) of ``rows`` of the mini set (default: all)."""
    all_columns, all_rows = read_csv(NIH_MINI / CSV_NAME)
    rows = all_rows if rows is None else rows
    columns = columns or all_columns
    (root / "images").mkdir(parents=True)
    with open(root / CSV_NAME, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        shutil.copyfile(
            NIH_MINI / "images" / row["Image Index"], root / "images" / row["Image Index"]
        )
    return root


def nih_config(source: str | Path, **kw) -> DataConfig:
    kw.setdefault("csv", CSV_NAME)
    return DataConfig(source=str(source), format="nih-csv", resolution=16, **kw)


def outs(tmp: Path, tag: str = "out") -> tuple[Path, Path, Path, Path]:
    return tmp / tag / "pool", tmp / tag / "train", tmp / tag / "val", tmp / tag / "test"


def assert_no_outputs(tmp: Path, tag: str = "out") -> None:
    parent = tmp / tag
    left = list(parent.iterdir()) if parent.exists() else []
    assert left == [], f"ingest left {left}"


def manifests(dirs) -> list[list]:
    return [ImageSet(d).records for d in dirs]


def hashes(dirs) -> list[str]:
    return [ImageSet(d).info["content_hash"] for d in dirs]


@pytest.fixture(scope="module")
def mini_rows() -> list[dict[str, str]]:
    return read_csv(NIH_MINI / CSV_NAME)[1]


@pytest.fixture(scope="module")
def local_mini(tmp_path_factory) -> tuple[dict, tuple[Path, Path, Path]]:
    """The whole mini set ingested once from local disk (the reference for the remote tests)."""
    tmp = tmp_path_factory.mktemp("local-mini")
    dirs = outs(tmp)
    return ingest(nih_config(NIH_MINI), *dirs), dirs


# --------------------------------------------------------------------------- NIH, local


def test_nih_mini_is_split_by_patient_and_stratified(local_mini, mini_rows) -> None:
    summary, dirs = local_mini
    sets = [ImageSet(d) for d in dirs]
    splits = ("pool", "train", "val", "test")
    assert [len(s) for s in sets] == [summary["totals"][k] for k in splits]
    assert sum(len(s) for s in sets) == 1000
    # Label policy: "No Finding" stays, every finding combination becomes Unhealthy (README: 499/501).
    totals = Counter(r.label for s in sets for r in s.records)
    assert totals == {"No Finding": 499, "Unhealthy": 501}
    # Patients never cross splits (checked from the manifests, not from the summary).
    patients = [{r.patient_id for r in s.records} for s in sets]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not patients[i] & patients[j], (splits[i], splits[j])
    assert summary["shared_patients_total"] == 0
    # 264 patients cut 0.45 / 0.25 / 0.1 / 0.2 within each label stratum.
    assert sum(len(p) for p in patients) == 264
    assert [len(p) for p in patients] == [summary["patients"][k] for k in splits]
    expected = [0.45 * 264, 0.25 * 264, 0.1 * 264, 0.2 * 264]
    assert all(abs(len(p) - e) <= 2 for p, e in zip(patients, expected, strict=True))
    # NIH has no official split: nothing to drop, and the summary says 0, not "unknown".
    assert summary["test_patients_dropped"] == {
        "on": True,
        "patients": 0,
        "images": 0,
        "by_split": {},
    }
    # Every split holds both labels; manifests record the split, patient and original name.
    for name, s in zip(splits, sets, strict=True):
        assert s.resolution == 16 and all(s.counts()[label] > 0 for label in s.labels)
        assert {r.split for r in s.records} == {name}
        assert all(r.source == f"images/{r.original_id}" for r in s.records)
    by_name = {r["Image Index"]: r for r in mini_rows}
    record = sets[3].records[0]
    assert by_name[record.original_id]["Patient ID"] == record.patient_id
    image = sets[3].load(0)
    assert image.shape == (16, 16) and image.dtype == np.uint8


def test_same_seed_gives_identical_sets_and_another_seed_does_not(tmp_path, mini_rows) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:300])
    a = ingest(nih_config(src), *outs(tmp_path, "a"))
    b = ingest(nih_config(src), *outs(tmp_path, "b"))
    c = ingest(nih_config(src, split=SplitConfig(seed=1)), *outs(tmp_path, "c"))
    assert manifests(outs(tmp_path, "a")) == manifests(outs(tmp_path, "b"))
    assert hashes(outs(tmp_path, "a")) == hashes(outs(tmp_path, "b"))
    assert a["counts"] == b["counts"]
    assert manifests(outs(tmp_path, "a")) != manifests(outs(tmp_path, "c"))
    assert c["shared_patients_total"] == 0


def test_view_and_age_filters_keep_exactly_the_matching_rows(tmp_path, mini_rows) -> None:
    expected = [
        r for r in mini_rows if r["View Position"] == "PA" and 30 <= int(r["Patient Age"]) <= 60
    ]
    rows, info = load_nih_metadata(
        nih_config(NIH_MINI, view_positions=["PA"], age_min=30, age_max=60)
    )
    assert [r.original_id for r in rows] == [r["Image Index"] for r in expected]
    assert info["filtered_out"] == 1000 - len(expected) and 0 < len(expected) < 1000
    summary = ingest(
        nih_config(NIH_MINI, view_positions=["PA"], age_min=30, age_max=60), *outs(tmp_path)
    )
    assert sum(summary["totals"].values()) == len(expected)


def test_label_policy_maps_source_labels_to_run_labels() -> None:
    policy = {"No Finding": "Healthy", "Infiltration": "Infiltration"}
    data = nih_config(
        NIH_MINI,
        labels=["Healthy", "Infiltration", "Other"],
        label_policy=policy,
        default_label="Other",
    )
    rows, _ = load_nih_metadata(data)
    for row in rows:
        assert row.label == policy.get(row.source_label, "Other")
    assert Counter(r.label for r in rows)["Healthy"] == 499


def test_full_nih_metadata_loads_validates_and_splits(tmp_path) -> None:
    # Its speed is benchmarks/ingest.py's to measure: a timed assert fails on a loaded machine.
    rows, info = load_nih_metadata(nih_config(NIH_META.parent, csv=NIH_META.name))
    split_by_patient(rows, SplitConfig(), ["No Finding", "Unhealthy"])
    assert info["rows_read"] == len(rows) == 112_120
    assert len({r.patient_id for r in rows}) == 30_805
    by_split: dict[str, set[str]] = {"pool": set(), "train": set(), "val": set(), "test": set()}
    for row in rows:
        by_split[row.split].add(row.patient_id)
    assert sum(len(p) for p in by_split.values()) == 30_805  # disjoint
    assert abs(len(by_split["test"]) / 30_805 - 0.2) < 0.01
    assert abs(len(by_split["val"]) / 30_805 - 0.1) < 0.01


def test_full_nih_metadata_with_only_the_mini_images_skips_the_rest(tmp_path) -> None:
    # The full CSV over the 1,000 mini images: on_missing=skip ingests exactly those.
    meta = tmp_path / "nih"
    meta.mkdir()
    (meta / "images").symlink_to(NIH_MINI / "images")
    shutil.copyfile(NIH_META, meta / NIH_META.name)
    summary = ingest(nih_config(meta, csv=NIH_META.name, on_missing="skip"), *outs(tmp_path))
    assert sum(summary["totals"].values()) == 1000
    assert summary["skipped_missing"] == 112_120 - 1000 and len(summary["skipped_files"]) == 20
    assert summary["shared_patients_total"] == 0


# --------------------------------------------------------------------------- other formats


def test_medmnist_keeps_the_official_test_split_and_maps_class_numbers(tmp_path) -> None:
    data = DataConfig(
        source=str(PNEUMONIA),
        format="medmnist-npz",
        resolution=28,
        label_policy={"0": "No Finding", "1": "Unhealthy"},
        default_label="",
        max_images=400,
    )
    dirs = outs(tmp_path)
    summary = ingest(data, *dirs)
    pool, train, val, test = (ImageSet(d) for d in dirs)
    assert len(pool) + len(train) + len(val) + len(test) == 400
    # The official test and val splits are kept; pool and real-train come from train only.
    assert all(r.original_id.startswith("test/") for r in test.records)
    assert all(r.original_id.startswith("val/") for r in val.records) and len(val) > 0
    assert all(r.original_id.startswith("train/") for r in pool.records + train.records)
    assert abs(len(pool) / (len(pool) + len(train)) - 0.45 / 0.7) < 0.02
    assert summary["totals"] == {"pool": len(pool), "train": len(train), "val": len(val),
                                 "test": len(test)}  # fmt: skip
    # Known answer: the stored pixels and labels are the npz's own.
    npz = np.load(PNEUMONIA / "pneumoniamnist.npz")
    record = test.records[0]
    i = int(record.original_id.split("/")[1])
    assert np.array_equal(test.load(0), npz["test_images"][i])
    assert record.label == ("No Finding", "Unhealthy")[int(npz["test_labels"][i, 0])]
    # MedMNIST has no patient IDs: the summary says so, never "0 patients shared".
    assert summary["shared_patients_total"] is None and summary["patients_known"] is False
    assert summary["test_patients_dropped"] is None
    assert "leakage is possible" in summary["leakage_warning"]


def test_image_folder_labels_come_from_the_first_folder_level(tmp_path) -> None:
    src = tmp_path / "folder"
    names = sorted(p.name for p in (NIH_MINI / "images").iterdir())[:40]
    for k, name in enumerate(names):
        label = "No Finding" if k % 2 else "Pneumonia"
        target = src / label / f"batch{k % 3}" / name  # nesting below the label folder
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(NIH_MINI / "images" / name, target)
    (src / "README.txt").write_text("not an image")
    data = DataConfig(source=str(src), format="image-folder", resolution=16)
    dirs = outs(tmp_path)
    summary = ingest(data, *dirs)
    records = [r for d in dirs for r in ImageSet(d).records]
    assert len(records) == 40
    assert all(
        r.label == ("No Finding" if r.source.startswith("No Finding/") else "Unhealthy")
        for r in records
    )
    # 20 images per label, each its own patient: 0.45 / 0.25 / 0.1 / 0.2 -> 9 / 5 / 2 / 4.
    assert summary["counts"]["test"] == {"No Finding": 4, "Unhealthy": 4}
    assert summary["counts"]["val"] == {"No Finding": 2, "Unhealthy": 2}


def test_nih_images_in_tar_archives_give_the_same_sets(tmp_path, mini_rows) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:200])
    arch = tmp_path / "arch"
    (arch / "images").mkdir(parents=True)
    shutil.copyfile(src / CSV_NAME, arch / CSV_NAME)
    names = sorted(p.name for p in (src / "images").iterdir())
    for part, chunk in enumerate((names[:120], names[120:])):  # NIH ships images_001.tar.gz, ...
        with tarfile.open(arch / "images" / f"images_{part + 1:03d}.tar.gz", "w:gz") as tf:
            for name in chunk:
                tf.add(src / "images" / name, arcname=f"images/{name}")
    ingest(nih_config(src), *outs(tmp_path, "a"))
    ingest(nih_config(arch), *outs(tmp_path, "b"), cache_dir=tmp_path / "cache")
    assert hashes(outs(tmp_path, "a")) == hashes(outs(tmp_path, "b"))


# --------------------------------------------------------------------------- bad input


def test_missing_images_fail_with_count_and_names_and_leave_nothing(tmp_path, mini_rows) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:200])
    gone = [
        mini_rows[5]["Image Index"],
        mini_rows[50]["Image Index"],
        mini_rows[150]["Image Index"],
    ]
    for name in gone:
        (src / "images" / name).unlink()
    with pytest.raises(IngestError, match=rf"3 of 200 images listed in .* are missing.*{gone[0]}"):
        ingest(nih_config(src), *outs(tmp_path))
    assert_no_outputs(tmp_path)
    summary = ingest(nih_config(src, on_missing="skip"), *outs(tmp_path))
    assert summary["skipped_missing"] == 3 and summary["skipped_files"] == gone
    assert sum(summary["totals"].values()) == 197


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_png_is_named_and_leaves_nothing(tmp_path, mini_rows, damage) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:200])
    bad = src / "images" / mini_rows[199]["Image Index"]  # the last one streamed
    data = bad.read_bytes()
    bad.write_bytes(b"not a png at all" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(IngestError, match=rf"{bad.name}: not a readable image"):
        ingest(nih_config(src), *outs(tmp_path))
    assert_no_outputs(tmp_path)  # no set, no temp folder, even though earlier images were written


def test_csv_without_a_required_column_names_it(tmp_path, mini_rows) -> None:
    columns = [c for c in read_csv(NIH_MINI / CSV_NAME)[0] if c != "Patient ID"]
    src = make_nih(tmp_path / "src", mini_rows[:50], columns=columns)
    with pytest.raises(IngestError, match=r"missing required column\(s\) \['Patient ID'\]"):
        ingest(nih_config(src), *outs(tmp_path))
    columns = [c for c in read_csv(NIH_MINI / CSV_NAME)[0] if c != "View Position"]
    src2 = make_nih(tmp_path / "src2", mini_rows[:50], columns=columns)
    with pytest.raises(IngestError, match=r"\['View Position'\]"):
        ingest(nih_config(src2, view_positions=["PA"]), *outs(tmp_path))
    assert_no_outputs(tmp_path)


def test_unknown_label_not_covered_by_the_policy_is_named(tmp_path) -> None:
    data = nih_config(NIH_MINI, default_label="")
    with pytest.raises(IngestError, match=r"not covered by data.label_policy.*'Infiltration'"):
        ingest(data, *outs(tmp_path))
    assert_no_outputs(tmp_path)


def test_label_with_too_few_patients_for_the_split_is_an_error(tmp_path, mini_rows) -> None:
    healthy = [r for r in mini_rows if r["Finding Labels"] == "No Finding"]
    sick_patients = sorted(
        {r["Patient ID"] for r in mini_rows if r["Finding Labels"] != "No Finding"}
    )[:2]
    sick = [
        r
        for r in mini_rows
        if r["Patient ID"] in sick_patients and r["Finding Labels"] != "No Finding"
    ]
    src = make_nih(tmp_path / "src", healthy[:100] + sick)
    with pytest.raises(IngestError, match=r"label 'Unhealthy'.*too few"):
        ingest(nih_config(src), *outs(tmp_path))
    assert_no_outputs(tmp_path)


def test_an_empty_source_is_named_before_any_work(tmp_path) -> None:
    # (it was "expected exactly one .npz file" or "0 patients are too few", depending on format)
    with pytest.raises(IngestError, match=r"^data.source: not set"):
        ingest(DataConfig(source="", format="image-folder"), *outs(tmp_path))
    assert_no_outputs(tmp_path)


def test_existing_output_is_refused_before_any_work(tmp_path) -> None:
    pool, train, val, test = outs(tmp_path)
    train.mkdir(parents=True)
    (train / "keep.txt").write_text("user data")
    with pytest.raises(IngestError, match="already exists and is not empty"):
        ingest(nih_config(NIH_MINI), pool, train, val, test)
    assert (train / "keep.txt").read_text() == "user data" and not pool.exists()


def test_path_traversal_entry_in_an_archive_is_refused(tmp_path, mini_rows) -> None:
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    shutil.copyfile(NIH_MINI / CSV_NAME, src / CSV_NAME)
    payload = (NIH_MINI / "images" / mini_rows[0]["Image Index"]).read_bytes()
    with tarfile.open(src / "images" / "images_001.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("../../evil.png")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    cache = tmp_path / "deep" / "er" / "cache"
    with pytest.raises(
        IngestError, match=r"images_001.tar.gz: archive entry '../../evil.png' points outside"
    ):
        ingest(nih_config(src), *outs(tmp_path), cache_dir=cache)
    assert not list(tmp_path.rglob("evil.png"))
    assert_no_outputs(tmp_path)


def test_empty_images_folder_is_named(tmp_path, mini_rows) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:10])
    shutil.rmtree(src / "images")
    (src / "images").mkdir()
    with pytest.raises(IngestError, match=r"data.images_dir: .*images is empty"):
        ingest(nih_config(src), *outs(tmp_path))


def test_file_uri_source_gives_the_same_sets_as_a_plain_path(tmp_path, mini_rows) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:120])
    ingest(nih_config(src), *outs(tmp_path, "a"))
    ingest(nih_config(f"file://{src}"), *outs(tmp_path, "b"))
    assert manifests(outs(tmp_path, "a")) == manifests(outs(tmp_path, "b"))
    assert hashes(outs(tmp_path, "a")) == hashes(outs(tmp_path, "b"))


def test_gzipped_csv_reads_like_the_plain_one(tmp_path, mini_rows) -> None:
    src = make_nih(tmp_path / "src", mini_rows[:100])
    (src / (CSV_NAME + ".gz")).write_bytes(gzip.compress((src / CSV_NAME).read_bytes()))
    plain, _ = load_nih_metadata(nih_config(src))
    gz, _ = load_nih_metadata(nih_config(src, csv=CSV_NAME + ".gz"))
    assert plain == gz and len(plain) == 100


# --------------------------------------------------------------------------- remote sources


@pytest.fixture(scope="module")
def mini_in_buckets(s3_server, gcs_server) -> dict[str, str]:
    """The mini set uploaded once to each server: {"s3": "s3://b/nih", "gs": "gs://b/nih"}."""
    bucket = f"nih-{uuid.uuid4().hex[:8]}"
    s3_server.client().make_bucket(bucket)
    gcs_server.client().create_bucket(bucket)
    uris = {}
    with pytest.MonkeyPatch.context() as mp:
        for scheme, server in (("s3", s3_server), ("gs", gcs_server)):
            for key, value in server.env().items():
                mp.setenv(key, value)
            mp.setenv("GOOGLE_CLOUD_PROJECT", "tgap-test")
            storage.upload_folder(NIH_MINI, f"{scheme}://{bucket}/nih")
            uris[scheme] = f"{scheme}://{bucket}/nih"
    return uris


@pytest.mark.servers
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_remote_ingest_equals_local_disk(
    scheme, request, mini_in_buckets, local_mini, tmp_path
) -> None:
    request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    summary, local_dirs = local_mini
    dirs = outs(tmp_path)
    remote = ingest(nih_config(mini_in_buckets[scheme]), *dirs)
    assert manifests(dirs) == manifests(local_dirs)
    assert hashes(dirs) == hashes(local_dirs)
    assert remote["counts"] == summary["counts"] and remote["source"].startswith(f"{scheme}://")
    assert ImageSet(dirs[0]).info["source_uri"] == mini_in_buckets[scheme]


@pytest.mark.servers
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_remote_empty_prefix_and_missing_bucket_are_named(
    scheme, request, mini_in_buckets, tmp_path
) -> None:
    request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    bucket = mini_in_buckets[scheme].split("/")[2]
    with pytest.raises(IngestError, match=rf"{scheme}://{bucket}/nothing is empty"):
        ingest(nih_config(f"{scheme}://{bucket}/nothing", csv=""), *outs(tmp_path))
    with pytest.raises(IngestError, match=r"no-such-bucket-x.*does not exist"):
        ingest(nih_config(f"{scheme}://no-such-bucket-x/nih"), *outs(tmp_path))
    assert_no_outputs(tmp_path)


@pytest.mark.servers
def test_remote_wrong_credentials_are_a_clear_error(
    s3, mini_in_buckets, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-for-this-test")
    with pytest.raises(IngestError, match="wrong credentials") as info:
        ingest(nih_config(mini_in_buckets["s3"]), *outs(tmp_path))
    assert "wrong-secret-for-this-test" not in str(info.value)
    assert_no_outputs(tmp_path)


def test_unreachable_endpoint_is_a_clear_error_after_retries(monkeypatch, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TGAP_S3_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    with pytest.raises(
        IngestError,
        match=r"s3://bucket/nih/Data_Entry_2017_v2020.csv: read .*failed after 3 attempts",
    ):
        ingest(nih_config("s3://bucket/nih"), *outs(tmp_path))
    assert_no_outputs(tmp_path)
