"""Ingest at scale: NIH metadata (112k rows), peak RSS at 1k and 10k images, local vs S3 rate.

    .venv/bin/python benchmarks/ingest.py            # about 3-5 minutes on 2 busy cores

1. Load + validate + label-map + patient split of NIH's full metadata (112,120 rows).
2. A 10,000-image NIH-layout fixture in a temp folder: the 1,000 mini images copied 10 times
   under new names, new patient IDs, and a matching CSV (the first copy alone is the 1k set).
3. Ingest 1k and 10k from local disk, each in its own subprocess so the peak RSS figures are
   independent (ru_maxrss of that process).
4. The 10k fixture uploaded to SeaweedFS (`weed mini` on loopback, started here), ingested from
   s3:// in a subprocess.
Ends with one line: RESULT ingest rows_112k_s=... rss_mb_1k=... rss_mb_10k=... local_img_s=... s3_img_s=...
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
NIH_MINI = DATA / "nih-cxr14-mini"
NIH_META = DATA / "nih-cxr14-metadata" / "Data_Entry_2017_v2020.csv.gz"
CSV_NAME = "Data_Entry_2017_v2020.csv"
RESOLUTION = 32


def child(source: str, out: str) -> None:
    """Run one ingest in this process; print its time, image count and peak RSS as JSON."""
    from tgap.config import DataConfig
    from tgap.ingest import ingest

    data = DataConfig(source=source, format="nih-csv", csv=CSV_NAME, resolution=RESOLUTION)
    start = time.perf_counter()
    summary = ingest(data, f"{out}/pool", f"{out}/train", f"{out}/val", f"{out}/test")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    images = sum(summary["totals"].values())
    print(json.dumps({"seconds": seconds, "images": images, "rss_mb": peak_mb}))


def run_child(source: str, out: Path, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", source, str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child ingest of {source} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_fixture(root: Path, copies: int) -> Path:
    """NIH layout with ``copies`` x the mini set under new image names and patient IDs."""
    with open(NIH_MINI / CSV_NAME, newline="") as fh:
        reader = csv.DictReader(fh)
        columns, rows = list(reader.fieldnames or []), list(reader)
    (root / "images").mkdir(parents=True)
    with open(root / CSV_NAME, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for k in range(copies):
            for row in rows:
                name = f"c{k:02d}_{row['Image Index']}"
                shutil.copyfile(NIH_MINI / "images" / row["Image Index"], root / "images" / name)
                writer.writerow(
                    {
                        **row,
                        "Image Index": name,
                        "Patient ID": str(int(row["Patient ID"]) + k * 1_000_000),
                    }
                )
    return root


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import servers  # tests/servers.py: SeaweedFS on loopback

    from tgap import storage
    from tgap.config import DataConfig, SplitConfig
    from tgap.ingest import load_nih_metadata, split_by_patient

    # 1. metadata at full scale
    start = time.perf_counter()
    rows, info = load_nih_metadata(
        DataConfig(source=str(NIH_META.parent), format="nih-csv", csv=NIH_META.name)
    )
    split_by_patient(rows, SplitConfig(), ["No Finding", "Unhealthy"])
    rows_s = time.perf_counter() - start
    print(
        f"metadata: {info['rows_read']:,} rows loaded, validated, labelled, split in {rows_s:.2f} s"
    )

    tmp = Path(tempfile.mkdtemp(prefix="tgap-bench-ingest-"))
    proc = None
    try:
        env = servers.environ_without_cloud()
        env.update({"OMP_NUM_THREADS": "1", "TGAP_CACHE": str(tmp / "cache")})
        one_k = build_fixture(tmp / "nih1k", 1)
        ten_k = build_fixture(tmp / "nih10k", 10)
        r1 = run_child(str(one_k), tmp / "out1k", env)
        r10 = run_child(str(ten_k), tmp / "out10k", env)

        # 4. the same 10k through S3
        proc, server = servers.start_seaweedfs(tmp / "weed")
        server.client().make_bucket("bench")
        os.environ.update(server.env())
        t = time.perf_counter()
        storage.upload_folder(ten_k, "s3://bench/nih10k")
        upload_s = time.perf_counter() - t
        print(f"uploaded 10k fixture to SeaweedFS in {upload_s:.1f} s (not part of the figures)")
        rs3 = run_child("s3://bench/nih10k", tmp / "outs3", {**env, **server.env()})
    finally:
        if proc is not None:
            servers.stop_seaweedfs(proc, server)
        shutil.rmtree(tmp, ignore_errors=True)

    local_rate = r10["images"] / r10["seconds"]
    s3_rate = rs3["images"] / rs3["seconds"]
    print()
    print(f"{'run':<22}{'images':>8}{'seconds':>10}{'img/s':>9}{'peak RSS MB':>13}")
    for name, r in (("local 1k", r1), ("local 10k", r10), ("s3 (SeaweedFS) 10k", rs3)):
        print(
            f"{name:<22}{r['images']:>8}{r['seconds']:>10.1f}{r['images'] / r['seconds']:>9.0f}{r['rss_mb']:>13.0f}"
        )
    print(
        f"\nS3 / local rate: {s3_rate / local_rate:.2f} (target >= 0.5); 112k rows: {rows_s:.2f} s (target < 5)"
    )
    print(
        f"RESULT ingest rows_112k_s={rows_s:.2f} rss_mb_1k={r1['rss_mb']:.0f} rss_mb_10k={r10['rss_mb']:.0f} "
        f"local_img_s={local_rate:.0f} s3_img_s={s3_rate:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
    else:
        main()
