"""The tgap pipeline: ingest -> select -> fine-tune -> generate -> two-way evaluation -> report.

One flat ``dsl.ParallelFor`` over the grid rows ``{method, size, seed}`` (kfp.local mis-binds
nested loops over pipeline parameters) and ``dsl.Collected`` into the report. Every config
section except ``cluster`` is a pipeline parameter (a dict), so the Kubeflow UI shows and compares
them; ``cluster`` decides images and resources at compile time.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.

from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components import build_components
from pipelines.cluster import component_images, configure_task
from tgap.config import Config

PARAMETER_HELP = {
    "run_name": "A name for this run, shown in the report.",
    "data": "Real data: source URI, format, resolution, label policy, patient-level split.",
    "grid": "The fan-out: a list of {method, size, seed} rows, one branch each.",
    "select": "Tuning-set selection: embedders, k clusters, curated source, CLIP weights URI.",
    "diffusion": "Base generator: Stable Diffusion URI or the tiny preset, precision, device.",
    "prompt": "Prompt template, prompt word per label, identifier token, class prompt.",
    "finetune": "DreamBooth: steps, batch, learning rate, prior preservation, LoRA, active selection.",
    "generate": "Sampling: images per label, scheduler, steps, guidance scale.",
    "classifier": "Two-way evaluation classifier: small-cnn or densenet121 (CheXNet), training.",
    "evaluation": "Bootstrap intervals, supplementation ratios, distribution-metric embedder.",
}
SECTIONS = (
    "data",
    "select",
    "diffusion",
    "prompt",
    "finetune",
    "generate",
    "classifier",
    "evaluation",
)


def _without_nulls(value: Any) -> Any:
    # KFP parameters cannot carry null; an absent key rebuilds to its dataclass default, which is
    # None for every optional field (a test checks that round trip).
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def pipeline_arguments(config: Config) -> dict[str, Any]:
    """Every pipeline parameter for ``config``, explicitly (what the UI's compare view shows)."""
    values = _without_nulls(config.to_dict())
    arguments: dict[str, Any] = {"run_name": config.name, "grid": config.grid_rows()}
    arguments.update({name: values[name] for name in SECTIONS})
    return arguments


def build_pipeline(config: Config, loop_task_env: dict[str, str] | None = None):
    """The @dsl.pipeline for ``config``: its values become the parameters' defaults.

    ``loop_task_env`` is set on every task inside the loop (local runs use it to give each of the
    concurrently running branches its share of the cores).
    """
    cpu_image, gpu_image = component_images(config.cluster)
    c = build_components(cpu_image, gpu_image)
    defaults = pipeline_arguments(config)
    cluster = config.cluster

    def configured(gpu: bool, env: dict[str, str]):
        def apply(task):
            for name, value in env.items():
                task.set_env_variable(name, value)
            configure_task(task, cluster, gpu=gpu)
            return task

        return apply

    # Only fine-tune and generate (inside the loop) ask for a GPU.
    env = loop_task_env or {}
    cpu = configured(False, {})
    loop_cpu, loop_gpu = configured(False, env), configured(True, env)

    def tgap(
        run_name: str = defaults["run_name"],
        data: dict = defaults["data"],
        grid: list = defaults["grid"],
        select: dict = defaults["select"],
        diffusion: dict = defaults["diffusion"],
        prompt: dict = defaults["prompt"],
        finetune: dict = defaults["finetune"],
        generate: dict = defaults["generate"],
        classifier: dict = defaults["classifier"],
        evaluation: dict = defaults["evaluation"],
    ):
        ingest = cpu(c.ingest(data=data).set_display_name("ingest"))
        pool = ingest.outputs["pool"]
        real_train = ingest.outputs["real_train"]
        real_test = ingest.outputs["real_test"]

        reference = cpu(
            c.train_classifier(
                train_set=real_train,
                classifier=classifier,
                seed=0,
                generate=generate,
                subsample="all",
            ).set_display_name("train-reference-classifier")
        )
        embed = cpu(
            c.embed(
                pool=pool, reference_classifier=reference.outputs["model"], select=select
            ).set_display_name("embed")
        )
        # Builds or downloads the base model: the GPU image, but no GPU request.
        base = cpu(
            c.prepare_base_model(diffusion=diffusion, prompt=prompt, pool=pool).set_display_name(
                "prepare-base-model"
            )
        )

        with dsl.ParallelFor(grid, parallelism=cluster.parallelism) as row:
            selected = loop_cpu(
                c.select_tuning_set(
                    pool=pool,
                    embeddings=embed.outputs["embeddings"],
                    reference_classifier=reference.outputs["model"],
                    row=row,
                    select=select,
                    generate=generate,
                ).set_display_name("select")
            )
            tuned = loop_gpu(
                c.finetune(
                    base_model=base.outputs["base_model"],
                    tuning_set=selected.outputs["tuning_set"],
                    reference_classifier=reference.outputs["model"],
                    row=row,
                    select=select,
                    diffusion=diffusion,
                    prompt=prompt,
                    finetune=finetune,
                ).set_display_name("fine-tune")
            )
            # Always in the DAG (kfp.local cannot dsl.If on loop items); with trials 0 it only
            # writes {"tuned": false}, so it asks for no GPU then.
            study = (loop_gpu if config.generate.tune.trials > 0 else loop_cpu)(
                c.tune_generation(
                    model=tuned.outputs["model"],
                    real_train=real_train,
                    row=row,
                    diffusion=diffusion,
                    prompt=prompt,
                    generate=generate,
                    classifier=classifier,
                ).set_display_name("tune-generation")
            )
            synthetic = loop_gpu(
                c.generate(
                    model=tuned.outputs["model"],
                    retrieved=selected.outputs["retrieved"],
                    tuning=study.outputs["tuning"],
                    row=row,
                    data=data,
                    diffusion=diffusion,
                    prompt=prompt,
                    generate=generate,
                ).set_display_name("generate")
            ).outputs["synthetic"]
            # The real-trained classifier depends on neither method nor size: identical inputs
            # in every branch, so KFP's cache trains it once per seed.
            real_clf = loop_cpu(
                c.train_classifier(
                    train_set=real_train,
                    classifier=classifier,
                    seed=row.seed,
                    generate=generate,
                    subsample="match-synthetic",
                ).set_display_name("train-real-classifier")
            )
            synth_clf = loop_cpu(
                c.train_classifier(
                    train_set=synthetic,
                    classifier=classifier,
                    seed=row.seed,
                    generate=generate,
                    subsample="all",
                ).set_display_name("train-synthetic-classifier")
            )
            s2r = loop_cpu(
                c.evaluate_classifier(
                    model=synth_clf.outputs["model"], test_set=real_test, evaluation=evaluation
                ).set_display_name("evaluate-S2R")
            )
            r2s = loop_cpu(
                c.evaluate_classifier(
                    model=real_clf.outputs["model"], test_set=synthetic, evaluation=evaluation
                ).set_display_name("evaluate-R2S")
            )
            r2r = loop_cpu(
                c.evaluate_classifier(
                    model=real_clf.outputs["model"], test_set=real_test, evaluation=evaluation
                ).set_display_name("evaluate-R2R")
            )
            cell = loop_cpu(
                c.compute_fter(
                    row=row,
                    s2r=s2r.outputs["result"],
                    r2s=r2s.outputs["result"],
                    r2r=r2r.outputs["result"],
                    synthetic=synthetic,
                    real_test=real_test,
                    real_train=real_train,
                    tuning_set=selected.outputs["tuning_set"],
                    model=tuned.outputs["model"],
                    reference_classifier=reference.outputs["model"],
                    select=select,
                    classifier=classifier,
                    generate=generate,
                    evaluation=evaluation,
                ).set_display_name("compute-FTER")
            )

        cpu(
            c.report(
                cells=dsl.Collected(cell.outputs["cell"]),
                pool=pool,
                embeddings=embed.outputs["embeddings"],
                base_model=base.outputs["base_model"],
                reference_classifier=reference.outputs["model"],
                run_name=run_name,
                data=data,
                grid=grid,
                select=select,
                diffusion=diffusion,
                prompt=prompt,
                finetune=finetune,
                generate=generate,
                classifier=classifier,
                evaluation=evaluation,
            ).set_display_name("report")
        )

    tgap.__doc__ = "tgap: can this synthetic dataset train a model?\n\nArgs:\n" + "".join(
        f"    {name}: {text}\n" for name, text in PARAMETER_HELP.items()
    )
    return dsl.pipeline(
        name="tgap", description=config.description or tgap.__doc__.splitlines()[0]
    )(tgap)


def compile_pipeline(config: Config, output_path: str | Path) -> Path:
    """Compile the pipeline for ``config`` into a KFP pipeline spec YAML at ``output_path``."""
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(config), str(output_path))
    return output_path
