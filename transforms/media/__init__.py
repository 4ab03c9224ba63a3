"""Pixels in: FFmpeg decoding of archive videos, intake of posted images, stills for people.

``preprocess`` is the one path from pixels to hash inputs (the canonical thumbnail, boxes,
the flat test); ``pictures`` the grey pictures local-feature verification compares.
May import: ``transforms.io``, ``schemas``.
"""
