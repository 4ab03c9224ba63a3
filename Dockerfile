# Custom SDK container for Dataflow (and for Flink/Spark with --environment_type=DOCKER):
# Beam's own Python 3.11 SDK image at the pinned Beam version, plus FFmpeg and framematch,
# so workers start with everything installed instead of pip-installing --setup_file's sdist
# on every worker start.
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/framematch:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/framematch:0.1.0
#   framematch index ... --runner=DataflowRunner \
#       --sdk_container_image=REGION-docker.pkg.dev/PROJECT/REPO/framematch:0.1.0
#
# Keep the tag in step with apache-beam in requirements-worker.txt: the SDK in the image must
# be the one the job is submitted with.
FROM apache/beam_python3.11_sdk:2.77.0

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/framematch
COPY requirements-worker.txt setup.py ./
COPY schemas schemas
COPY transforms transforms
COPY pipelines pipelines
COPY evaluation evaluation
# requirements-worker.txt pins (with hashes) the runtime subset of the versions the tests ran
# with (requirements-lock.txt); framematch itself goes on top without resolving anything.
RUN pip install --no-cache-dir --require-hashes -r requirements-worker.txt \
    && pip install --no-cache-dir --no-deps . \
    && python -c "import apache_beam, pipelines.index, pipelines.match, pipelines.stream" \
    && ffmpeg -hide_banner -version >/dev/null && ffprobe -hide_banner -version >/dev/null

# The entrypoint stays Beam's boot program (/opt/apache/beam/boot) from the base image.
