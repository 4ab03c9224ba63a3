"""Anonymous, instant Cloud Storage access when ``STORAGE_EMULATOR_HOST`` points at an emulator.

Why: with no Google credentials on the machine, Beam's gcsio asks ``google.auth.default``
and retries it with exponential back-off (``_Credentials._get_credentials_with_retrys``:
4 retries from 2 s) before it gives up and connects anonymously. That costs ~21 s in
*every* process that first touches ``gs://``: the launcher and each multi-process SDK
worker. An emulator needs no credentials at all, so under an emulator we resolve Beam's
process-wide credential cache to ``None`` up front; ``gcsio.create_storage_client`` then
builds ``storage.Client.create_anonymous_client()``, which google-cloud-storage points at
``STORAGE_EMULATOR_HOST``.

The hook is private Beam API (``apache_beam.internal.gcp.auth._Credentials``: a lock, an
"initialised" flag and the cached value), read from the Beam 2.77.0 source. It is pinned:
on any other Beam version, or if the attributes are gone, this fails loudly instead of
silently paying the delay (or worse, silently doing nothing). Beam has no public switch:
``--no_auth`` only affects the Dataflow API client, not gcsio.

Where it runs: nowhere by import. The jobs apply it explicitly when they build their
options (``pipelines.options``), which covers the launcher and the embedded runner's
in-process workers; the tests' emulator fixture applies it for the test process. Worker
processes of other runners (``--workers N``, portable, Dataflow) never talk to an emulator
in this project's tests and are left alone: on real Cloud Storage they use real credentials.
"""

from __future__ import annotations

import os

import apache_beam
from apache_beam.internal.gcp import auth

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
_CLIENTS: dict[str | None, object] = {}  # by emulator endpoint (None: real Cloud Storage)
WRITTEN_FOR_BEAM = "2.77.0"
_PRIVATE_ATTRIBUTES = ("_credentials_lock", "_credentials_init", "_credentials")


def use_anonymous_credentials_for_emulator() -> bool:
    """Make this process's Beam GCS clients anonymous if an emulator is configured.

    Returns True when the shim was applied, False when ``STORAGE_EMULATOR_HOST`` is unset
    (real Cloud Storage: credentials are left to Beam). Idempotent. The effect lasts for
    the life of the process, as Beam's own credential cache does.

    Raises:
        RuntimeError: Beam is not the version this was written for, or its private
            credential cache no longer has the expected shape.
    """
    if not os.environ.get(EMULATOR_ENV):
        return False
    if apache_beam.__version__ != WRITTEN_FOR_BEAM:
        raise RuntimeError(
            f"transforms.io.gcs_auth patches private Beam {WRITTEN_FOR_BEAM} internals but Beam "
            f"{apache_beam.__version__} is installed: re-read apache_beam/internal/gcp/auth.py "
            "and update the shim and WRITTEN_FOR_BEAM.")
    cache = auth._Credentials
    missing = [name for name in _PRIVATE_ATTRIBUTES if not hasattr(cache, name)]
    if missing:
        raise RuntimeError(f"apache_beam.internal.gcp.auth._Credentials lacks {missing}")
    with cache._credentials_lock:
        cache._credentials = None
        cache._credentials_init = True
    return True



def storage_client():
    """This process's google-cloud-storage client, for what Beam's ``FileSystems`` cannot
    do: writes with a precondition (``transforms.io.storage.create_exclusive``). Anonymous
    under an emulator (google-cloud-storage points itself at ``STORAGE_EMULATOR_HOST``),
    the application default credentials otherwise."""
    endpoint = os.environ.get(EMULATOR_ENV)
    if endpoint not in _CLIENTS:
        from google.cloud import storage

        _CLIENTS[endpoint] = (storage.Client.create_anonymous_client() if endpoint
                              else storage.Client())
    return _CLIENTS[endpoint]
