"""Index regions: the boxes of every kept archive frame that the index hashes on their own.

A post often shows only part of a frame: a crop, or the rows that a caption laid over it
left uncovered. Its hash then meets a reference hashed over (nearly) the same part, instead
of the whole frame. Region 0 is the whole frame; the query side (``variants``) cuts its
captions at the same ``CAPTION_CUTS``, so a captioned post and a band meet.
"""

from __future__ import annotations

from transforms.media.preprocess import FULL, Box

CAPTION_CUTS = (0.15, 0.25)  # fractions of the height a caption laid over a frame may cover
WHOLE_FRAME = 0  # the region code of the whole frame


def _regions() -> dict[int, tuple[str, Box]]:
    regions = [("full", FULL), ("centre85", (0.075, 0.075, 0.925, 0.925)),
               ("centre75", (0.125, 0.125, 0.875, 0.875)),
               ("middle70", (0.0, CAPTION_CUTS[0], 1.0, 1.0 - CAPTION_CUTS[0]))]
    for cut in CAPTION_CUTS:
        keep = round(100 * (1 - cut))
        regions += [(f"top{keep}", (0.0, 0.0, 1.0, 1.0 - cut)),
                    (f"bottom{keep}", (0.0, cut, 1.0, 1.0))]
    return dict(enumerate(regions))


REGIONS = _regions()  # code -> (name, box); the code is the ``region`` column of frames
REGION_NAMES = [name for name, _ in REGIONS.values()]  # what a manifest records
REGION_BOXES = [box for _, box in REGIONS.values()]
REGION_BOX_BY_NAME = {name: box for name, box in REGIONS.values()}
