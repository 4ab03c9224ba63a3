"""The index and match jobs on a portable runner, with workers that know framematch only
from the staged ``--setup_file`` artifact, as on a remote Flink or Spark cluster.

The runner is Beam's own job service (``local_job_service_main``: the portable job API a
Flink or Spark job server speaks). Its SDK workers come from an ``EXTERNAL`` worker pool
that starts each worker with Beam's Python container entrypoint (``boot``, built from
Beam's Go module at the pinned version by ``make setup``), exactly as in Beam's SDK
container: boot fetches the job's artifacts, pip-installs the staged sdist, then runs the
SDK harness. The pool runs in a fresh virtualenv that sees Beam and the other dependencies
but not framematch (nor the source tree: it runs elsewhere, with no ``PYTHONPATH``), so a
step that needed anything not shipped by ``--setup_file`` fails here. The jobs are
launched as a user would, with the ``framematch`` command from the project's venv.

Outputs are compared with the embedded runner's on the same inputs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from evaluation.edits import EDITS, grab_frame
from pipelines import index, match
from pipelines.cli import EXIT_OK, EXIT_PARTIAL
from tests.conftest import EMBEDDED

pytestmark = pytest.mark.portable

ROOT = Path(__file__).resolve().parents[1]
BOOT = ROOT / ".cache" / "bin" / "beam-python-boot"
CLIP = "carphone.mp4"
JOB_TIMEOUT_S = 150  # a stuck portable job never fails by itself: it waits for workers
START_TIMEOUT_S = 30
ADDRESS = re.compile(r"0x[0-9a-f]{6,}")
MATCH_RUN = ["--run_id", "p1", "--run_date", "2026-11-26"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited early: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not listening after {START_TIMEOUT_S} s")


@contextlib.contextmanager
def service(command: list[str], port: int, cwd: Path, env: dict[str, str],
            name: str) -> Iterator[None]:
    """A background service in its own process group, stopped with its children on exit."""
    log = cwd / f"{name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out,
                                   start_new_session=True)
    try:
        wait_for_port(port, process, log)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def worker_venv(directory: Path) -> Path:
    """A virtualenv that sees the project venv's packages, except framematch itself.

    A plain path line in a ``.pth`` file adds the project's site-packages to ``sys.path``
    without running the ``.pth`` files inside it, one of which is what makes the editable
    framematch importable.
    """
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(directory)],
                   check=True)
    (site,) = Path(sys.prefix).glob("lib/python3*/site-packages")
    (worker_site,) = directory.glob("lib/python3*/site-packages")
    (worker_site / "framematch-deps.pth").write_text(f"{site}\n")
    return worker_site


@pytest.fixture(scope="module")
def portable(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A running job service and worker pool; yields the runner flags and the worker venv."""
    if not BOOT.exists():
        pytest.skip(f"no Beam Python boot entrypoint at {BOOT} (make setup builds it)")
    if importlib.util.find_spec("wheel") is None:
        pytest.skip("the worker builds the staged sdist and needs `wheel` in the venv")
    work = tmp_path_factory.mktemp("portable")
    venv = work / "worker-venv"
    worker_site = worker_venv(venv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import apache_beam, transforms"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert "No module named 'transforms'" in probe.stderr, probe.stderr  # Beam yes, us no
    job_port, pool_port = free_port(), free_port()
    pool_env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
                "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT": "1"}
    with service([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                  f"--port={job_port}"], job_port, work, env, "job_service"), \
         service([str(venv / "bin" / "python"), "-m",
                  "apache_beam.runners.worker.worker_pool_main", f"--service_port={pool_port}",
                  f"--container_executable={BOOT}"], pool_port, work, pool_env, "worker_pool"):
        yield {"work": work, "worker_site": worker_site, "flags": [
            "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
            "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}",
            f"--setup_file={ROOT / 'setup.py'}"]}


def launch(job: str, argv: list[str], status: int = EXIT_OK) -> None:
    """Submit a job with the ``framematch`` command, as from a laptop."""
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", job, *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert done.returncode == status, done.stdout[-1000:] + done.stderr[-3000:]


def rows(directory: Path, drop: tuple[str, ...] = ()) -> list[dict]:
    """A table's rows in a stable order, without ``drop`` columns and with object addresses
    masked (Pillow's error for an unreadable image names its ``BytesIO`` by address)."""
    table = ds.dataset(directory, format="parquet").to_table()
    table = table.drop_columns([c for c in drop if c in table.column_names])
    found = [{k: ADDRESS.sub("0x?", v) if isinstance(v, str) else v for k, v in r.items()}
             for r in table.to_pylist()]
    return sorted(found, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def only_batch(index_dir: Path, table: str) -> Path:
    (batch,) = (index_dir / table).glob("batch=*")
    return batch


def test_index_and_match_on_portable_runner_equal_embedded(
        portable: dict, archive: list[Path], tmp_path: Path) -> None:
    clip = next(v for v in archive if v.name == CLIP)
    images = tmp_path / "images"
    images.mkdir()
    grab_frame(clip, 1.0).save(images / "plain.png")
    EDITS["caption"](grab_frame(clip, 3.0), random.Random(1)).save(
        images / "caption.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")

    embedded, remote = tmp_path / "embedded", tmp_path / "portable"
    index.run(["--archive", str(clip), "--index", str(embedded / "index"), *EMBEDDED])
    launch("index", ["--archive", str(clip), "--index", str(remote / "index"),
                     *portable["flags"]])
    for table in ("videos", "frames", "references", "dead_letter"):
        expected = rows(only_batch(embedded / "index", table), drop=("batch_id",))
        assert rows(only_batch(remote / "index", table), drop=("batch_id",)) == expected, table
    assert rows(only_batch(remote / "index", "frames"))

    match_args = ["--index", str(embedded / "index"), "--images", str(images),
                  *MATCH_RUN]
    match.run([*match_args, "--out", str(embedded / "out"), *EMBEDDED])
    launch("match", [*match_args, "--out", str(remote / "out"), *portable["flags"]],
           EXIT_PARTIAL)  # broken.jpg is dead-lettered
    for table in ("matches", "queries", "dead_letter"):
        assert rows(remote / "out" / table) == rows(embedded / "out" / table), table
    assert len(rows(remote / "out" / "matches")) >= 2

    # the workers ran framematch as pip installed it from the staged sdist
    (dist,) = portable["worker_site"].glob("framematch-*.dist-info")
    origin = json.loads((dist / "direct_url.json").read_text())["url"]
    assert origin.endswith("/workflow.tar.gz"), origin
    assert (portable["worker_site"] / "transforms" / "index" / "segments.py").is_file()
