"""Relations between keys of one section: the data split and layout, and the tune-generation
search space. ``tgap.config.run.validate`` calls them."""

from __future__ import annotations

from tgap.config.errors import ConfigError
from tgap.config.schema import DataConfig, GenerateConfig

SPLIT_KEYS = ("test", "pool_and_train", "pool", "train", "val")


def has_official_val(data: DataConfig) -> bool:
    """Whether the source fixes real-val itself (MedMNIST's ``val_*`` arrays, a ``val`` split
    folder or split value)."""
    return (
        data.format == "medmnist-npz"
        or (data.format == "image-folder" and "val" in data.split_folders)
        or (data.format == "csv" and "val" in data.csv_format.split_values)
    )


def _validate_split(data: DataConfig) -> None:
    """The four fractions sum to 1; real-val has images to come from."""
    split = data.split
    fractions = split.fractions()
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(
            "data.split: pool_fraction, train_fraction, val_fraction and test_fraction must sum "
            "to 1 (got {})".format(" + ".join(f"{f:g}" for f in fractions))
        )
    if split.val_fraction == 0 and not has_official_val(data):
        raise ConfigError(
            f"data.split.val_fraction: 0 but data.format {data.format} has no official validation "
            "split here (expected > 0: real-val is where tuning and sweeps choose, never real-test)"
        )


def _validate_split_map(mapping: dict[str, str], key: str) -> None:
    """``{test, pool_and_train}`` or ``{test, pool, train, val}`` (``val`` optional with
    ``pool_and_train``): run split -> folder/value."""
    if not mapping:
        return
    unknown = sorted(set(mapping) - set(SPLIT_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown split(s) {unknown} (known: {', '.join(SPLIT_KEYS)})")
    keys = set(mapping) - {"val"}
    if keys not in ({"test", "pool_and_train"}, {"test", "pool", "train"}):
        raise ConfigError(
            f"{key}: {sorted(mapping)} must be test + pool_and_train (+ val), or test + pool + "
            "train + val"
        )
    if keys == {"test", "pool", "train"} and "val" not in mapping:
        raise ConfigError(
            f"{key}: test + pool + train fix every image, so real-val has none to be cut from "
            "(expected a val entry too)"
        )
    if any(not str(v).strip() for v in mapping.values()):
        raise ConfigError(f"{key}: empty folder/value in {mapping}")


def _validate_data_layout(data: DataConfig) -> None:
    """Relations between the data keys of patient IDs, official splits and the csv format."""
    import re

    if data.patient_id_pattern:
        try:
            groups = re.compile(data.patient_id_pattern).groups
        except re.error as exc:
            raise ConfigError(
                f"data.patient_id_pattern: {data.patient_id_pattern!r} is not a valid regex ({exc})"
            ) from None
        if groups != 1:
            raise ConfigError(
                f"data.patient_id_pattern: {data.patient_id_pattern!r} has {groups} groups; "
                r"expected exactly one, around the patient ID, e.g. person(\d+)_"
            )
    if data.patient_id_pattern and data.format in ("nih-csv", "medmnist-npz"):
        raise ConfigError(
            f"data.patient_id_pattern: not used by format {data.format} "
            "(nih-csv has Patient ID; medmnist-npz has no paths)"
        )
    _validate_split_map(data.split_folders, "data.split_folders")
    if data.split_folders and data.format != "image-folder":
        raise ConfigError(
            f"data.split_folders: only for format image-folder (got {data.format}; "
            "csv uses data.csv_format.split_column)"
        )
    if data.format != "csv":
        return
    fmt = data.csv_format
    _validate_split_map(fmt.split_values, "data.csv_format.split_values")
    if bool(fmt.label_column) == bool(fmt.label_columns):
        raise ConfigError(
            "data.csv_format: set exactly one of label_column (one column holding the label) "
            "and label_columns (one-hot finding columns)"
        )
    if bool(fmt.split_column) != bool(fmt.split_values):
        raise ConfigError(
            "data.csv_format: split_column and split_values go together (the column, and which "
            "of its values is test / pool_and_train)"
        )
    if fmt.patient_column and data.patient_id_pattern:
        raise ConfigError(
            "data.csv_format.patient_column and data.patient_id_pattern: set one, not both"
        )


def check_tune(generate: GenerateConfig) -> None:
    """Relations of ``generate.tune``: a searchable space, ordered ranges, a small enough set."""
    tune, space = generate.tune, generate.tune.space
    where = "generate.tune"
    for key in ("guidance_scale", "steps"):
        bounds = getattr(space, key)
        if len(bounds) not in (0, 2):
            raise ConfigError(
                f"{where}.space.{key}: {bounds!r}: expected [low, high], or [] to keep "
                f"generate.{key}"
            )
        if bounds and bounds[0] > bounds[1]:
            raise ConfigError(f"{where}.space.{key}: low {bounds[0]} > high {bounds[1]}")
    if space.guidance_log and space.guidance_scale and space.guidance_scale[0] <= 0:
        raise ConfigError(
            f"{where}.space.guidance_log: a log scale needs guidance_scale low > 0, "
            f"got {space.guidance_scale[0]}"
        )
    if len(set(space.schedulers)) != len(space.schedulers):
        raise ConfigError(f"{where}.space.schedulers: {space.schedulers} has duplicates")
    if tune.trials == 0:
        return
    searched = [
        f"{key} {bounds}"
        for key, bounds in (("guidance_scale", space.guidance_scale), ("steps", space.steps))
        if bounds and bounds[0] < bounds[1]
    ]
    if len(space.schedulers) > 1:
        searched.append(f"schedulers {space.schedulers}")
    if not searched:
        raise ConfigError(
            f"{where}.space: empty search space with trials={tune.trials} (every range is [] or "
            "a single value and at most one scheduler); give a [low, high] range or set trials: 0"
        )
    if tune.n_per_label > generate.n_per_label:
        raise ConfigError(
            f"{where}.n_per_label: {tune.n_per_label} is larger than generate.n_per_label "
            f"{generate.n_per_label} (a trial generates a small set; at most the final one)"
        )
