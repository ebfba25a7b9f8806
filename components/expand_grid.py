"""expand-grid: the run's first task; validates every parameter and expands the grid rows."""


def expand_grid(
    run_name: str,
    methods: list,
    sizes: list,
    seeds: list,
    data: dict,
    select: dict,
    diffusion: dict,
    prompt: dict,
    finetune: dict,
    generate: dict,
    classifier: dict,
    evaluation: dict,
) -> list:
    """The `{method, size, seed}` rows the fan-out runs, after the same validation a config file
    gets: a value edited in the run form that is wrong fails here, before any work."""
    from tgap.config import config_from_parameters
    from tgap.config import expand_grid as run_expand

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
    rows = run_expand(config.grid.methods, config.grid.sizes, config.grid.seeds, config)
    print(
        f"grid: {len(rows)} rows: "
        + ", ".join(f"{r['method']}/{r['size']}/{r['seed']}" for r in rows)
    )
    return rows
