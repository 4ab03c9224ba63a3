"""framematch: trace posted images back to the frame of the archive video they came from.

This file is also what Beam ships to remote workers (``--setup_file ./setup.py``), so the
runtime requirements here are the ones a Dataflow or Flink worker installs.
"""

from setuptools import find_packages, setup

setup(
    name="framematch",
    version="0.1.0",
    description="Match posted images to the video frame they came from, with Apache Beam.",
    python_requires=">=3.11",
    packages=find_packages(include=["schemas*", "transforms*", "pipelines*", "evaluation*"]),
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "ffmpeg-python==0.2.0",
        "imagehash==4.3.2",
        "google-cloud-storage>=2.14,<4",
        "pyarrow>=14",
        "pdqhash==0.2.8",
        "numpy>=1.26",
        "pillow>=10.1",
        "scipy>=1.11",
        "opencv-python-headless>=4.8",  # local-feature verification (match --verify)
        "duckdb>=1.0",  # framematch sql / report / verdict
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "ruff", "scikit-video==1.1.11",
                 "scikit-image", "gcp-storage-emulator", "wheel"],
        "bench": ["faiss-cpu"],
    },
    entry_points={"console_scripts": ["framematch=pipelines.cli:main"]},
)
