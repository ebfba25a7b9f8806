"""tgap.storage against local disk, a real S3 server (SeaweedFS) and fake-gcs-server."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tgap import storage
from tgap.imageset import ImageSet, ImageSetWriter
from tgap.storage import StorageError

try:
    import servers
    from servers import gcs, gcs_server, loopback_only, s3, s3_server  # noqa: F401
except ImportError:  # tests/ is a package
    from tests import servers
    from tests.servers import gcs, gcs_server, loopback_only, s3, s3_server  # noqa: F401


# --------------------------------------------------------------------------- local


def test_local_round_trip_and_plain_and_file_uris(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    storage.write_bytes(str(target), b"hello")
    assert storage.read_bytes(f"file://{target}") == b"hello"
    assert storage.exists(target) and not storage.exists(tmp_path / "nope")
    assert not storage.is_remote(target) and not storage.is_remote(f"file://{target}")
    assert storage.is_remote("s3://b/k") and storage.is_remote("gs://b/k")


def test_local_write_is_atomic_when_the_rename_fails(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "f.txt"
    storage.write_bytes(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # no temp file left


def test_local_list_is_recursive_sorted_and_keeps_uri_form(tmp_path: Path) -> None:
    for name in ["z.txt", "a/b.txt", "a/c/d.txt"]:
        storage.write_bytes(tmp_path / name, name.encode())
    assert storage.list_uris(tmp_path) == [
        str(tmp_path / n) for n in ["a/b.txt", "a/c/d.txt", "z.txt"]
    ]
    assert storage.list_uris(f"file://{tmp_path}/a")[0] == f"file://{tmp_path}/a/b.txt"
    assert storage.list_sizes(tmp_path) == {"a/b.txt": 7, "a/c/d.txt": 9, "z.txt": 5}
    storage.remove(tmp_path / "z.txt")
    storage.remove(f"file://{tmp_path}/z.txt")  # already gone: not an error
    assert storage.list_sizes(tmp_path) == {"a/b.txt": 7, "a/c/d.txt": 9}
    with pytest.raises(StorageError, match="no such folder"):
        storage.list_uris(tmp_path / "missing")


def test_local_download_to_cache_returns_the_path_itself(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("1")
    assert storage.download_to_cache(tmp_path / "x") == tmp_path / "x"
    with pytest.raises(StorageError, match="no such file or folder"):
        storage.download_to_cache(tmp_path / "missing")


def test_local_upload_folder_copies_everything_and_refuses_to_clobber(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "one.txt").write_text("1")
    (src / "sub" / "two.txt").write_text("2")
    written = storage.upload_folder(src, tmp_path / "dst")
    assert written == [str(tmp_path / "dst/one.txt"), str(tmp_path / "dst/sub/two.txt")]
    assert (tmp_path / "dst/sub/two.txt").read_text() == "2"
    with pytest.raises(StorageError, match="not empty"):
        storage.upload_folder(src, tmp_path / "dst")


def test_unsupported_scheme_and_missing_bucket_name_are_clear_errors() -> None:
    with pytest.raises(StorageError, match="unsupported URI scheme"):
        storage.read_bytes("http://example.com/x")
    with pytest.raises(StorageError, match="no bucket name"):
        storage.read_bytes("s3:///key")


def test_network_guard_refuses_non_loopback_addresses() -> None:
    # The guarantee behind every server test: nothing here can reach the internet.
    with pytest.raises(OSError, match="only"):
        socket.create_connection(("8.8.8.8", 53), timeout=1)


def test_gcs_without_emulator_fails_clearly_without_leaving_loopback() -> None:
    # No STORAGE_EMULATOR_HOST and no credentials: application-default lookup must fail fast,
    # with a message saying what to configure (the metadata server is a closed loopback port).
    storage._gcs_client.cache_clear()
    with pytest.raises(StorageError, match="no Google credentials found"):
        storage.read_bytes("gs://some-bucket/some-key")


# --------------------------------------------------------------------------- servers


@pytest.mark.servers
def test_seaweedfs_leaves_no_socket_files_behind(tmp_path: Path) -> None:
    proc, server = servers.start_seaweedfs(tmp_path / "weed")
    try:
        assert (tmp_path / "weed" / "s3.sock").exists()  # settable sockets: in the test folder
        assert server.grpc_ports and servers.grpc_socket_files(server)  # hard-coded ones: /tmp
    finally:
        servers.stop_seaweedfs(proc, server)
    assert proc.returncode is not None and not servers.grpc_socket_files(server)


@pytest.fixture(params=["s3", "gs"])
def bucket_uri(request) -> str:
    """A fresh, empty bucket on the SeaweedFS or fake-gcs server: ``s3://name`` / ``gs://name``."""
    name = f"tgap-{uuid.uuid4().hex[:10]}"
    if request.param == "s3":
        server = request.getfixturevalue("s3")
        server.client().make_bucket(name)
    else:
        server = request.getfixturevalue("gcs")
        server.client().create_bucket(name)
    return f"{request.param}://{name}"


