"""The grid split by the work its rows need (tgap.grid)."""

from tgap.config import load_config
from tgap.grid import cell_folders, class_image_seeds, item_rows, split_rows


def test_thesis_rows_split_into_per_row_per_seed_and_retrieval_work():
    rows = load_config("pipelines/configs/thesis.yaml").grid_rows()
    kinds = split_rows(rows)
    assert [len(kinds[k]) for k in ("finetune", "no-finetune", "retrieval")] == [75, 5, 15]
    assert {r["method"] for r in kinds["finetune"]} == {
        "random", "spectral-pixel", "spectral-clip", "curated", "active"
    }  # fmt: skip
    # no-finetune: one item per seed, holding every size; together they are the original rows.
    assert kinds["no-finetune"][0] == {
        "method": "no-finetune",
        "seed": 0,
        "sizes": [500, 1000, 10000],
    }
    expanded = [r for kind in kinds.values() for item in kind for r in item_rows(item)]
    assert sorted(map(str, expanded)) == sorted(map(str, rows))
    assert class_image_seeds(rows) == [0, 1, 2, 3, 4]


def test_a_grid_without_fine_tunes_needs_no_class_images(tmp_path):
    rows = [{"method": m, "size": 5, "seed": 3} for m in ("no-finetune", "retrieval")]
    assert class_image_seeds(rows) == []
    [item] = split_rows(rows)["no-finetune"]
    assert cell_folders(item, tmp_path) == [({"method": "no-finetune", "size": 5, "seed": 3},
                                             tmp_path / "size-5")]  # fmt: skip
    [row] = split_rows(rows)["retrieval"]
    assert cell_folders(row, tmp_path) == [(row, tmp_path)]
