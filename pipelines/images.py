"""Which image references the compiled spec names: tags derived from the images' content.

KFP's cache key includes the component's image string, so a tag reused across rebuilds (say
``tgap-cpu:0.1.0`` for every commit) lets a run reuse results that older code computed. Here the
tag is ``<package version>-<content digest>``: the first 12 hex digits of a SHA-256 over the
Dockerfiles and every file of the Docker build context (the allow-list in ``.dockerignore``).
Equal tags mean equal inputs to ``docker build``.

``make images`` (``scripts/build-images.sh``) builds and pushes ``<repository>:<content tag>`` and
records the pushed digests in ``images/digests.json``; ``tgap compile`` then writes
``<repository>@sha256:...``. Without a record for the current content (nothing built yet, or
the code changed since) the spec names ``<repository>:<content tag>``, which ``make images``
builds. Any other tag is floating and refused unless asked for (``--allow-floating-tag``).

Run as ``python -m pipelines.images tags CONFIG`` (the two references to build) or
``python -m pipelines.images record TAG CPU_DIGEST_REF GPU_DIGEST_REF`` (after the push).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

from tgap.config import ClusterConfig, ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ("images/Dockerfile.cpu", "images/Dockerfile.cuda")
DIGESTS_FILE = ROOT / "images" / "digests.json"
FLOATING_FLAG = "--allow-floating-tag"
TAG_DIGITS = 12
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    """An image reference split into repository, tag and digest (either may be empty)."""

    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, ref: str, where: str) -> Reference:
        if not ref or any(c.isspace() for c in ref):
            raise ConfigError(f"{where}: {ref!r} is not an image reference")
        name, _, digest = ref.partition("@")
        if digest and not _DIGEST.fullmatch(digest):
            raise ConfigError(f"{where}: {ref!r}: the digest must be sha256:<64 hex digits>")
        # A colon after the last slash starts the tag; one before it is a registry port.
        head, _, last = name.rpartition("/")
        repo_last, _, tag = last.partition(":")
        repository = f"{head}/{repo_last}" if head else repo_last
        return cls(repository, tag, digest)


# --------------------------------------------------------------------------- the content tag


def _context_patterns(root: Path) -> tuple[list[str], list[str]]:
    """(included paths, excluded globs) of ``.dockerignore``, which must be an allow-list:
    ``*`` first, then ``!path`` lines and exclusion globs (the only form read here)."""
    lines = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    if not lines or lines[0] != "*":
        raise ConfigError(
            f"{root / '.dockerignore'}: expected an allow-list starting with '*' (the only form "
            "pipelines/images.py reads to digest the build context)"
        )
    included = [line[1:].strip("/") for line in lines[1:] if line.startswith("!")]
    excluded = [line for line in lines[1:] if not line.startswith("!")]
    return included, excluded


def _excluded(relative: Path, globs: list[str]) -> bool:
    parts = relative.parts
    for glob in globs:
        pattern = glob.removeprefix("**/")
        if glob.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern) for part in parts):
                return True
        elif fnmatch.fnmatch(relative.as_posix(), pattern):
            return True
    return False


def context_files(root: Path = ROOT) -> list[Path]:
    """The files ``docker build`` sends from ``root`` (relative paths, sorted), plus the
    Dockerfiles, which are read from outside the context's allow-list."""
    included, excluded = _context_patterns(root)
    files = set(map(Path, DOCKERFILES))
    for name in included:
        path = root / name
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in candidates:
            relative = file.relative_to(root)
            if file.is_file() and not _excluded(relative, excluded):
                files.add(relative)
    return sorted(files)


def context_digest(root: Path = ROOT) -> str:
    """SHA-256 over the path and content of every :func:`context_files` file."""
    total = hashlib.sha256()
    for relative in context_files(root):
        content = hashlib.sha256((root / relative).read_bytes()).hexdigest()
        total.update(f"{relative.as_posix()}\0{content}\n".encode())
    return total.hexdigest()


