"""List the functions of tgap/, components/ and pipelines/ longer than a limit (80 lines).

    python scripts/long-functions.py [ROOT] [--limit 80]

Length counts every line from ``def`` to the function's last line (signature and docstring
included), as read by ``ast``. Used for docs/results.md's "Functions over 80 lines".
"""

import argparse
import ast
from pathlib import Path

PACKAGES = ("tgap/**/*.py", "components/*.py", "pipelines/*.py")


def long_functions(root: Path, limit: int) -> list[tuple[int, str]]:
    found = []
    for pattern in PACKAGES:
        for path in sorted(root.glob(pattern)):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > limit:
                        found.append((length, f"{path.relative_to(root)}:{node.name}"))
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=".", type=Path)
    parser.add_argument("--limit", type=int, default=80)
    args = parser.parse_args()
    found = long_functions(args.root, args.limit)
    for length, name in found:
        print(length, name)
    print(f"count={len(found)}")


if __name__ == "__main__":
    main()
