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
# Keep the tag in step with apache-beam in requirements-lock.txt: the SDK in the image must
# be the one the job is submitted with.
FROM apache/beam_python3.11_sdk:2.77.0

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/framematch
COPY requirements-lock.txt setup.py ./
COPY schemas schemas
COPY transforms transforms
COPY pipelines pipelines
COPY evaluation evaluation
# The lock pins the same versions the tests ran with; Beam itself is already in the image.
RUN pip install --no-cache-dir -c requirements-lock.txt . \
    && python -c "import apache_beam, pipelines.index, pipelines.match, pipelines.stream" \
    && ffmpeg -hide_banner -version >/dev/null && ffprobe -hide_banner -version >/dev/null

# The entrypoint stays Beam's boot program (/opt/apache/beam/boot) from the base image.
