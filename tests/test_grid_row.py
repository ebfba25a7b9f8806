"""The typed grid row: parsed once from the dict a pipeline task is handed, and back."""

import pytest

from tgap.grid import GridRow, GridRowError, SeedItem, split_rows, work_item
from tgap.methods import KINDS, method_names, parse_method


def test_a_row_round_trips_through_its_item():
    item = {"method": "spectral-pixel", "size": 20, "seed": 3}
    row = GridRow.from_item(item)
    assert (row.method, row.size, row.seed) == (parse_method("spectral-pixel"), 20, 3)
    assert row.to_item() == item and list(row.to_item()) == ["method", "size", "seed"]
    assert GridRow.from_item(row.to_item()) == row
    assert row.label == "spectral-pixel/20/3"


def test_a_per_seed_item_round_trips_and_stands_for_one_row_per_size(tmp_path):
    item = {"method": "no-finetune", "seed": 1, "sizes": [5, 10]}
    seed_item = work_item(item)
    assert isinstance(seed_item, SeedItem) and seed_item.to_item() == item
    assert [r.to_item() for r in seed_item.rows] == [
        {"method": "no-finetune", "size": 5, "seed": 1},
        {"method": "no-finetune", "size": 10, "seed": 1},
    ]
    assert seed_item.cell_folders(tmp_path) == [
        (seed_item.rows[0], tmp_path / "size-5"),
        (seed_item.rows[1], tmp_path / "size-10"),
    ]
    assert seed_item.label == "no-finetune/5,10/1"
    # split_rows gathers the sizes of a seed back into the same item.
    assert split_rows(seed_item.rows)["no-finetune"] == [seed_item]


@pytest.mark.parametrize(
    "size, seed", [(7, 2), (7.0, 2.0), ("7", "2"), (" 7", "2 ")], ids=["int", "float", "str", "pad"]
)
def test_integers_arrive_as_kfp_may_hand_them(size, seed):
    # KFP passes JSON numbers (integral floats through protobuf Struct) or run-form strings.
    row = GridRow.from_item({"method": "random", "size": size, "seed": seed})
    assert (row.size, row.seed) == (7, 2)
    assert type(row.size) is int and type(row.seed) is int
    assert work_item({"method": "no-finetune", "seed": seed, "sizes": [size]}).sizes == (7,)


@pytest.mark.parametrize(
    "item, key",
    [
        ({"size": 5, "seed": 0}, "'method'"),
        ({"method": "random", "seed": 0}, "'size'"),
        ({"method": "random", "size": 5}, "'seed'"),
        ({"method": "sideways", "size": 5, "seed": 0}, "'method'"),
        ({"method": 3, "size": 5, "seed": 0}, "'method'"),
        ({"method": "random", "size": "five", "seed": 0}, "'size'"),
        ({"method": "random", "size": 5.5, "seed": 0}, "'size'"),
        ({"method": "random", "size": 0, "seed": 0}, "'size'"),
        ({"method": "random", "size": True, "seed": 0}, "'size'"),
        ({"method": "random", "size": 5, "seed": -1}, "'seed'"),
        ({"method": "random", "size": 5, "seed": None}, "'seed'"),
        ({"method": "no-finetune", "seed": 0, "sizes": []}, "'sizes'"),
        ({"method": "no-finetune", "seed": 0, "sizes": "5"}, "'sizes'"),
        ({"method": "no-finetune", "seed": 0, "sizes": [5, "x"]}, "'sizes'"),
        ({"method": "no-finetune", "seed": 0, "sizes": [5, None]}, "'sizes'.*got None"),
    ],
)
def test_a_bad_item_is_refused_naming_its_key(item, key):
    with pytest.raises(GridRowError, match=key) as refused:
        work_item(item)
    assert str(item) in str(refused.value)  # and the item it came in


def test_a_non_mapping_item_is_refused():
    with pytest.raises(GridRowError, match="expected a mapping"):
        GridRow.from_item(["random", 5, 0])


@pytest.mark.parametrize(
    "method, kind, fine_tunes, external",
    [
        ("random", "finetune", True, None),
        ("spectral-clip", "finetune", True, None),
        ("curated", "finetune", True, None),
        ("active", "finetune", True, None),
        ("no-finetune", "no-finetune", False, None),
        ("retrieval", "retrieval", False, None),
        ("external:sdxl", "retrieval", False, "sdxl"),  # generates nothing: retrieval's loop
    ],
)
def test_the_row_kind_comes_from_the_parsed_method(method, kind, fine_tunes, external):
    row = GridRow.from_item({"method": method, "size": 5, "seed": 0})
    assert row.kind == row.method.kind == kind
    assert row.method.fine_tunes is fine_tunes
    assert row.method.external_name == external


def test_every_method_has_one_of_the_kinds():
    names = [m.replace("<name>", "x") for m in method_names()]
    assert {parse_method(m).kind for m in names} == set(KINDS)


def test_the_default_embedder_reaches_the_parsed_method():
    item = {"method": "active", "size": 5, "seed": 0}
    assert GridRow.from_item(item).method.embedder == "classifier"
    assert GridRow.from_item(item, "pixel").method.embedder == "pixel"
    with pytest.raises(GridRowError, match="'method'.*embedder 'nope'"):
        GridRow.from_item(item, "nope")
