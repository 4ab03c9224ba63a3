"""Evaluation assets: real archive footage with ground truth, and edited posted screengrabs.

Kept apart from the matching code on purpose: ``edits`` must never share code or constants
with ``transforms``, so the matcher cannot be tuned to the very edits it is judged on.
"""
