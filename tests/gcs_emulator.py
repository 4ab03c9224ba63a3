"""A real Cloud Storage emulator on 127.0.0.1 for tests of ``gs://`` paths.

``gcp-storage-emulator`` (pure Python, in memory) implements the JSON API including the
batch endpoint that Beam's sinks use at finalize, so Beam's ``FileSystems`` and the
Parquet/text IOs run against it unchanged once ``STORAGE_EMULATOR_HOST`` names it.

Under pytest-xdist every worker process gets its own emulator on its own free port, so
buckets never collide and no worker waits for another. Import the fixture into
``tests/conftest.py`` with ``from tests.gcs_emulator import gcs_bucket  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from transforms.io.gcs_auth import EMULATOR_ENV, use_anonymous_credentials_for_emulator

HOST = "127.0.0.1"
BUCKET = "framematch-test"
PROJECT = "framematch-test"
START_TIMEOUT_S = 20.0
PORT_ATTEMPTS = 3


def _free_port() -> int:
    """A port the kernel just found free (another process may take it before we bind it)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _answers(endpoint: str) -> bool:
    """True once the emulator's health check (``GET /`` → ``OK``) replies."""
    try:
        with urllib.request.urlopen(f"{endpoint}/", timeout=1) as reply:
            return reply.read() == b"OK"
    except OSError:
        return False


def _start(port: int) -> subprocess.Popen:
    """Start the emulator on ``port`` and wait until it answers.

    Raises ``OSError`` (with the emulator's stderr) if it fails or stays silent, typically
    because another process took the port first. A failed bind kills only the emulator's
    server thread, not the process, so its log is watched for the traceback.
    """
    endpoint = f"http://{HOST}:{port}"
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", HOST,
               "--port", str(port), "--in-memory", "--quiet"]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(endpoint):
            log.seek(0)
            errors = log.read().decode(errors="replace")
            if "Traceback" in errors or process.poll() is not None or (
                    time.monotonic() > deadline):
                _stop(process)
                raise OSError(f"GCS emulator on port {port} did not start: {errors[-2000:]}")
            time.sleep(0.05)
    return process


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_emulator() -> Iterator[str]:
    """An emulator on a free port of 127.0.0.1, stopped on exit; yields its endpoint URL."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = _free_port()
        try:
            process = _start(port)
            break
        except OSError:
            if attempt == PORT_ATTEMPTS:
                raise
    try:
        yield f"http://{HOST}:{port}"
    finally:
        _stop(process)


def emulator_client(project: str = PROJECT) -> storage.Client:
    """An anonymous google-cloud-storage client; it talks to ``STORAGE_EMULATOR_HOST``."""
    return storage.Client(project=project, credentials=AnonymousCredentials())


@contextlib.contextmanager
def gcs_emulator(bucket: str = BUCKET, project: str = PROJECT) -> Iterator[str]:
    """Run an emulator, point this process and its children at it, create ``bucket``.

    Sets ``STORAGE_EMULATOR_HOST`` and ``NO_GCE_CHECK`` (so google-auth never probes a
    metadata server) in ``os.environ`` for the block and restores them afterwards, and makes
    Beam's GCS clients in this process anonymous (``transforms.io.gcs_auth``); a job run
    in a child process applies it itself when it builds its options. Yields the bucket name.
    """
    with running_emulator() as endpoint, pytest.MonkeyPatch.context() as env:
        env.setenv(EMULATOR_ENV, endpoint)
        env.setenv("NO_GCE_CHECK", "True")
        use_anonymous_credentials_for_emulator()
        emulator_client(project).create_bucket(bucket)
        yield bucket


@pytest.fixture(scope="session")
def gcs_bucket() -> Iterator[str]:
    """The name of an empty bucket on this test process's own emulator.

    Session-scoped (one emulator per xdist worker): tests share the bucket, so each test
    writes under its own prefix.
    """
    with gcs_emulator() as bucket:
        yield bucket
