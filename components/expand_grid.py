"""expand-grid: the run's first task; validates every parameter and splits the grid into the
work items of each loop."""

from typing import NamedTuple


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
) -> NamedTuple(
    "Grid", [("rows", list), ("finetune", list), ("no_finetune", list), ("retrieval", list)]
):
    """The `{method, size, seed}` rows after the same validation a config file gets (a value
    edited in the run form that is wrong fails here, before any work), and each loop's items."""
    from collections import namedtuple

    from tgap.config import config_from_parameters
    from tgap.grid import loop_items

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
    rows = config.grid_rows()
    items = loop_items(rows, compiled_kinds)
    print(
        f"grid: {len(rows)} rows: "
        + ", ".join(f"{r['method']}/{r['size']}/{r['seed']}" for r in rows)
    )
    grid = namedtuple("Grid", ["rows", "finetune", "no_finetune", "retrieval"])
    return grid(rows, items["finetune"], items["no-finetune"], items["retrieval"])
