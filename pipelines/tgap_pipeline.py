"""The tgap pipeline: ingest -> select -> fine-tune -> generate -> two-way evaluation -> report.

The grid is three run parameters, ``methods``, ``sizes`` and ``seeds`` (what a person edits in
the run form). The first task, ``expand-grid``, validates them like a config file and splits the
rows by the work they need (``tgap.grid.split_rows``) into sibling flat ``dsl.ParallelFor``
loops, one per kind present in the compiled config (kfp.local mis-binds nested loops; neither
kfp.local nor the KFP backend can collect from an empty loop, so ``expand-grid`` refuses a grid
that would leave one empty), each ``dsl.Collected`` into the report:

- ``finetune``: select -> fine-tune -> generate -> classifiers -> evaluations -> cell;
- ``no-finetune``: one item per seed: the base model generates once for all sizes;
- ``retrieval`` (and ``external:<name>``): a real or external set stands in for the synthetic
  one; no GPU stage.

``validate-run`` checks every row against the ingested data and the base model before any loop
starts.

Work shared across rows runs once, outside the loops: ingest, the reference classifier, embed,
the base model, and the prior-preservation class images of every seed. The ``fingerprint`` task
(never cached) hashes every source, and its outputs are inputs of the stages that read them.

Every config section except ``cluster`` is a pipeline parameter (a dict), so the Kubeflow UI
shows and compares them; ``cluster`` decides images, placement and resources at compile time.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import compiler, dsl

from components import build_components
from pipelines.cluster import component_images, configure_task, on_gpu
from tgap.config import Config, check_placement
from tgap.grid import config_rows, split_rows
from tgap.parameters import GRID_PARAMETERS, PARAMETER_HELP, SECTIONS, pipeline_arguments

# Loop kind (tgap.grid.KINDS) -> the suffix of its report inputs (cells_*, rows_*).
KIND_OUTPUTS = {"finetune": "finetune", "no-finetune": "no_finetune", "retrieval": "retrieval"}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment that fixes torch's intra-op thread count (0 = leave it to torch).

    Fixed per task in config, not derived from ``cluster.parallelism``: float reductions depend
    on the thread count, so a share of the cores gave other numbers for the same seed when more
    or fewer branches ran at once (micro, active R->S AUROC: 0.5547 at parallelism 1, 0.5586 at
    2). Measured on the 2-core demo: two fine-tunes side by side with a thread per core each
    took 5.7 min each, with one thread each 2.2 min each.
    """
    return {name: str(threads) for name in THREAD_VARS} if threads > 0 else {}


def build_pipeline(
    config: Config,
    loop_task_env: dict[str, str] | None = None,
    allow_floating_tag: bool = False,
):
    """The @dsl.pipeline for ``config``: its values become the parameters' defaults.

    Every task's thread count is fixed by ``cluster.threads_per_task`` (inside the loop) and
    ``cluster.threads_per_stage`` (outside it); ``loop_task_env`` replaces the loop tasks' one.
    ``allow_floating_tag``: accept a configured image tag that names no content
    (``pipelines.images``).
    """
    cluster = config.cluster
    cpu_image, gpu_image = component_images(cluster, allow_floating_tag)
    layout = _Layout(
        components=build_components(cpu_image, gpu_image, cluster.gpu_stages),
        cluster=cluster,
        # One loop per kind of work the compiled config's grid has; expand-grid refuses a run
        # whose rows need a loop this spec lacks or leave one of its loops empty (the backend
        # cannot collect from a loop that ran no iteration).
        compiled_kinds=[kind for kind in KIND_OUTPUTS if split_rows(config_rows(config))[kind]],
        # A tune-generation task only in a spec compiled with trials: with none it would still
        # download its fine-tuned model, the base model and real-val (KFP's launcher fetches
        # every input) to write {"tuned": false}. expand-grid refuses a run whose trials
        # disagree.
        tuned=config.generate.tune.trials > 0,
        # Every task's thread count is fixed in config, never derived from the parallelism.
        loop_env=thread_env(cluster.threads_per_task) if loop_task_env is None else loop_task_env,
        stage_env=thread_env(cluster.threads_per_stage),
    )
    defaults = pipeline_arguments(config)

    def tgap(*args, **kwargs):
        # KFP passes the parameters positionally, in the signature's order (set below).
        _Dag(layout, {**dict(zip(defaults, args, strict=False)), **kwargs}).build()

    _sign_pipeline(tgap, defaults)
    return dsl.pipeline(
        name="tgap", description=config.description or tgap.__doc__.splitlines()[0]
    )(tgap)


