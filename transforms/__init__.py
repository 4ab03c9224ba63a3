"""Reusable Beam steps and the plain functions behind them."""

# Imported for its effect: under a GCS emulator, Beam's GCS clients in this process
# (launcher, or a worker that unpickles any framematch step) skip a ~21 s credential hunt.
from transforms import gcs_auth  # noqa: F401, E402