@pytest.mark.servers
def test_remote_round_trip_list_exists(bucket_uri: str) -> None:
    storage.write_bytes(f"{bucket_uri}/dir/a.bin", b"\x00\x01")
    storage.write_bytes(f"{bucket_uri}/dir/sub/b.bin", b"bbb")
    storage.write_bytes(f"{bucket_uri}/other.bin", b"o")
    assert storage.read_bytes(f"{bucket_uri}/dir/a.bin") == b"\x00\x01"
    assert storage.list_uris(f"{bucket_uri}/dir") == [
        f"{bucket_uri}/dir/a.bin",
        f"{bucket_uri}/dir/sub/b.bin",
    ]
    assert storage.list_sizes(f"{bucket_uri}/dir/") == {"a.bin": 2, "sub/b.bin": 3}
    assert len(storage.list_uris(bucket_uri)) == 3
    assert storage.exists(f"{bucket_uri}/dir/a.bin") and storage.exists(f"{bucket_uri}/dir")
    assert not storage.exists(f"{bucket_uri}/dir/zzz") and not storage.exists(f"{bucket_uri}/nope/")
    storage.remove(f"{bucket_uri}/dir/a.bin")
    storage.remove(f"{bucket_uri}/dir/a.bin")  # already gone: not an error
    assert storage.list_uris(f"{bucket_uri}/dir") == [f"{bucket_uri}/dir/sub/b.bin"]


@pytest.mark.servers
def test_remote_large_upload_round_trips(bucket_uri: str) -> None:
    # 9 MiB: multipart on S3, resumable upload on GCS (threshold 8 MiB).
    data = os.urandom(9 * 1024 * 1024)
    storage.write_bytes(f"{bucket_uri}/big.bin", data)
    assert storage.read_bytes(f"{bucket_uri}/big.bin") == data
    assert storage.list_sizes(bucket_uri) == {"big.bin": len(data)}


@pytest.mark.servers
def test_upload_folder_then_download_to_cache_round_trips_and_caches(
    bucket_uri: str, tmp_path: Path
) -> None:
    src = tmp_path / "model"
    (src / "unet").mkdir(parents=True)
    (src / "config.json").write_text('{"a": 1}')
    (src / "unet" / "weights.bin").write_bytes(b"w" * 1000)
    storage.upload_folder(src, f"{bucket_uri}/models/m1")
    cache = tmp_path / "cache"
    got = storage.download_to_cache(f"{bucket_uri}/models/m1", cache)
    assert (got / "config.json").read_text() == '{"a": 1}'
    assert (got / "unet" / "weights.bin").read_bytes() == b"w" * 1000
    # Unchanged objects: the same cache entry, not downloaded again.
    stamp = (got / "config.json").stat().st_mtime_ns
    assert storage.download_to_cache(f"{bucket_uri}/models/m1/", cache) == got
    assert (got / "config.json").stat().st_mtime_ns == stamp
    # A changed object: a new entry with the new content.
    storage.write_bytes(f"{bucket_uri}/models/m1/config.json", b'{"a": 2}')
    again = storage.download_to_cache(f"{bucket_uri}/models/m1", cache)
    assert again != got and (again / "config.json").read_text() == '{"a": 2}'
    # A single object downloads as a file.
    one = storage.download_to_cache(f"{bucket_uri}/models/m1/unet/weights.bin", cache)
    assert one.is_file() and one.name == "weights.bin" and one.read_bytes() == b"w" * 1000
    assert not [p for p in cache.iterdir() if "partial" in p.name]


