"""Image sets through an S3 server: one object per image vs tar shards (tgap.imageset).

    PATH=.venv/bin:$PATH .venv/bin/python benchmarks/shards.py     # a few minutes on 2 cores

1. 20,000 grey 32 px images (random pixels, seed 0) written twice: as an image set in
   ``tgap.imageset``'s layout (1,000-image tar shards + manifest), and one PNG file per image
   plus the same manifest (the layout before shards).
2. SeaweedFS ``weed mini`` on loopback (tests/servers.py, as the test suite starts it).
3. Each folder uploaded with ``tgap.storage.upload_folder`` and downloaded with
   ``tgap.storage.download_to_cache`` (8 threads each), then downloaded again one object after
   another, as KFP's launcher fetches a task's input artifacts. The downloaded sharded set is
   read back and compared with the images written.
Ends with: RESULT shards objects_ratio=... upload_ratio=... download_ratio=... sequential_download_ratio=...
(each ratio is per-image / sharded: how many times fewer objects, how many times faster).
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
N, SIDE = 20_000, 32


def write_sets(tmp: Path, images: np.ndarray) -> tuple[Path, Path]:
    """The sharded set and a per-image copy of it (the same PNG bytes, one file each)."""
    from tgap.imageset import INFO, ImageSet, ImageSetWriter

    sharded = tmp / "sharded"
    with ImageSetWriter(sharded, ["a", "b"], SIDE) as writer:
        for i, image in enumerate(images):
            writer.add(image, "ab"[i % 2])
    per_image = tmp / "per-image"
    (per_image / "images").mkdir(parents=True)
    shutil.copy2(sharded / INFO, per_image / INFO)
    for shard in ImageSet(sharded).shards:  # any tar tool unpacks a shard
        with tarfile.open(sharded / shard["file"]) as tar:
            tar.extractall(per_image / "images", filter="data")
    return sharded, per_image


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def round_trip(storage, folder: Path, uri: str, cache: Path) -> dict[str, float]:
    objects = sum(1 for p in folder.rglob("*") if p.is_file())
    upload_s, _ = timed(lambda: storage.upload_folder(folder, uri))
    download_s, local = timed(lambda: storage.download_to_cache(uri, cache / "threads"))
    uris = storage.list_uris(uri)
    sequential_s, _ = timed(lambda: [storage.read_bytes(u) for u in uris])
    print(
        f"{folder.name:<10} {objects:>7} objects: upload {upload_s:6.1f} s, download "
        f"{download_s:6.1f} s (8 threads), {sequential_s:6.1f} s (one at a time)"
    )
    return {
        "objects": objects,
        "upload_s": upload_s,
        "download_s": download_s,
        "sequential_s": sequential_s,
        "local": local,
    }


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import servers  # tests/servers.py: SeaweedFS on loopback

    from tgap import storage
    from tgap.imageset import ImageSet

    images = np.random.default_rng(0).integers(0, 256, (N, SIDE, SIDE), dtype=np.uint8)
    tmp = Path(tempfile.mkdtemp(prefix="tgap-bench-shards-"))
    proc = server = None
    try:
        sharded, per_image = write_sets(tmp, images)
        proc, server = servers.start_seaweedfs(tmp / "weed")
        server.client().make_bucket("bench")
        os.environ.update(server.env())
        os.environ["TGAP_CACHE"] = str(tmp / "cache")
        old = round_trip(storage, per_image, "s3://bench/per-image", tmp / "cache-old")
        new = round_trip(storage, sharded, "s3://bench/sharded", tmp / "cache-new")
        read_back = ImageSet(new["local"])
        assert np.array_equal(read_back.load_all(), images), "sharded set changed in transit"
        assert list(read_back.label_indices) == [i % 2 for i in range(N)]
    finally:
        if proc is not None:
            servers.stop_seaweedfs(proc, server)
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"RESULT shards objects_ratio={old['objects'] / new['objects']:.0f} "
        f"upload_ratio={old['upload_s'] / new['upload_s']:.1f} "
        f"download_ratio={old['download_s'] / new['download_s']:.1f} "
        f"sequential_download_ratio={old['sequential_s'] / new['sequential_s']:.1f}"
    )


if __name__ == "__main__":
    main()
