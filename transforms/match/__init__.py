"""The match job's steps: intake of posted images, the search stage, answers, re-matching.
May import: every other ``transforms`` subpackage but ``stream``, and ``schemas``.
"""
