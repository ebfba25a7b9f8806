"""One helper for the scripts that write a marked block of the README (results, stage times)."""

from __future__ import annotations

import argparse
from pathlib import Path


def replace_block(text: str, block: str, begin: str, end: str, where: str = "README") -> str:
    """``text`` with what lies between the ``begin`` and ``end`` markers replaced by ``block``."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"{where}: needs exactly one {begin} and one {end}")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def write_block(parser: argparse.ArgumentParser, readme: Path, block: str, begin: str, end: str,
                source: object) -> None:  # fmt: skip
    """Rewrite ``readme``'s block, or exit through ``parser`` naming what is wrong."""
    try:
        text = replace_block(readme.read_text(), block, begin, end, str(readme))
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    readme.write_text(text)
    print(f"{readme}: block {begin} rewritten from {source}")
