"""Fail before spending: a table of bad inputs, each rejected early with one line naming the cause.

Static mistakes (ranges, choices, relations between keys) stop at config load: exit 2 in well
under 5 s. Data-dependent ones stop in validate-run or ingest, before any select or fine-tune
task exists: exit 1, the last line naming the key or file, ``run.json`` saying failed, and no
report file in the output folder.
"""

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tgap.cli import main
from tgap.local_run import REPORT_FILES

MICRO = "pipelines/configs/micro.yaml"
# The data-dependent cases run the real DAG up to validate-run: no pretraining keeps them short.
FAST = ["diffusion.pretrain_steps=0"]


def _cli(argv: list[str], capsys) -> tuple[int, str, float]:
    started = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else "", seconds


def _run(overrides: list[str], output: Path, config: str = MICRO) -> list[str]:
    argv = ["run", "--config", config, "--output", str(output)]
    for assignment in overrides:
        argv += ["--set", assignment]
    return argv


def _assert_no_report(output: Path) -> None:
    for name in REPORT_FILES:
        assert not (output / name).exists(), name
    assert not list(output.glob("artifacts/**/report/results")), "a report artifact exists"


# --------------------------------------------------------------------------- static

STATIC = [
    # (overrides, what the last line must name)
    (["grid.methods=[nope]"], "grid.methods[0]: unknown method 'nope'"),
    (["grid.sizes=[0]"], "grid.sizes[0]: 0"),
    (["finetune.steps=-5"], "finetune.steps: -5"),
    (["finetune.steps=abc"], "finetune.steps: expected an integer"),
    (["finetune.stpes=3"], "finetune.stpes: unknown key"),
    (["generate.steps=0"], "generate.steps: 0"),
    (["generate.n_per_label=0"], "generate.n_per_label: 0"),
    (["finetune.active.threshold=2.0"], "finetune.active.threshold: 2.0"),
    (["evaluation.bootstrap_resamples=0"], "evaluation.bootstrap_resamples: 0"),
    (["classifier.arch=resnet9"], "classifier.arch: 'resnet9' is not one of"),
    (["data.source=/no/such/data"], "data.source: /no/such/data does not exist"),
    (["finetune"], "--set 'finetune': expected key=value"),
    # A resolution the tiny model cannot take (it generates at diffusion.sample_size).
    (["data.resolution=48"], "data.resolution: 48"),
    (["diffusion.sample_size=34", "data.resolution=34"], "diffusion.sample_size: 34"),
    (["data.split.test_fraction=0.5"], "data.split"),
    (["grid.methods=[curated]"], "select.curated_source"),
    (["grid.methods=[spectral-clip]"], "select.clip_weights"),
    (["grid.methods=[spectral-pixel]", "grid.sizes=[1]"], "grid.sizes: 1"),
    (["evaluation.supplementation_ratios=[0, 20]"], "evaluation.supplementation_ratios"),
    (["grid.sizes=[20, 20]"], "grid.sizes: [20, 20] repeats a value"),
    (["finetune.lr_scheduler=cosine_annealing"], "finetune.lr_scheduler: 'cosine_annealing'"),
    (["prompt.template=a chest X-ray"], "prompt.template"),
    (["classifier.val_fraction=1.0"], "classifier.val_fraction: 1.0"),
    (["data.labels=[Unhealthy]"], "data.labels"),
]


@pytest.mark.parametrize(("overrides", "named"), STATIC, ids=[" ".join(o) for o, _ in STATIC])
def test_static_mistakes_stop_at_load_with_one_line(overrides, named, tmp_path, capsys):
    output = tmp_path / "run"
    code, last, seconds = _cli(_run(overrides, output), capsys)
    assert code == 2, last
    assert last.startswith("tgap: error: ") and named in last, last
    assert seconds < 5
    assert not output.exists() or not any(output.iterdir())


@pytest.mark.parametrize(
    ("name", "text", "named"),
    [
        ("missing.yaml", None, "does not exist"),
        ("broken.yaml", "grid: [unclosed\n", "not valid YAML"),
        ("list.yaml", "- a\n- b\n", "expected a mapping at the top level"),
    ],
)
def test_bad_config_files_name_the_file(name, text, named, tmp_path, capsys):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    code, last, seconds = _cli(["run", "--config", str(path)], capsys)
    assert code == 2 and str(path) in last and named in last, last
    assert seconds < 5


