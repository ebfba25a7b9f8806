"""expand-grid: the run's first task; validates every parameter and expands the grid rows.

One `grid-items` task per compiled loop then picks that loop's work items (kfp.local can loop
over a task's single `Output`, not over a named output of a task with several)."""


def expand_grid(
    run_name: str,
    methods: list,
    sizes: list,
    seeds: list,
    compiled_kinds: list,
    data: dict,
    select: dict,
    diffusion: dict,
    prompt: dict,
    finetune: dict,
    generate: dict,
    classifier: dict,
    evaluation: dict,
    compiled_tuning: bool = False,
) -> list:
    """The `{method, size, seed}` rows after the same validation a config file gets (a value
    edited in the run form that is wrong fails here, before any work); so does a grid that needs
    a loop the compiled spec lacks, or leaves a compiled loop without items (the KFP backend
    cannot collect from an empty loop: `tgap.grid.loop_items`), or whose `generate.tune.trials`
    disagree with the spec's `compiled_tuning` (`tgap.tune.check_compiled_tuning`)."""
    from tgap.config import config_from_parameters
    from tgap.grid import config_rows, loop_items
    from tgap.tune import check_compiled_tuning

    config = config_from_parameters(
        {
            "run_name": run_name,
            "methods": methods,
            "sizes": sizes,
            "seeds": seeds,
            "data": data,
            "select": select,
            "diffusion": diffusion,
            "prompt": prompt,
            "finetune": finetune,
            "generate": generate,
            "classifier": classifier,
            "evaluation": evaluation,
        }
    )
    rows = config_rows(config)
    loop_items(rows, compiled_kinds)
    check_compiled_tuning(config.generate.tune.trials, compiled_tuning)
    print(f"grid: {len(rows)} rows: " + ", ".join(r.label for r in rows))
    return [r.to_item() for r in rows]


def grid_items(rows: list, kind: str) -> list:
    """The work items of one loop kind (`tgap.grid.KINDS`) among the expanded rows (never empty:
    expand-grid refuses a grid that leaves a compiled loop without items)."""
    from tgap.grid import parse_rows, split_rows

    items = split_rows(parse_rows(rows))[kind]
    print(f"{kind}: {len(items)} work items")
    return [item.to_item() for item in items]
