"""Run the whole pipeline on this machine through kfp.local (the embedded default's path)."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

from tgap import storage
from tgap.artifacts import write_json
from tgap.checkout import pipeline_module
from tgap.config import Config, ConfigError

log = logging.getLogger("tgap")

REPORT_FILES = ("results.csv", "results.json", "report.html", "summary.md", "metrics.json")


def resolve_local_paths(config: Config) -> Config:
    """Make local paths in the config absolute (kfp.local tasks may run from another folder).

    Fails early, naming the key, when a local path that a stage will read does not exist.
    URIs (s3://, gs://) and preset names (tiny-pixel) are left as they are.
    """

    def local(value: str, key: str, must_exist: bool) -> str:
        if not value or storage.is_remote(value):
            return value
        try:
            path = storage.local_path(value).expanduser()
        except storage.StorageError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if not path.exists():
            if must_exist:
                raise ConfigError(f"{key}: {value} does not exist (looked in {path.resolve()})")
            return value
        return str(path.resolve())

    data = dataclasses.replace(config.data, source=local(config.data.source, "data.source", True))
    diffusion = dataclasses.replace(
        config.diffusion,
        tokenizer=local(config.diffusion.tokenizer, "diffusion.tokenizer", False),
        base_model=local(config.diffusion.base_model, "diffusion.base_model", False),
    )
    select = dataclasses.replace(
        config.select,
        clip_weights=local(config.select.clip_weights, "select.clip_weights", True),
        curated_source=local(config.select.curated_source, "select.curated_source", True),
    )
    classifier = dataclasses.replace(
        config.classifier, weights=local(config.classifier.weights, "classifier.weights", True)
    )
    return dataclasses.replace(
        config, data=data, diffusion=diffusion, select=select, classifier=classifier
    )


def loop_task_env(parallelism: int) -> dict[str, str]:
    """Each concurrently running loop task's share of the cores, unless the user chose.

    Measured on the 2-core demo: two fine-tunes side by side with torch's default (a thread per
    core each) took 5.7 min each; with one thread each, 2.2 min each. The stages outside the
    loop run alone and keep every core.
    """
    if "OMP_NUM_THREADS" in os.environ or parallelism <= 1:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallelism))}


def find_report_folder(pipeline_root: Path) -> Path:
    """The report task's `results` artifact inside a kfp.local pipeline root."""
    found = sorted(
        pipeline_root.glob("**/report/results"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    if not found:
        raise RuntimeError(f"{pipeline_root}: the pipeline finished but wrote no report artifact")
    return found[0]


def run_local(
    config: Config, output_dir: str | Path, pipeline_file: str | Path | None = None
) -> Path:
    """Run the pipeline for ``config`` with kfp.local; copy the report files into ``output_dir``.

    Every stage runs as a subprocess of this Python (``SubprocessRunner(use_venv=False)``), the
    same component code a cluster runs in containers. Per-stage artifacts stay under
    ``output_dir/artifacts``. With ``pipeline_file``, the compiled spec is loaded and run instead
    of the Python DAG (what a cluster runs), with every parameter taken from ``config``.
    """
    import warnings

    from kfp import components, local

    dag = pipeline_module()
    config = resolve_local_paths(config)
    output_dir = Path(output_dir)
    for name in REPORT_FILES:
        if (output_dir / name).exists():
            raise FileExistsError(
                f"{output_dir} already holds a run ({name}); choose another --output or remove it"
            )
    pipeline_root = output_dir / "artifacts"
    pipeline_root.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "config.json", config.to_dict())

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root.resolve()),
        raise_on_error=True,
        # The cache lives inside this run's folder: within a run, the real-trained classifier
        # (same inputs in every branch of a seed) is trained once; across runs nothing is reused.
        enable_caching=True,
    )
    # Expected here, and said once instead: the tasks name the project's images, and resource
    # and accelerator requests only mean something on a cluster.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    log.info("kfp.local: running every task in this Python; images and GPU requests are ignored")
    if pipeline_file is None:
        pipeline = dag.build_pipeline(config, loop_task_env(config.cluster.parallelism))
    else:
        pipeline = components.load_component_from_file(str(pipeline_file))
    started = time.perf_counter()
    pipeline(**dag.pipeline_arguments(config))
    elapsed = time.perf_counter() - started

    report_dir = find_report_folder(pipeline_root)
    for name in REPORT_FILES:
        if (report_dir / name).exists():
            shutil.copyfile(report_dir / name, output_dir / name)
    write_json(
        output_dir / "run.json", {"seconds": round(elapsed, 1), "report_artifact": str(report_dir)}
    )
    log.info("pipeline finished in %.0f s; report in %s", elapsed, output_dir / "report.html")
    return output_dir