@pytest.mark.servers
def test_an_image_set_round_trips_through_the_store_as_its_shards_and_manifest(
    bucket_uri: str, tmp_path: Path
) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8), dtype=np.uint8)
    with ImageSetWriter(tmp_path / "set", ["a", "b"], 8, shard_size=2) as writer:
        for i, image in enumerate(images):
            writer.add(image, "ab"[i % 2], original_id=str(i))
    written = storage.upload_folder(tmp_path / "set", f"{bucket_uri}/sets/s1")
    assert sorted(u.rsplit("/", 1)[1] for u in written) == [
        "dataset.json", "shard-00000.tar", "shard-00001.tar", "shard-00002.tar",
    ]  # fmt: skip
    got = ImageSet(storage.download_to_cache(f"{bucket_uri}/sets/s1", tmp_path / "cache"))
    np.testing.assert_array_equal(got.load_many([4, 0, 2]), images[[4, 0, 2]])
    assert [r.original_id for r in got.records] == ["0", "1", "2", "3", "4"]
    assert list(got.label_indices) == [0, 1, 0, 1, 0]


@pytest.mark.servers
def test_empty_prefix_and_missing_object_are_clear_errors(bucket_uri: str, tmp_path: Path) -> None:
    assert storage.list_uris(f"{bucket_uri}/nothing-here") == []
    with pytest.raises(
        StorageError, match=r"nothing-here: no object and no objects under this prefix"
    ):
        storage.download_to_cache(f"{bucket_uri}/nothing-here", tmp_path)
    with pytest.raises(StorageError, match=r"/missing.bin: read failed: no such object"):
        storage.read_bytes(f"{bucket_uri}/missing.bin")


@pytest.mark.servers
@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_missing_bucket_is_named(scheme: str, request) -> None:
    request.getfixturevalue("s3" if scheme == "s3" else "gcs")
    uri = f"{scheme}://no-such-bucket-{uuid.uuid4().hex[:6]}"
    with pytest.raises(StorageError, match=r"no-such-bucket-\w+.*does not exist"):
        storage.list_uris(uri)
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes(f"{uri}/key")
    assert not storage.exists(f"{uri}/key")


@pytest.mark.servers
def test_s3_wrong_secret_fails_and_never_shows_the_secret(s3, monkeypatch, caplog) -> None:
    s3.client().make_bucket("creds-test")
    wrong = "definitely-wrong-secret-value"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageError, match="wrong credentials") as info:
        storage.list_uris("s3://creds-test")
    with pytest.raises(StorageError, match="wrong credentials"):
        storage.write_bytes("s3://creds-test/x", b"x")
    for secret in (wrong, s3.secret_key):
        assert secret not in str(info.value) and secret not in caplog.text
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "unknown-key-id")
    with pytest.raises(StorageError, match="wrong credentials"):
        storage.read_bytes("s3://creds-test/x")


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_unreachable_endpoint_fails_after_bounded_retries(scheme: str, monkeypatch) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if scheme == "s3":
        monkeypatch.setenv("TGAP_S3_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
    else:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TGAP_STORAGE_RETRIES", "3")
    monkeypatch.setenv("TGAP_STORAGE_BACKOFF", "0.1")
    start = time.monotonic()
    with pytest.raises(
        StorageError,
        match=rf"{scheme}://bucket/key: read .* failed after 3 attempts: endpoint unreachable",
    ):
        storage.read_bytes(f"{scheme}://bucket/key")
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 10  # backed off 0.1 + 0.2 s, then gave up
