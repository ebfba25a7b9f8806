"""Ingest of the layouts users bring: image folders with patient IDs in file names and official
split folders, CheXpert-style CSV manifests, identity labels, unreadable files, image modes, and
external (already generated) sets. Every fixture is built here, in a tmp folder."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tgap.config import ConfigError, CsvFormatConfig, DataConfig, SplitConfig, load_config
from tgap.imageset import ImageSet
from tgap.ingest import IngestError, ingest, read_external_set, summary_markdown

PATTERN = r"person(\d+)_"


def picture(seed: int, side: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)


def save(path: Path, pixels: np.ndarray, fmt: str | None = None, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(path, fmt)


def chest_folder(root: Path, shared: int = 0) -> dict[str, set[str]]:
    """``train|test/<LABEL>/person<N>_<k>.jpeg`` (RGB JPEG, 2-3 images per patient), plus a
    ``val/`` folder the run does not use. ``shared`` test patients also appear in train.
    Returns the patient IDs written per folder."""
    written: dict[str, set[str]] = {"train": set(), "test": set()}
    n = 0
    for folder, first, count in (("train", 0, 24), ("test", 100, 10)):
        for p in range(first, first + count):
            label = "NORMAL" if p % 2 else "PNEUMONIA"
            for k in range(2 + p % 2):
                save(root / folder / label / f"person{p}_virus_{k}.jpeg", picture(n), "JPEG")
                n += 1
            written[folder].add(str(p))
    for p in range(100, 100 + shared):  # the dataset's own leak: test patients in train
        label = "NORMAL" if p % 2 else "PNEUMONIA"
        save(root / "train" / label / f"person{p}_bacteria_9.jpeg", picture(n), "JPEG")
        written["train"].add(str(p))
        n += 1
    save(root / "val" / "NORMAL" / "person999_0.jpeg", picture(n), "JPEG")
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / "NORMAL" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "train" / "NORMAL" / "._person1_virus_0.jpeg").write_bytes(b"\x00\x05\x16\x07")
    return written


def chest_config(source: Path, **kw) -> DataConfig:
    kw.setdefault("split_folders", {"test": "test", "pool_and_train": "train"})
    return DataConfig(
        source=str(source),
        format="image-folder",
        resolution=12,
        labels=["No Finding", "Unhealthy"],
        label_policy={"NORMAL": "No Finding", "PNEUMONIA": "Unhealthy"},
        default_label="",
        **kw,
    )


def outs(tmp: Path, tag: str = "out") -> tuple[Path, Path, Path, Path]:
    return tmp / tag / "pool", tmp / tag / "train", tmp / tag / "val", tmp / tag / "test"


def patients_of(image_set: ImageSet) -> set[str]:
    """Patient IDs read back from the stored source paths, independently of tgap."""
    return {re.search(PATTERN, r.source).group(1) for r in image_set.records}


# --------------------------------------------------------------------------- patient IDs, split folders


def test_pattern_split_folders_give_patient_disjoint_sets_counted_independently(tmp_path) -> None:
    written = chest_folder(tmp_path / "src")
    dirs = outs(tmp_path)
    summary = ingest(chest_config(tmp_path / "src", patient_id_pattern=PATTERN), *dirs)
    pool, train, val, test = (ImageSet(d) for d in dirs)
    ids = {
        name: patients_of(s)
        for name, s in (("pool", pool), ("train", train), ("val", val), ("test", test))
    }
    names = list(ids)
    independent = {
        f"{a}-{b}": len(ids[a] & ids[b]) for i, a in enumerate(names) for b in names[i + 1 :]
    }
    assert set(independent.values()) == {0} and len(independent) == 6
    assert summary["shared_patients"] == independent and summary["shared_patients_total"] == 0
    assert summary["patients"] == {s: len(ids[s]) for s in ids}
    assert summary["patients_known"] and not summary["leakage_warning"]
    assert summary["test_patients_dropped"] == {
        "on": True,
        "patients": 0,
        "images": 0,
        "by_split": {},
    }
    # The official test folder became real-test unchanged; real-val was cut by patient from the
    # train folder (no val entry in split_folders); val/ and OS litter were left out.
    assert ids["test"] == written["test"]
    assert ids["pool"] | ids["train"] | ids["val"] == written["train"] and ids["val"]
    assert all(r.source.startswith("test/") for r in test.records)
    kept = pool.records + train.records + val.records
    assert not any(r.source.startswith(("test/", "val/")) for r in kept)
    assert {r.split for r in val.records} == {"val"}
    assert len(test) == sum(2 + p % 2 for p in range(100, 110))
    assert summary["outside_split_folders"] == 1
    assert "official splits kept" in summary["split"] and "by patient" in summary["split"]
    # dataset.json carries the same facts (the report reads them from the pool).
    assert pool.info["ingest"]["shared_patients_total"] == 0
    assert "Patients shared between splits: 0." in summary_markdown(summary)


def test_without_a_pattern_the_split_is_by_image_and_says_leakage_is_possible(tmp_path) -> None:
    chest_folder(tmp_path / "src")
    dirs = outs(tmp_path)
    summary = ingest(chest_config(tmp_path / "src"), *dirs)
    assert summary["patients_known"] is False
    assert summary["shared_patients"] is None and summary["shared_patients_total"] is None
    assert "by image" in summary["split"]
    assert "leakage is possible" in summary["leakage_warning"]
    text = summary_markdown(summary)
    assert "leakage is possible" in text and "Patients shared between splits" not in text
    assert ImageSet(dirs[0]).info["ingest"]["leakage_warning"] == summary["leakage_warning"]


def test_a_test_patient_in_the_train_folder_is_dropped_and_counted(tmp_path) -> None:
    written = chest_folder(tmp_path / "src", shared=3)
    shared = written["train"] & written["test"]
    assert len(shared) == 3  # one extra image each in train/ (chest_folder)
    dirs = outs(tmp_path)
    summary = ingest(chest_config(tmp_path / "src", patient_id_pattern=PATTERN), *dirs)
    pool, train, val, test = (patients_of(ImageSet(d)) for d in dirs)
    # Sealed: no test patient is left in pool, real-train or real-val (read back from the sets).
    assert not (pool | train | val) & test
    assert test == written["test"]
    assert summary["test_patients_dropped"] == {
        "on": True, "patients": 3, "images": 3, "by_split": {"pool_and_train": 3},
    }  # fmt: skip
    assert summary["shared_patients_total"] == 0 and summary["cross_split_patients_total"] == 0
    n_train_folder = sum(2 + p % 2 for p in range(24)) + 3
    assert sum(summary["totals"][s] for s in ("pool", "train", "val")) == n_train_folder - 3
    assert ImageSet(dirs[0]).info["ingest"]["test_patients_dropped"]["images"] == 3
    assert "dropped 3 images of 3 patients" in summary_markdown(summary)


def test_with_the_drop_off_a_patient_in_two_split_folders_is_reported(tmp_path) -> None:
    written = chest_folder(tmp_path / "src", shared=3)
    dirs = outs(tmp_path)
    data = chest_config(tmp_path / "src", patient_id_pattern=PATTERN)
    data.split.drop_test_patients = False
    summary = ingest(data, *dirs)
    expected = len(written["train"] & written["test"])
    assert expected == 3
    assert summary["cross_split_patients_total"] == expected
    assert summary["test_patients_dropped"] == {
        "on": False, "patients": 0, "images": 0, "by_split": {},
    }  # fmt: skip
    pool, train, val, test = (patients_of(ImageSet(d)) for d in dirs)
    assert len((pool | train | val) & test) == 3
    # the splits tgap made are clean
    assert {k: summary["shared_patients"][k] for k in ("pool-train", "pool-val", "train-val")} == {
        "pool-train": 0, "pool-val": 0, "train-val": 0,
    }  # fmt: skip
    assert summary["cross_split_patients"] == {
        k: v
        for k, v in {
            "pool-test": len(pool & test), "train-test": len(train & test),
            "val-test": len(val & test),
        }.items()
        if v
    }  # fmt: skip
    assert "Leak in the dataset itself" in summary_markdown(summary)


def test_an_official_val_folder_becomes_real_val(tmp_path) -> None:
    written = chest_folder(tmp_path / "src")
    for p in range(200, 204):  # a val/ folder with both labels
        save(tmp_path / "src" / "val" / ("NORMAL" if p % 2 else "PNEUMONIA") / f"person{p}_0.jpeg",
             picture(p), "JPEG")  # fmt: skip
    data = chest_config(
        tmp_path / "src",
        patient_id_pattern=PATTERN,
        split_folders={"test": "test", "pool_and_train": "train", "val": "val"},
    )
    dirs = outs(tmp_path)
    summary = ingest(data, *dirs)
    pool, train, val, test = (ImageSet(d) for d in dirs)
    assert {r.source.split("/")[0] for r in val.records} == {"val"}
    # person999 (in val/ from chest_folder) and the four added
    assert patients_of(val) == {"999", "200", "201", "202", "203"}
    assert patients_of(pool) | patients_of(train) == written["train"]
    assert summary["totals"]["val"] == 5 and summary["outside_split_folders"] == 0


def test_unmatched_paths_fail_or_become_their_own_patients(tmp_path) -> None:
    chest_folder(tmp_path / "src")
    save(tmp_path / "src" / "train" / "NORMAL" / "IM-0001.jpeg", picture(7), "JPEG")
    with pytest.raises(IngestError, match=r"does not match 1 of .*IM-0001.jpeg.*own-patient"):
        ingest(chest_config(tmp_path / "src", patient_id_pattern=PATTERN), *outs(tmp_path, "a"))
    summary = ingest(
        chest_config(tmp_path / "src", patient_id_pattern=PATTERN, on_unmatched="own-patient"),
        *outs(tmp_path, "b"),
    )
    assert summary["unmatched_own_patient"] == 1
    assert summary["unmatched_files"] == ["train/NORMAL/IM-0001.jpeg"]


def test_a_missing_split_folder_is_named(tmp_path) -> None:
    chest_folder(tmp_path / "src")
    data = chest_config(
        tmp_path / "src", split_folders={"test": "testing", "pool_and_train": "train"}
    )
    with pytest.raises(IngestError, match=r"data.split_folders.test: folder 'testing' is missing"):
        ingest(data, *outs(tmp_path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pool_train_val_test_folders_are_all_kept(tmp_path) -> None:
    for folder, base in (("a", 0), ("b", 20), ("v", 60), ("c", 40)):
        for p in range(base, base + 6):
            save(
                tmp_path / "src" / folder / ("x" if p % 2 else "y") / f"person{p}_0.png", picture(p)
            )
    data = DataConfig(
        source=str(tmp_path / "src"),
        format="image-folder",
        resolution=12,
        labels=["x", "y"],
        label_policy={},
        split_folders={"pool": "a", "train": "b", "val": "v", "test": "c"},
        patient_id_pattern=PATTERN,
    )
    dirs = outs(tmp_path)
    ingest(data, *dirs)
    for d, folder in zip(dirs, "abvc", strict=True):
        assert {r.source.split("/")[0] for r in ImageSet(d).records} == {folder}


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (r"data.patient_id_pattern=person\d+_", r"data.patient_id_pattern: .* has 0 groups"),
        (r"data.patient_id_pattern=person(\d+", r"data.patient_id_pattern: .* not a valid regex"),
        ("data.split_folders={test: test}", r"data.split_folders: \['test'\] must be"),
        ("data.split_folders={tests: t, pool_and_train: x}", r"data.split_folders: unknown split"),
        (
            "data.split_folders={test: t, pool: p, train: r}",
            r"data.split_folders: test \+ pool \+ train fix every image.*val entry",
        ),
        ("data.csv_format.path_column=", r"data.csv_format.path_column: '' is too short"),
        ("grid.methods=[external:mine]", r"grid.methods\[0\]: 'external:mine' names no set"),
    ],
)
def test_bad_keys_fail_at_config_load_naming_the_key(override, message) -> None:
    base = ["data.format=image-folder"] if "csv_format" not in override else ["data.format=csv"]
    if "csv_format" in override:
        base.append("data.csv_format.label_column=label")
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*base, override])


def test_csv_format_needs_one_label_source_at_config_load() -> None:
    with pytest.raises(ConfigError, match="exactly one of label_column"):
        load_config(None, ["data.format=csv"])


# --------------------------------------------------------------------------- CSV (CheXpert layout)

CHEXPERT_COLUMNS = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly", "Edema",
    "Pleural Effusion",
]  # fmt: skip


def chexpert(root: Path) -> list[dict[str, str]]:
    """``CheXpert-v1.0-small/{train,valid}.csv`` + ``.../patientNNNNN/studyK/viewK_frontal.jpg``."""
    rows = []
    n = 0
    for split, patients in (("train", range(1, 17)), ("valid", range(50, 58))):
        lines = []
        for p in patients:
            for study in (1, 2):
                path = f"CheXpert-v1.0-small/{split}/patient{p:05d}/study{study}/view1_frontal.jpg"
                save(root / path, picture(n), "JPEG")
                n += 1
                healthy = p % 2 == 0
                cells = {
                    "No Finding": "1.0" if healthy else "",
                    "Cardiomegaly": "" if healthy else "1.0",
                    # Uncertain on some sick and some healthy rows.
                    "Edema": "-1.0" if p % 4 == 0 else ("0.0" if p % 3 else ""),
                    "Pleural Effusion": "",
                }
                view = "Lateral" if (p == 3 and study == 2) else "Frontal"
                lines.append(
                    {
                        "Path": path,
                        "Sex": "Female",
                        "Age": "60",
                        "Frontal/Lateral": view,
                        "AP/PA": "PA",
                        **cells,
                        "split": split,
                    }  # fmt: skip
                )
        with open(root / "CheXpert-v1.0-small" / f"{split}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CHEXPERT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(lines)
        rows += lines
    # A merged manifest with a split column, as users often build for MIMIC-CXR.
    with open(root / "all.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CHEXPERT_COLUMNS, "split"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def chexpert_config(root: Path, uncertain: str, **kw) -> DataConfig:
    return DataConfig(
        source=str(root),
        format="csv",
        csv="all.csv",
        resolution=12,
        labels=["No Finding", "Unhealthy"],
        label_policy={"No Finding": "No Finding"},
        default_label="Unhealthy",
        view_positions=["Frontal"],
        patient_id_pattern=r"patient(\d+)/",
        csv_format=CsvFormatConfig(
            path_column="Path",
            label_columns=["No Finding", "Cardiomegaly", "Edema", "Pleural Effusion"],
            view_column="Frontal/Lateral",
            split_column="split",
            split_values={"test": "valid", "pool_and_train": "train"},
            uncertain=uncertain,
        ),
        split=SplitConfig(
            pool_fraction=0.5, train_fraction=0.3, val_fraction=0.1, test_fraction=0.1
        ),
        **kw,
    )


def expected_labels(rows: list[dict[str, str]], uncertain: str) -> dict[str, str]:
    """The label each kept row must get, computed here from the CSV cells."""
    out = {}
    for r in rows:
        if r["Frontal/Lateral"] != "Frontal":
            continue
        cells = [r[c] for c in ("No Finding", "Cardiomegaly", "Edema", "Pleural Effusion")]
        if "-1.0" in cells and uncertain == "drop":
            continue
        positive = [
            c
            for c, v in zip(
                ("No Finding", "Cardiomegaly", "Edema", "Pleural Effusion"), cells, strict=True
            )
            if v == "1.0" or (v == "-1.0" and uncertain == "positive")
        ]
        if not positive:
            continue
        out[r["Path"]] = "No Finding" if positive == ["No Finding"] else "Unhealthy"
    return out


@pytest.mark.parametrize("uncertain", ["positive", "negative", "drop"])
def test_chexpert_csv_maps_one_hot_columns_with_each_uncertainty_policy(
    tmp_path, uncertain
) -> None:
    rows = chexpert(tmp_path / "src")
    dirs = outs(tmp_path)
    summary = ingest(chexpert_config(tmp_path / "src", uncertain), *dirs)
    sets = [ImageSet(d) for d in dirs]
    got = {r.source: r.label for s in sets for r in s.records}
    assert got == expected_labels(rows, uncertain)
    # The official valid split became real-test; patients from the path pattern.
    assert {r.source.split("/")[1] for r in sets[3].records} == {"valid"}
    assert {r.source.split("/")[1] for s in sets[:3] for r in s.records} == {"train"}
    assert all(r.patient_id == r.source.split("patient")[1][:5] for s in sets for r in s.records)
    left_out = summary["csv_rows_left_out"]
    assert left_out["filtered_view"] == 1
    n_uncertain = sum(1 for r in rows if r["Edema"] == "-1.0" and r["Frontal/Lateral"] == "Frontal")
    assert left_out.get("dropped_uncertain", 0) == (n_uncertain if uncertain == "drop" else 0)
    assert f"-1 cells: {uncertain}" in summary["uncertain_policy"]
    assert summary["shared_patients_total"] == 0


def test_chexpert_own_csv_with_paths_relative_to_the_parent_folder(tmp_path) -> None:
    chexpert(tmp_path / "src")
    data = chexpert_config(tmp_path / "src", "negative", max_images=None)
    data.csv = "CheXpert-v1.0-small/train.csv"
    data.csv_format.split_column, data.csv_format.split_values = "", {}
    summary = ingest(data, *outs(tmp_path))
    assert summary["rows_read"] == 32 and "official" not in summary["split"]


def test_csv_without_its_path_column_is_named(tmp_path) -> None:
    chexpert(tmp_path / "src")
    data = chexpert_config(tmp_path / "src", "drop")
    data.csv_format.path_column = "path"
    with pytest.raises(
        IngestError, match=r"all.csv: no column 'path' \(data.csv_format.path_column\)"
    ):
        ingest(data, *outs(tmp_path))


def test_csv_cell_that_is_not_one_hot_is_named(tmp_path) -> None:
    rows = chexpert(tmp_path / "src")
    rows[4]["Edema"] = "maybe"
    with open(tmp_path / "src" / "all.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*CHEXPERT_COLUMNS, "split"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(
        IngestError, match=r"all.csv line 6 column 'Edema': 'maybe' is not 1, 0, -1"
    ):
        ingest(chexpert_config(tmp_path / "src", "drop"), *outs(tmp_path))


# --------------------------------------------------------------------------- labels, corrupt files, modes


def three_class_folder(root: Path, per_class: int = 9) -> None:
    for c, label in enumerate(("cat", "dog", "eel")):
        for k in range(per_class):
            save(root / label / f"{label}{k}.png", picture(100 * c + k), mode="L")


def test_identity_labels_when_folder_names_are_the_labels(tmp_path) -> None:
    three_class_folder(tmp_path / "src")
    for tag, policy in (("empty", {}), ("default", DataConfig().label_policy)):
        data = DataConfig(
            source=str(tmp_path / "src"),
            format="image-folder",
            resolution=12,
            labels=["cat", "dog", "eel"],
            label_policy=policy,
        )
        summary = ingest(data, *outs(tmp_path, tag))
        assert sum(summary["totals"].values()) == 27
        for d in outs(tmp_path, tag):
            assert all(r.source.startswith(f"{r.label}/") for r in ImageSet(d).records)


def test_unreadable_files_fail_by_default_and_are_listed_when_skipped(tmp_path) -> None:
    three_class_folder(tmp_path / "src")
    (tmp_path / "src" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    good = tmp_path / "src" / "eel" / "eel0.png"
    (tmp_path / "src" / "eel" / "cut.png").write_bytes(good.read_bytes()[:60])
    data = DataConfig(
        source=str(tmp_path / "src"), format="image-folder", resolution=12,
        labels=["cat", "dog", "eel"], label_policy={},
    )  # fmt: skip
    with pytest.raises(IngestError, match=r"(broken|cut).png: not a readable image"):
        ingest(data, *outs(tmp_path, "fail"))
    assert not any((tmp_path / "fail").iterdir()) if (tmp_path / "fail").exists() else True
    data.on_corrupt = "skip"
    dirs = outs(tmp_path, "skip")
    summary = ingest(data, *dirs)
    assert summary["skipped_corrupt"] == 2 and sum(summary["totals"].values()) == 27
    listed = {c["file"]: c["reason"] for c in summary["corrupt_files"]}
    assert set(listed) == {"dog/broken.png", "eel/cut.png"}
    assert all("not a readable image" in reason for reason in listed.values())
    for d in dirs:
        assert ImageSet(d).info["ingest"]["corrupt_files"] == summary["corrupt_files"]
    assert "`dog/broken.png`" in summary_markdown(summary)


def test_every_image_mode_decodes_to_the_same_grey(tmp_path) -> None:
    grey = picture(3, side=12)
    src = tmp_path / "src"
    alpha = np.full_like(grey, 255)
    palette = Image.new("P", (12, 12))
    palette.putpalette([v for i in range(256) for v in (i, i, i)])
    palette.putdata(grey.ravel().tolist())
    images = {
        "grey.png": Image.fromarray(grey),
        "rgb.png": Image.fromarray(np.stack([grey] * 3, -1)),
        "rgba.png": Image.fromarray(np.stack([grey, grey, grey, alpha], -1)),
        "palette.png": palette,
        "grey16.png": Image.fromarray(grey.astype(np.uint16) * 257),
        "cmyk.tif": Image.fromarray(np.stack([np.zeros_like(grey)] * 3 + [255 - grey], -1), "CMYK"),
    }
    for name, image in images.items():
        (src / "a").mkdir(parents=True, exist_ok=True)
        image.save(src / "a" / name)
    assert Image.open(src / "a" / "grey16.png").mode.startswith("I")
    assert Image.open(src / "a" / "palette.png").mode == "P"
    for k in range(6):
        save(src / "b" / f"b{k}.png", picture(50 + k), mode="L")
    data = DataConfig(
        source=str(src), format="image-folder", resolution=12, labels=["a", "b"], label_policy={},
        split=SplitConfig(pool_fraction=0.25, train_fraction=0.25, val_fraction=0.25, test_fraction=0.25),
    )  # fmt: skip
    dirs = outs(tmp_path)
    ingest(data, *dirs)
    decoded = {}
    for d in dirs:
        s = ImageSet(d)
        decoded.update({r.source: s.load(i) for i, r in enumerate(s.records) if r.label == "a"})
    assert len(decoded) == len(images)
    for name, pixels in decoded.items():
        assert np.array_equal(pixels, grey), name


# --------------------------------------------------------------------------- external sets


def files_sha256(root: Path) -> str:
    """The documented external-set hash, computed here independently."""
    total = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.png")):
        rel = path.relative_to(root).as_posix()
        total.update(f"{rel}\t{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return total.hexdigest()


def test_external_folder_is_read_with_its_file_hash(tmp_path) -> None:
    three_class_folder(tmp_path / "gen", per_class=3)
    result = read_external_set(
        "mine", str(tmp_path / "gen"), ["cat", "dog", "eel"], 12, tmp_path / "set"
    )
    image_set = ImageSet(tmp_path / "set")
    assert image_set.counts() == {"cat": 3, "dog": 3, "eel": 3}
    assert image_set.info["external"]["files_sha256"] == files_sha256(tmp_path / "gen")
    assert result["files_sha256"] == files_sha256(tmp_path / "gen")
    first = next(i for i, r in enumerate(image_set.records) if r.source == "cat/cat0.png")
    assert np.array_equal(image_set.load(first), picture(0))


def test_external_csv_reads_paths_relative_to_it(tmp_path) -> None:
    three_class_folder(tmp_path / "gen", per_class=2)
    with open(tmp_path / "gen" / "set.csv", "w", newline="") as fh:
        fh.write("path,label\n")
        for p in sorted((tmp_path / "gen").rglob("*.png")):
            fh.write(f"{p.relative_to(tmp_path / 'gen').as_posix()},{p.parent.name}\n")
    read_external_set(
        "c", str(tmp_path / "gen" / "set.csv"), ["cat", "dog", "eel"], 12, tmp_path / "s"
    )
    assert ImageSet(tmp_path / "s").counts() == {"cat": 2, "dog": 2, "eel": 2}


def test_external_set_with_other_labels_is_named(tmp_path) -> None:
    three_class_folder(tmp_path / "gen", per_class=2)
    with pytest.raises(
        IngestError,
        match=r"select.external_sets.mine: .* has labels \['cat', 'dog', 'eel'\], which differ from data.labels \['cat', 'dog'\]",
    ):
        read_external_set("mine", str(tmp_path / "gen"), ["cat", "dog"], 12, tmp_path / "set")
    assert not (tmp_path / "set").exists()


def test_dataset_json_of_every_set_is_valid_json_with_the_ingest_facts(tmp_path) -> None:
    chest_folder(tmp_path / "src")
    dirs = outs(tmp_path)
    ingest(chest_config(tmp_path / "src", patient_id_pattern=PATTERN), *dirs)
    for d in dirs:
        info = json.loads((d / "dataset.json").read_text())
        assert info["ingest"]["patients_known"] is True
        assert info["ingest"]["corrupt_files"] == []
