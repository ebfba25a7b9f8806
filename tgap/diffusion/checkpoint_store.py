"""Fine-tune checkpoints mirrored to object storage, so a preempted task resumes on another node.

The training loop writes each checkpoint to its local folder first
(``tgap.diffusion.training.save_checkpoint``: ``step-NNNNNN/``); ``CheckpointStore.push`` then
copies it to ``<prefix>/step-NNNNNN/``: the data objects first, ``manifest.json`` (each file's
size and sha256) last. Only a step with a manifest is a checkpoint, so a push cut off half way
is never resumed. ``pull_latest`` downloads the newest complete step into the local folder and
checks every file against its manifest; older steps are removed manifest first.

The prefix is ``<finetune.checkpoint_uri>/finetune/<method>-seed<seed>-n<size>-<digest>``: the
digest hashes everything the fine-tune's result depends on (``checkpoint_identity``), so a retried
task, or the same task in a restarted run, finds its own checkpoints and no other task's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from tgap import storage

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
KEEP = 2  # complete steps kept on the store (the newest two, as locally)
STEP = re.compile(r"^step-(\d{6})$")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(root: Path) -> str:
    """sha256 over every file below ``root`` (relative path and bytes, in order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def checkpoint_prefix(base_uri: str, name: str, identity: dict[str, Any]) -> str:
    """``<base_uri>/finetune/<name>-<16 hex digits of the identity>``.

    ``identity`` holds every input the weights depend on (JSON-serialisable); ``name`` is for a
    person reading the bucket (method, seed, size).
    """
    text = json.dumps(identity, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    return storage.join(base_uri, "finetune", f"{slug}-{digest}")


class CheckpointStore:
    """The checkpoints of one fine-tune under ``prefix`` (a path, ``file://``, ``s3://``, ``gs://``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")

    def __repr__(self) -> str:
        return f"CheckpointStore({self.prefix!r})"

    def _uri(self, *parts: str) -> str:
        return storage.join(self.prefix, *parts)

    def check(self) -> None:
        """List the store and write (then remove) one small object: a missing bucket, or
        credentials that cannot read or write it, raise StorageError here, before training,
        instead of a warning per checkpoint that leaves nothing to resume from."""
        self.steps()
        probe = self._uri(".writable")
        storage.write_bytes(probe, b"ok\n")
        storage.remove(probe)

    def steps(self) -> list[int]:
        """The complete steps on the store (those with a manifest), ascending (a missing bucket
        or unreadable store is a StorageError)."""
        if not storage.is_remote(self.prefix) and not storage.local_path(self.prefix).is_dir():
            return []
        found = []
        for rel in storage.list_sizes(self.prefix):
            folder, _, name = rel.partition("/")
            match = STEP.match(folder)
            if match and name == MANIFEST:
                found.append(int(match.group(1)))
        return sorted(found)

    def push(self, local: Path) -> None:
        """Copy the local checkpoint folder ``step-NNNNNN``: data objects, then the manifest;
        then remove the steps older than the newest ``KEEP``."""
        files = sorted(p for p in local.iterdir() if p.is_file())
        manifest = {
            "step": int(STEP.match(local.name).group(1)),
            "files": {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files},
        }
        for path in files:
            storage.write_bytes(self._uri(local.name, path.name), path.read_bytes())
        storage.write_bytes(self._uri(local.name, MANIFEST), json.dumps(manifest).encode())
        for step in self.steps()[:-KEEP]:
            self._remove_step(step)

    def pull_latest(self, ckpt_dir: Path, newer_than: int = -1) -> Path | None:
        """Download the newest complete step above ``newer_than`` into ``ckpt_dir/step-NNNNNN``
        (through a temp folder and a rename); None when the store has none. A step whose files
        do not match its manifest is skipped with a warning, and the next older one tried."""
        for step in reversed(self.steps()):
            if step <= newer_than:
                return None
            name = f"step-{step:06d}"
            tmp = ckpt_dir / f".pull-{name}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                self._download(name, tmp)
            except (storage.StorageError, ValueError) as exc:
                log.warning("checkpoint %s unusable, trying an older one: %s", self._uri(name), exc)
                shutil.rmtree(tmp, ignore_errors=True)
                continue
            final = ckpt_dir / name
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            log.info("downloaded checkpoint %s to %s", self._uri(name), final)
            return final
        return None

    def _download(self, name: str, into: Path) -> None:
        manifest = json.loads(storage.read_bytes(self._uri(name, MANIFEST)))
        for file, expected in manifest["files"].items():
            data = storage.read_bytes(self._uri(name, file))
            if (
                len(data) != expected["size"]
                or hashlib.sha256(data).hexdigest() != expected["sha256"]
            ):
                raise ValueError(f"{self._uri(name, file)}: size or sha256 differs from {MANIFEST}")
            (into / file).write_bytes(data)

    def clear(self) -> None:
        """Remove every step (once the model is complete, its checkpoints are not needed)."""
        for step in self.steps():
            self._remove_step(step)

    def _remove_step(self, step: int) -> None:
        """Manifest first: a step is never complete while half deleted."""
        name = f"step-{step:06d}"
        storage.remove(self._uri(name, MANIFEST))
        folder = self._uri(name)
        if storage.is_remote(folder):
            for uri in storage.list_uris(folder):
                storage.remove(uri)
        else:
            shutil.rmtree(storage.local_path(folder), ignore_errors=True)
