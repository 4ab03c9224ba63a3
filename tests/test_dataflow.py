"""Each job built for Dataflow without submitting it (``--dry_run=True``), offline.

What only fails on a remote runner fails here: options every job must accept, pickling of
every step (Beam round-trips a non-local pipeline through its proto), transform names,
and what a worker receives: the SDK container image and, with ``--setup_file``, the sdist
of this project, checked to hold every module of its packages.

The jobs read their index on the driver before building the pipeline, so the test gives
them a real (empty) index. DataflowRunner's dry run returns a plain ``PipelineResult``
after building the job; the spy stops the driver right there, so nothing is counted or
written as if the job had run.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

from pipelines import index, match, stream
from pipelines.index import KEY_HASHER, STORED_HASHERS
from schemas.manifest import Manifest
from transforms.hashing.regions import REGIONS
from transforms.index import manifest_log
from transforms.media.preprocess import PREPROCESS_VERSION

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "transforms", "pipelines", "evaluation")
DATAFLOW = ["--runner=DataflowRunner", "--project=framematch-test", "--region=us-central1",
            "--temp_location=gs://framematch-test/tmp", "--dry_run=True"]
IMAGE = "us-central1-docker.pkg.dev/framematch-test/beam/framematch:0.1.0"
BUILD_LIMIT_S = 60  # a dry run takes ~3 s (most of it the sdist); a network wait would not


class JobBuilt(Exception):
    """Raised by the spy with the built Dataflow job, to stop the driver after the build."""

    def __init__(self, job):
        super().__init__("dataflow job built")
        self.job = job


@pytest.fixture
def build_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """``build_job(module, argv)`` → the Dataflow job the module's ``run(argv)`` builds."""
    real_run = DataflowRunner.run_pipeline

    def spy(self, pipeline, options):
        raise JobBuilt(real_run(self, pipeline, options).job)

    monkeypatch.setattr(DataflowRunner, "run_pipeline", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # Beam's staging dirs

    def build(module, argv: list[str]):
        began = time.monotonic()
        with pytest.raises(JobBuilt) as built:
            module.run([*argv, *DATAFLOW])
        assert time.monotonic() - began < BUILD_LIMIT_S
        return built.value.job

    return build


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, str]:
    """An archive, an image folder, an output folder and an empty (no batches) index."""
    paths = {name: tmp_path / name for name in ("archive", "images", "out", "index")}
    for path in paths.values():
        path.mkdir()
    empty = Manifest(preprocess_version=PREPROCESS_VERSION, key_hasher=KEY_HASHER,
                     hashers=list(STORED_HASHERS), prune_d=8,
                     regions=[name for name, _ in REGIONS.values()], shard_rows=1000)
    manifest_log.commit(str(paths["index"]), empty, lambda current: current, "test")
    (paths["archive"] / "clip.mp4").write_bytes(b"")  # listed, never read: a dry run

    return {name: str(path) for name, path in paths.items()}


def transform_names(job) -> set[str]:
    return {t.unique_name for t in job.proto_pipeline.components.transforms.values()}


def environment(job) -> beam_runner_api_pb2.Environment:
    (env,) = job.proto_pipeline.components.environments.values()
    assert env.urn == "beam:env:docker:v1"
    return env


def container_image(job) -> str:
    return beam_runner_api_pb2.DockerPayload.FromString(environment(job).payload).container_image


def staged(job) -> dict[str, str]:
    """Staged file name → local path, for the artifacts workers receive."""
    files = {}
    for dep in environment(job).dependencies:
        name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
            dep.role_payload).staged_name
        files[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
    return files


def modules_in_sdist(path: str) -> set[str]:
    """The sdist's modules of our packages, as paths relative to the project root."""
    with tarfile.open(path) as sdist:
        inside = [name.partition("/")[2] for name in sdist.getnames()]  # drop framematch-X/
    return {name for name in inside
            if name.endswith(".py") and name.partition("/")[0] in PACKAGES}


def test_index_job_with_setup_file_ships_every_module(build_job, dirs) -> None:
    job = build_job(index, ["--archive", dirs["archive"], "--index", dirs["index"],
                            "--setup_file", str(ROOT / "setup.py")])
    assert {"IndexArchive/ListArchive", "IndexArchive/DetectChanges", "IndexArchive/Probe",
            "IndexArchive/SpreadSegments", "IndexArchive/DecodeAndHash",
            "IndexArchive/DecodeAndHashDownloaded", "IndexArchive/Finalise", "Write_videos",
            "Write_segments",
            "Write_dead_letter"} <= transform_names(job)
    assert container_image(job).endswith("beam_python3.11_sdk:2.77.0")
    files = staged(job)
    assert "workflow.tar.gz" in files
    in_tree = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES
               for p in (ROOT / pkg).rglob("*.py")}
    assert in_tree and modules_in_sdist(files["workflow.tar.gz"]) == in_tree


@pytest.mark.parametrize("verify", [False, True])
def test_match_job_builds(build_job, dirs, verify: bool) -> None:
    job = build_job(match, ["--index", dirs["index"], "--images", dirs["images"],
                            "--out", dirs["out"], "--sdk_container_image", IMAGE,
                            *([] if verify else ["--fast"])])
    names = transform_names(job)
    assert {"ListImages", "OncePerUri", "MatchImages/Fingerprint", "MatchImages/GroupReposts",
            "MatchImages/HashVariants", "MatchImages/Search", "MatchImages/Answer",
            "Write_matches", "Write_queries", "Write_dead_letter"} <= names
    assert ("MatchImages/Verify" in names) == verify
    assert container_image(job) == IMAGE
    assert "workflow.tar.gz" not in staged(job)  # the container already holds the project


def test_stream_job_builds_as_streaming(build_job, dirs) -> None:
    job = build_job(stream, ["--index", dirs["index"], "--images", dirs["images"],
                             "--out", dirs["out"], "--sdk_container_image", IMAGE])
    assert {"Watch0", "Windows", "MatchImages/Search", "Write_matches",
            "Write_queries", "Write_dead_letter"} <= transform_names(job)
    assert job.options.view_as(StandardOptions).streaming