def _sign_pipeline(tgap, defaults: dict) -> None:
    """Give ``tgap`` the run parameters as its signature (KFP reads their defaults and types)
    and their help as its docstring (the UI shows it)."""
    annotations = {name: (list if name in GRID_PARAMETERS else dict) for name in defaults}
    annotations["run_name"] = str
    tgap.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=value,
                annotation=annotations[name],
            )
            for name, value in defaults.items()
        ]
    )
    tgap.__annotations__ = annotations
    tgap.__doc__ = "tgap: can this synthetic dataset train a model?\n\nArgs:\n" + "".join(
        f"    {name}: {PARAMETER_HELP[name]}\n" for name in defaults
    )


@dataclass(frozen=True)
class _Layout:
    """What compile time fixes: the components, placement, the loops and the thread counts."""

    components: Any
    cluster: Any
    compiled_kinds: list[str]
    tuned: bool
    loop_env: dict[str, str]
    stage_env: dict[str, str]


class _Dag:
    """The tasks of one pipeline body, created in a fixed order (KFP names repeated
    components by the order they are created in, so the order is part of the spec)."""

    def __init__(self, layout: _Layout, p: dict):
        self.layout, self.c, self.p = layout, layout.components, p
        self.sections = {name: p[name] for name in SECTIONS}

    def place(self, stage: str, task, in_loop: bool = False):
        """Put ``task`` where ``cluster.gpu_stages`` says ``stage`` runs."""
        layout = self.layout
        for name, value in (layout.loop_env if in_loop else layout.stage_env).items():
            task.set_env_variable(name, value)
        configure_task(task, layout.cluster, gpu=on_gpu(stage, layout.cluster))
        return task

    def build(self) -> None:
        self.grid()
        self.shared_inputs()
        self.run_wide_checks()
        cells = {}
        for kind in self.layout.compiled_kinds:
            items = self.items[kind].output
            with dsl.ParallelFor(items, parallelism=self.layout.cluster.parallelism) as item:
                cells[kind] = self.branch(item, kind)
        self.report(cells)

    def grid(self) -> None:
        """First: the same validation a config file gets, on the values this run was started
        with (a method typed in the UI's run form), then the work items of each loop."""
        c, p, place = self.c, self.p, self.place
        self.expanded = place("expand-grid", c.expand_grid(
            run_name=p["run_name"], methods=p["methods"], sizes=p["sizes"], seeds=p["seeds"],
            compiled_kinds=self.layout.compiled_kinds, compiled_tuning=self.layout.tuned,
            **self.sections,
        ).set_display_name("expand-grid"))  # fmt: skip
        # Each compiled loop's work items (split by the work they need, tgap.grid.split_rows).
        self.items = {
            kind: place("grid-items", c.grid_items(rows=self.expanded.output, kind=kind)
                        .set_display_name(f"grid-items-{kind}"))
            for kind in self.layout.compiled_kinds
        }  # fmt: skip

    def shared_inputs(self) -> None:
        """The work every row shares: fingerprint, ingest, reference classifier, embed, base."""
        c, p, place, expanded = self.c, self.p, self.place, self.expanded
        # Never cached: a rerun with the same parameters still sees a changed bucket or model.
        self.prints = place("fingerprint", c.fingerprint(
            data=p["data"], select=p["select"], diffusion=p["diffusion"],
            classifier=p["classifier"],
        ).set_display_name("fingerprint").after(expanded)).set_caching_options(False)  # fmt: skip
        ingest = place("ingest", c.ingest(
            data=p["data"], generate=p["generate"], fingerprint=self.prints.outputs["data"]
        ).set_display_name("ingest").after(expanded))  # fmt: skip
        self.pool = ingest.outputs["pool"]
        self.real_train = ingest.outputs["real_train"]
        # real-val: every choice (tune-generation's objective). real-test: sealed, read only by
        # the tasks that report on it (tests/test_pipeline.py asserts which).
        self.real_val = ingest.outputs["real_val"]
        self.real_test = ingest.outputs["real_test"]
        self.clip = self.prints.outputs["clip_weights"]
        self.reference = self.train(
            "train-reference-classifier", self.real_train, 0, "all", in_loop=False
        )
        self.reference_model = self.reference.outputs["model"]
        self.embed = place("embed", c.embed(
            pool=self.pool, reference_classifier=self.reference_model, select=p["select"],
            clip_fingerprint=self.clip,
        ).set_display_name("embed"))  # fmt: skip
        base = place("prepare-base-model", c.prepare_base_model(
            diffusion=p["diffusion"], prompt=p["prompt"], pool=self.pool,
            fingerprint=self.prints.outputs["base_model"],
        ).set_display_name("prepare-base-model"))  # fmt: skip
        self.base_model = base.outputs["base_model"]

    def run_wide_checks(self) -> None:
        """validate-run, then what runs once per run after it: the real learning curves and
        the class images."""
        c, p, place = self.c, self.p, self.place
        # The data-dependent checks of every row; no select, fine-tune or generate task starts
        # when one fails.
        validated = place("validate-run", c.validate_run(
            rows=self.expanded.output, pool=self.pool, real_train=self.real_train,
            base_model=self.base_model, data=p["data"], select=p["select"],
            generate=p["generate"], evaluation=p["evaluation"],
        ).set_display_name("validate-run"))  # fmt: skip
        self.reference.after(validated)
        self.embed.after(validated)
        # The real learning curve of every seed, once per run: it depends on real-train, the
        # seeds and the classifier alone, so every method's cells share it through the DAG.
        self.real_curves = place("learning-curve", c.learning_curve(
            train_set=self.real_train, real_test=self.real_test, classifier=p["classifier"],
            evaluation=p["evaluation"], which="real", seeds=p["seeds"],
        ).set_display_name("real-curves").after(validated))  # fmt: skip
        if "finetune" in self.layout.compiled_kinds:
            # Prior-preservation images of every seed, once, shared by all its fine-tunes.
            self.class_images = place("class-images", c.class_images(
                base_model=self.base_model, rows=self.items["finetune"].output,
                diffusion=p["diffusion"], prompt=p["prompt"], finetune=p["finetune"],
            ).set_display_name("class-images").after(validated))  # fmt: skip

    def train(self, stage_name: str, train_set, seed, subsample: str, in_loop: bool = True):
        return self.place("train-classifier", self.c.train_classifier(
            train_set=train_set, classifier=self.p["classifier"], seed=seed,
            generate=self.p["generate"], subsample=subsample,
            weights_fingerprint=self.prints.outputs["classifier_weights"],
        ).set_display_name(stage_name), in_loop)  # fmt: skip

    def evaluate(self, stage_name: str, model, test_set):
        return self.place("evaluate-classifier", self.c.evaluate_classifier(
            model=model, test_set=test_set, evaluation=self.p["evaluation"]
        ).set_display_name(stage_name), True)  # fmt: skip

    def branch(self, item, kind: str):
        """One work item's tasks, from its tuning set to its cell(s)."""
        selected = self.place("select", self.c.select_tuning_set(
            pool=self.pool, embeddings=self.embed.outputs["embeddings"],
            reference_classifier=self.reference_model, item=item, select=self.p["select"],
            generate=self.p["generate"], curated_fingerprint=self.prints.outputs["curated"],
        ).set_display_name("select"), True)  # fmt: skip
        synthetic = self.synthetic_set(item, kind, selected)
        return self.evaluation(item, selected, synthetic)

    def synthetic_set(self, item, kind: str, selected):
        """The set a work item evaluates: generated by the fine-tuned (and tuned) or the base
        model, or retrieved by select."""
        c, p, place = self.c, self.p, self.place
        model = self.base_model
        if kind == "finetune":
            model = place("fine-tune", c.finetune(
                base_model=self.base_model, tuning_set=selected.outputs["tuning_set"],
                reference_classifier=self.reference_model,
                class_images=self.class_images.outputs["images"], row=item, select=p["select"],
                diffusion=p["diffusion"], prompt=p["prompt"], finetune=p["finetune"],
                clip_fingerprint=self.clip,
            ).set_display_name("fine-tune"), True).outputs["model"]  # fmt: skip
        tuning = {}
        if kind == "finetune" and self.layout.tuned:
            study = place("tune-generation", c.tune_generation(
                model=model, real_val=self.real_val, row=item, diffusion=p["diffusion"],
                prompt=p["prompt"], generate=p["generate"], classifier=p["classifier"],
            ).set_display_name("tune-generation"), True)  # fmt: skip
            tuning = {"tuning": study.outputs["tuning"]}
        if kind == "retrieval":
            return selected.outputs["retrieved"]
        return place("generate", c.generate(
            model=model, item=item, data=p["data"], diffusion=p["diffusion"], prompt=p["prompt"],
            generate=p["generate"], **tuning,
        ).set_display_name("generate"), True).outputs["synthetic"]  # fmt: skip

    def evaluation(self, item, selected, synthetic):
        """The two-way evaluation of ``synthetic``, its curves, and the cell(s) they make."""
        c, p, place, real_test = self.c, self.p, self.place, self.real_test
        # The real-trained classifier depends on the seed alone: identical inputs in every
        # branch of a seed, so KFP's cache trains it once per seed.
        real_clf = self.train("train-real-classifier", self.real_train, item.seed,
                              "match-synthetic")  # fmt: skip
        synth_clf = self.train("train-synthetic-classifier", synthetic, item.seed, "all")
        real_model, synth_model = real_clf.outputs["model"], synth_clf.outputs["model"]
        s2r = self.evaluate("evaluate-S2R", synth_model, real_test)
        r2s = self.evaluate("evaluate-R2S", real_model, synthetic)
        r2r = self.evaluate("evaluate-R2R", real_model, real_test)
        # S→R on nested fractions of this generated set (the full set is the S→R above).
        syn_curve = place("learning-curve", c.learning_curve(
            train_set=synthetic, real_test=real_test, classifier=p["classifier"],
            evaluation=p["evaluation"], which="synthetic", item=item,
        ).set_display_name("synthetic-curve"), True)  # fmt: skip
        curve = place("supplementation", c.supplementation(
            item=item, real_train=self.real_train, synthetic=synthetic, real_test=real_test,
            classifier=p["classifier"], generate=p["generate"], evaluation=p["evaluation"],
        ).set_display_name("supplementation"), True)  # fmt: skip
        return place("compute-fter", c.compute_fter(
            item=item, s2r=s2r.outputs["result"], r2s=r2s.outputs["result"],
            r2r=r2r.outputs["result"], supplementation=curve.outputs["curve"],
            real_curves=self.real_curves.outputs["curve"],
            synthetic_curve=syn_curve.outputs["curve"],
            synthetic=synthetic, real_test=real_test,
            tuning_set=selected.outputs["tuning_set"],
            reference_classifier=self.reference_model, select=p["select"],
            evaluation=p["evaluation"], clip_fingerprint=self.clip,
        ).set_display_name("compute-FTER"), True)  # fmt: skip

    def report(self, cells: dict) -> None:
        """The report, from every loop's collected cells and work items."""
        items = self.items
        self.place("report", self.c.report(
            pool=self.pool, embeddings=self.embed.outputs["embeddings"],
            base_model=self.base_model, reference_classifier=self.reference_model,
            run_name=self.p["run_name"], fingerprints=self.prints.outputs["all"],
            **{f"cells_{kind.replace('-', '_')}": dsl.Collected(cell.outputs["cell"])
               for kind, cell in cells.items()},
            **{f"rows_{KIND_OUTPUTS[kind]}": items[kind].output
               for kind in self.layout.compiled_kinds},
            **self.sections,
        ).set_display_name("report"))  # fmt: skip


def compile_pipeline(
    config: Config, output_path: str | Path, allow_floating_tag: bool = False
) -> Path:
    """Compile the pipeline for ``config`` into a KFP pipeline spec YAML at ``output_path``;
    a floating image tag is an error unless ``allow_floating_tag`` (``pipelines.images``)."""
    check_placement(config)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(config, allow_floating_tag=allow_floating_tag)
    compiler.Compiler().compile(pipeline, str(output_path))
    return output_path
