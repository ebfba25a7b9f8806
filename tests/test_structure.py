"""The project's shape, read from source: imports run one way, and the README's map is true.

The import graph is built with ``ast`` from every module of ``tgap/``, ``components/`` and
``pipelines/``, imports inside functions included (a late import hides a cycle from Python,
not from this test).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tgap", "components", "pipelines")
# The KFP layer inside tgap/: it builds, runs and submits the DAG, so it may import it.
KFP_LAYER = ("tgap.cli", "tgap.local_run", "tgap.kube", "tgap.checkout")
# Lower layers never import higher ones: library < components < pipelines < runners < CLI.
LAYERS = {
    "components": 1,
    "pipelines": 2,
    "tgap.checkout": 3,
    "tgap.local_run": 3,
    "tgap.kube": 3,
    "tgap.cli": 4,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
    }


def imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, anywhere in it (``from a import b``: ``a.b`` if a module)."""
    modules = project_modules()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        name: {m for m in imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    for prefix, level in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return level
    return 0  # the library


def test_the_graph_sees_late_imports_and_resolves_modules():
    edges = graph()
    assert "tgap.checkout" in edges["tgap.local_run"]  # a top-level import
    assert "pipelines.tgap_pipeline" in edges["tgap.checkout"]  # inside a function
    assert "tgap.report.html" in edges["tgap.report"]  # `from tgap.report import html`
    assert {"components", "pipelines.cluster"} <= edges["pipelines.tgap_pipeline"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_library_imports_no_kfp_components_pipelines_or_cli():
    modules = project_modules()
    library = [m for m in modules if m.startswith("tgap") and m not in KFP_LAYER]
    assert "tgap.select" in library and "tgap.report.html" in library
    for name in library:
        for target in imports(modules[name], name):
            top = target.split(".")[0]
            assert top not in ("kfp", "kfp_server_api", "components", "pipelines"), (name, target)
            assert target not in KFP_LAYER, (name, target)


def test_layers_import_only_downwards():
    for name, targets in graph().items():
        for target in targets:
            assert layer(target) <= layer(name), f"{name} (layer {layer(name)}) imports {target}"


def test_the_wheel_installs_no_generic_top_level_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {"tgap"}
    # ...and every package of the library is listed (a missing one would not be installed).
    listed = {module_name(p.parent) for p in (ROOT / "tgap").rglob("__init__.py")}
    assert listed == set(packages)


# --------------------------------------------------------------------------- the README's map


def readme_map() -> list[str]:
    """The paths in the README's "where things are" table (brace lists expanded)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("Where things are")
    table = text[start:].split("\n\n")[1]
    paths = []
    for row in table.splitlines()[2:]:
        where = row.strip("|").split("|")[-1]
        for raw in re.findall(r"`([^`]+)`", where):
            brace = re.search(r"\{([^}]*)\}", raw)
            options = brace.group(1).split(",") if brace else [""]
            paths += [
                raw[: brace.start()] + o + raw[brace.end() :] if brace else raw for o in options
            ]
    return paths


def test_every_path_in_the_readme_map_exists():
    paths = readme_map()
    assert "pipelines/tgap_pipeline.py" in paths and "pipelines/configs/micro.yaml" in paths
    missing = [p for p in paths if not any(ROOT.glob(p.rstrip("/")))]
    assert missing == [], f"README's map names paths that do not exist: {missing}"


def test_every_module_of_tgap_is_in_the_readme_map():
    covered = set()
    for p in readme_map():
        for match in ROOT.glob(p.rstrip("/")):
            covered |= set(match.rglob("*.py")) if match.is_dir() else {match}
    modules = [  # package markers (nothing but a docstring) are not modules of their own
        p
        for p in sorted((ROOT / "tgap").rglob("*.py"))
        if not all(isinstance(node, ast.Expr) for node in ast.parse(p.read_text()).body)
    ]
    missing = [str(p.relative_to(ROOT)) for p in modules if p not in covered]
    assert missing == [], f"modules of tgap/ missing from the README's map: {missing}"


# A path of one machine (a home, a scratch or work folder, a temp file) says where someone ran
# something, not how to; only these name a fixed path that is the same everywhere.
MACHINE_PATH = re.compile(
    r"(?<![\w.~-])/(?:work|home|Users|tmp|root|mnt|scratch)/[\w<>-]*(?:[./][\w<>-]+)*"
)
FIXED_PATHS = {
    ".gitignore": {"/tmp/"},  # the repository's own tmp/ folder
    "images/Dockerfile.cpu": {"/home/tgap"},  # the image's user home
    "images/Dockerfile.cuda": {"/home/tgap"},
    # SeaweedFS opens its gRPC sockets there; the test fixture removes them.
    "tests/servers.py": {"/tmp/seaweedfs-<service>-grpc-<port>.sock"},
    "docs/ingest.md": {"/tmp/seaweedfs-<service>-grpc-<port>.sock"},
    "tests/test_structure.py": {"/tmp/", "/home/tgap", "/tmp/seaweedfs-<service>-grpc-<port>.sock"},
}


def tracked_text_files() -> list[Path]:
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = [ROOT / name for name in listed.split("\0") if name]
    return [p for p in files if p.is_file() and b"\0" not in p.read_bytes()[:8192]]


def test_no_machine_paths_in_the_tree():
    example = "/" + "work/timing/new.log"  # (split, so this file does not hold one)
    assert MACHINE_PATH.findall(f"logs in {example}.") == [example]
    assert not MACHINE_PATH.search("s3://bucket/tmp/x, runs/demo/run.log, ../shared/data, /opt/x")
    found = {}
    for path in tracked_text_files():
        name = str(path.relative_to(ROOT))
        text = path.read_text(errors="replace")
        paths = {m.group(0) for m in MACHINE_PATH.finditer(text)} - FIXED_PATHS.get(name, set())
        if paths:
            found[name] = sorted(paths)
    assert found == {}, f"machine paths in tracked files: {found}"