def content_tag(root: Path = ROOT) -> str:
    """``<version>-<12 hex digits of the context digest>``, e.g. ``0.1.0-3f2a9c81d0e4``."""
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    return f"{version}-{context_digest(root)[:TAG_DIGITS]}"


# --------------------------------------------------------------------------- resolving


def recorded_digests(tag: str, path: Path = DIGESTS_FILE) -> dict[str, str]:
    """repository -> ``repository@sha256:...`` pushed for ``tag``; empty when ``path`` is
    missing or records another tag (the code changed since the last ``make images``)."""
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return dict(record["images"]) if record.get("tag") == tag else {}


def resolve(ref: str, where: str, tag: str, digests: dict[str, str], allow_floating: bool) -> str:
    """The reference the spec names for the configured ``ref``.

    A digest stays as given. A bare repository, or one tagged with the content ``tag``, becomes
    the recorded digest when ``make images`` pushed this content, else ``<repository>:<tag>``.
    Any other tag floats: an error unless ``allow_floating``."""
    parsed = Reference.parse(ref, where)
    if parsed.digest:
        return ref
    if parsed.tag in ("", tag):
        return digests.get(parsed.repository) or f"{parsed.repository}:{tag}"
    if allow_floating:
        return ref
    raise ConfigError(
        f"{where}: {ref!r} has the tag {parsed.tag!r}, which does not name the image's content "
        "(KFP's cache would reuse results across rebuilds under that tag). Give the repository "
        f"alone ({parsed.repository!r}: tgap names {parsed.repository}:{tag}, the tag `make "
        f"images` builds), pin a digest (@sha256:...), or pass {FLOATING_FLAG}"
    )


def component_images(
    cluster: ClusterConfig, allow_floating: bool = False, root: Path = ROOT
) -> tuple[str, str]:
    """The (CPU, GPU) references the compiled spec names for ``cluster.cpu_image``/``gpu_image``."""
    tag = content_tag(root)
    digests = recorded_digests(tag, root / DIGESTS_FILE.relative_to(ROOT))
    cpu, gpu = (
        resolve(getattr(cluster, key), f"cluster.{key}", tag, digests, allow_floating)
        for key in ("cpu_image", "gpu_image")
    )
    return cpu, gpu


def build_references(cluster: ClusterConfig, root: Path = ROOT) -> tuple[str, str]:
    """``<repository>:<content tag>`` of both images: what ``make images`` builds and pushes."""
    tag = content_tag(root)
    return tuple(  # type: ignore[return-value]
        f"{Reference.parse(getattr(cluster, key), f'cluster.{key}').repository}:{tag}"
        for key in ("cpu_image", "gpu_image")
    )


def record(tag: str, pushed: list[str], path: Path = DIGESTS_FILE) -> dict:
    """Write ``path``: the content ``tag`` and each pushed ``repository@sha256:...``."""
    images = {}
    for ref in pushed:
        parsed = Reference.parse(ref, "pushed image")
        if not parsed.digest:
            raise ConfigError(f"pushed image {ref!r}: expected <repository>@sha256:<digest>")
        images[parsed.repository] = f"{parsed.repository}@{parsed.digest}"
    content = {"tag": tag, "images": images}
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    return content


def main(argv: list[str]) -> int:
    from tgap.config import load_config

    if len(argv) == 2 and argv[0] == "tags":
        print(*build_references(load_config(argv[1]).cluster))
        return 0
    if len(argv) >= 3 and argv[0] == "record":
        tag = argv[1]
        if tag != content_tag():
            print(
                f"pipelines.images: the build context changed during the build ({tag} built, "
                f"{content_tag()} now): run make images again",
                file=sys.stderr,
            )
            return 1
        record(tag, argv[2:])
        print(f"recorded {DIGESTS_FILE.relative_to(ROOT)}: {tag} {' '.join(argv[2:])}")
        return 0
    print(
        "usage: python -m pipelines.images tags CONFIG | record TAG REPO@sha256:... ...",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