@pytest.mark.parametrize("command", ["compile", "submit", "schedule"])
def test_every_command_validates_before_building_anything(command, tmp_path, capsys):
    argv = [command, "--config", MICRO, "--set", "generate.steps=0"]
    if command == "compile":
        argv += ["--output", str(tmp_path / "spec.yaml")]
    else:  # an unreachable host: validation must come first, so the host is never tried
        argv += ["--host", "http://127.0.0.1:9", "--experiment", "x"]
    code, last, seconds = _cli(argv, capsys)
    assert code == 2 and "generate.steps: 0" in last, last
    assert seconds < 5 and not (tmp_path / "spec.yaml").exists()


# --------------------------------------------------------------------------- data-dependent


def _write_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def corrupt_folder(tmp_path) -> Path:
    root = tmp_path / "folder-data"
    for i in range(12):
        _write_png(root / "No Finding" / f"{i}.png", i)
        _write_png(root / "Unhealthy" / f"{i}.png", 100 + i)
    (root / "Unhealthy" / "broken.jpeg").write_bytes(b"not an image at all")
    return root


@pytest.fixture
def tiny_curated(tmp_path) -> Path:
    root = tmp_path / "curated"
    _write_png(root / "one.png", 7)
    return root


def _data_dependent_cases(tmp_path: Path, corrupt_folder: Path, tiny_curated: Path):
    return {
        "size larger than the pool": (["grid.sizes=[500]"], "grid.sizes: 500", {}),
        "more generated than real-train has": (
            ["generate.n_per_label=1000"],
            "generate.n_per_label: 1000",
            {},
        ),
        "curated source too small": (
            ["grid.methods=[curated]", f"select.curated_source={tiny_curated}"],
            "select.curated_source",
            {},
        ),
        "unreachable S3 source": (
            ["data.source=s3://tgap-missing/pneumoniamnist"],
            "s3://tgap-missing/pneumoniamnist",
            {
                "TGAP_S3_ENDPOINT": "http://127.0.0.1:9",
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "y",
                "TGAP_STORAGE_RETRIES": "3",
                "TGAP_STORAGE_BACKOFF": "0.1",
            },
        ),
        "corrupt image": (
            [
                f"data.source={corrupt_folder}",
                "data.format=image-folder",
                # a folder without an official validation split: real-val is cut from it
                "data.split.val_fraction=0.1",
                "data.split.pool_fraction=0.4",
                "data.label_policy={No Finding: No Finding, Unhealthy: Unhealthy}",
                "data.max_images=null",
                "grid.sizes=[2]",
            ],
            "broken.jpeg",
            {},
        ),
    }


DATA_CASES = [
    "size larger than the pool",
    "more generated than real-train has",
    "curated source too small",
    "unreachable S3 source",
    "corrupt image",
]


@pytest.mark.parametrize("case", DATA_CASES)
def test_data_mistakes_stop_before_any_select_or_finetune(
    case, tmp_path, corrupt_folder, tiny_curated, capsys, monkeypatch
):
    overrides, named, env = _data_dependent_cases(tmp_path, corrupt_folder, tiny_curated)[case]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    output = tmp_path / "run"
    code, last, seconds = _cli(_run([*FAST, *overrides], output), capsys)
    assert code == 1, last
    assert last.startswith("tgap: error: ") and named in last, last
    ran = {p.name for p in (output / "artifacts").glob("*/**/") if p.is_dir()}
    assert not ran & {"select-tuning-set", "finetune", "generate"}, ran
    _assert_no_report(output)
    record = json.loads((output / "run.json").read_text())
    assert record["status"] == "failed" and named in record["message"]
    # The first task that reads the source: fingerprint lists it (an unreachable bucket fails
    # there), ingest reads it, validate-run checks it against the grid.
    assert record["task"] in ("fingerprint", "ingest", "validate-run") and record["time"]
    print(f"{case}: {seconds:.1f} s")


def test_a_failed_run_names_task_and_log_and_its_folder_takes_the_next_try(tmp_path, capsys):
    output = tmp_path / "run"
    code = main(_run([*FAST, "grid.sizes=[500]"], output))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert len(err) >= 3, err
    # Second-last line: which task failed and where its full log is; then its own message.
    assert "task validate-run failed; its full log: " in err[-3]
    log = Path(err[-3].split("its full log: ")[1])
    assert log.is_file() and "grid.sizes: 500" in log.read_text()
    assert err[-1].startswith("tgap: error: grid row retrieval/500/0: grid.sizes: 500")
    # The same folder, without deleting anything, takes the next try (here: still failing fast).
    assert main(_run([*FAST, "grid.sizes=[300]"], output)) == 1
    assert "grid.sizes: 300" in capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads((output / "run.json").read_text())["status"] == "failed"
