"""Fixtures shared by the test modules. Helpers that are not fixtures live in helper modules
(tiny.py, made_up.py, browser.py, servers.py), so no test module imports another."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from kfp import dsl

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def artifact() -> Callable[[type[dsl.Artifact], str | Path], dsl.Artifact]:
    """``artifact(dsl.Dataset, folder)``: a KFP artifact over ``folder``, the way the executor
    hands one to a component (for an output: its parent exists, the path itself not yet)."""

    def make(kind: type[dsl.Artifact], path: str | Path) -> dsl.Artifact:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return kind(name=path.name, uri=str(path))

    return make


@pytest.fixture(scope="session")
def pneumoniamnist() -> Path:
    """The real PneumoniaMNIST .npz of ../shared/data (the data every real-data test uses)."""
    path = SHARED_DATA / "pneumoniamnist" / "pneumoniamnist.npz"
    assert path.is_file(), f"{path}: the shared data folder is missing"
    return path
