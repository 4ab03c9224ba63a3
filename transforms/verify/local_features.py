"""Geometric verification: does a query show (part of) a reference frame, up to a similarity?

Perceptual hashes compare whole pictures, so a rotation, an asymmetric crop or a heavy pad moves
a query far from its frame. Local features survive those edits: ORB keypoints are matched
between the query and a candidate frame (Hamming distance, Lowe's ratio test) and RANSAC fits
a *similarity* (rotation, uniform scale, shift; ``cv2.estimateAffinePartial2D``). A full
homography has eight degrees of freedom and fits chance matches too well (distractors reached
54 inliers with it); a post is a rescaled, shifted, slightly rotated copy of the frame, which
four degrees of freedom describe.

Inliers alone are not enough: false accepts sat just above low inlier thresholds, and title
cards matched other title cards through their shared letters (two cards saying "CHAPTER ONE"
and "CHAPTER TWO" agree on 160 inliers, all on one word). ``verify`` therefore also asks that
the model be plausible (scale and angle of an edit, not of a coincidence), that a good share of
the ratio-test matches agree with it, and that the inliers cover a real part of the frame
(``spread``) rather than one line of text. The thresholds come from the measurements that
``python -m tests.test_verify`` prints (real photos and video frames, edited and unrelated):
true pairs have 30+ inliers with spread >= 0.18 (except a smooth retina photo, whose corners
cluster), unrelated photos at most about 10 inliers, and title cards with a shared word up to
160 inliers but spread <= 0.09.

ORB is not mirror-invariant, so a mirrored post is verified against the features of the
mirrored query (``features(..., mirror=True)``), tried only when the upright pass fails.

Sizes: features are computed on small grey pictures. Reference frames are stored with long
side ``VERIFY_SIDE`` (``transforms.media.pictures``); queries get ``QUERY_SIDE``, larger,
and three times the features, because the frame is often only part of a query (pads, captions,
a phone screenshot where text is most of the picture). Keypoints are spread over a grid so that
text, which has the strongest corners, cannot take the whole budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from transforms.media.pictures import query_grey

N_FEATURES = 500  # per reference frame
QUERY_FEATURES = 1500  # per query (and as many again for its mirror image)
MIN_INLIERS = 25  # RANSAC inliers needed to accept
MIN_INLIER_RATIO = 0.4  # inliers / ratio-test matches needed to accept
MIN_SPREAD = 0.15  # convex hull of the inliers / reference area, needed to accept
SCALE_RANGE = (0.2, 5.0)  # plausible reference-to-query scale
MAX_ANGLE_DEG = 30.0  # plausible rotation of a post
RANSAC_THRESHOLD = 4.0  # max reprojection error of an inlier, in query pixels

_ORB_PATCH = 31  # ORB's descriptor patch; also the border where it detects nothing
_FAST_THRESHOLD = 10  # OpenCV's 20 finds too few corners on small, smooth frames
_GRID = 8  # cells along the long side for spreading keypoints out
_OVERSAMPLE = 4  # corners detected per keypoint kept, for the grid to choose from


@dataclass
class Features:
    """Keypoints (N, 2) float32 xy and ORB descriptors (N, 32) uint8 of a (w, h) grey picture.

    ``mirror`` gives the features of the horizontally flipped picture (in its own, flipped
    coordinates) when they were asked for (only queries need them). They are computed on
    first use: most queries are verified upright, and the mirror costs as much again.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]
    _mirror_source: tuple[np.ndarray, int] | None = field(default=None, repr=False,
                                                           compare=False)
    _mirror: Features | None = field(default=None, repr=False, compare=False)

    @property
    def mirror(self) -> Features | None:
        if self._mirror is None and self._mirror_source is not None:
            grey, n = self._mirror_source
            self._mirror = features(np.ascontiguousarray(grey[:, ::-1]), n)
            self._mirror_source = None
        return self._mirror


@dataclass(frozen=True)
class Verdict:
    """Outcome of ``verify``: the best similarity found and whether it counts as a match.

    ``scale`` and ``angle_deg`` map reference pixels to query pixels (of the mirrored query
    when ``flipped``); ``model`` is that similarity as a 2x3 matrix (None when no model was
    fitted). A rejected pair still reports what it got to, for diagnostics: ``matches``
    passed the ratio test, ``spread`` is the inliers' hull / reference area.
    """

    inliers: int
    scale: float
    angle_deg: float
    flipped: bool
    accepted: bool
    matches: int = 0
    spread: float = 0.0
    model: np.ndarray | None = field(default=None, repr=False, compare=False)
    clustered: bool = False  # a plausible geometry, but on too small a part of the frame

    @property
    def conclusive(self) -> bool:
        """Whether the verdict says something either way. It does not when too few features
        matched to fit any geometry (a smooth still, a featureless picture), nor when a
        plausible geometry holds on one small cluster of the frame: the rest of the frame
        may agree or not (a smooth photo's few corners bunch up; so does a shared word on
        two title cards). The hashes' word decides those."""
        return self.accepted or (self.matches >= MIN_INLIERS and not self.clustered)


def query_features(image: Image.Image) -> Features:
    """Features of a query image as ``verify`` wants them: QUERY_FEATURES, with the mirror."""
    return features(query_grey(image), QUERY_FEATURES, mirror=True)


def features(grey: np.ndarray, n: int = N_FEATURES, *, mirror: bool = False) -> Features:
    """At most ``n`` ORB features of a grey picture; with ``mirror``, also of its mirror image.

    Deterministic: corners are ranked by Harris score and spread over a grid, no sampling.
    """
    h, w = grey.shape[:2]
    orb = cv2.ORB_create(
        nfeatures=n * _OVERSAMPLE, edgeThreshold=_ORB_PATCH, patchSize=_ORB_PATCH,
        fastThreshold=_FAST_THRESHOLD,
    )
    corners = _spread_out(orb.detect(grey, None), max(w, h) / _GRID, n)
    keypoints, descriptors = orb.compute(grey, corners)
    if descriptors is None:
        points, descriptors = np.empty((0, 2), np.float32), np.empty((0, 32), np.uint8)
    else:
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    return Features(points, descriptors, (w, h), (grey, n) if mirror else None)


def _spread_out(keypoints: Sequence[cv2.KeyPoint], cell: float, n: int) -> list[cv2.KeyPoint]:
    """The ``n`` keypoints taken round-robin over grid cells, strongest first in each cell.

    Every textured cell gets its best corner before any cell gets a second one, so a frame
    inside a screenshot keeps its share of features next to crisp text.
    """
    if len(keypoints) <= n:
        return list(keypoints)
    xy = np.array([k.pt for k in keypoints])
    response = np.array([k.response for k in keypoints])
    cells = (xy[:, 1] // cell) * (_GRID + 1) + xy[:, 0] // cell
    by_cell = np.lexsort((-response, cells))
    first = np.r_[0, np.flatnonzero(np.diff(cells[by_cell])) + 1]
    rank = np.empty(len(by_cell), np.int64)
    rank[by_cell] = np.arange(len(by_cell)) - np.repeat(first, np.diff(np.r_[first, len(by_cell)]))
    keep = np.sort(np.lexsort((-response, rank))[:n])
    return [keypoints[i] for i in keep]


def verify(
    query: Features,
    reference: Features,
    *,
    min_inliers: int = MIN_INLIERS,
    ratio: float = 0.8,
    mirrored_first: bool = False,
) -> Verdict:
    """Whether ``query`` shows ``reference`` under a plausible similarity; mirrored as fallback.

    The second pass (the mirror, when ``query`` has one; or, with ``mirrored_first``, when
    the hashes already said the post is mirrored, the upright view) runs only if the first
    rejects; the verdict with more inliers is returned when both reject.
    """
    order = [(query, False), (query.mirror, True)]
    if mirrored_first and query.mirror is not None:
        order.reverse()
    verdict = _verify_once(*order[0], reference, min_inliers, ratio)
    second, flipped = order[1]
    if not verdict.accepted and second is not None:
        other = _verify_once(second, flipped, reference, min_inliers, ratio)
        if other.accepted or other.inliers > verdict.inliers:
            return other
    return verdict


def _verify_once(
    query: Features, flipped: bool, reference: Features, min_inliers: int, ratio: float
) -> Verdict:
    """One pass: ratio-test matches, a RANSAC similarity from reference to query, the checks."""
    if len(query.descriptors) < 2 or len(reference.descriptors) < 2:
        return Verdict(0, 0.0, 0.0, flipped, accepted=False)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors, reference.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < max(min_inliers, 2):  # too few even if all were inliers: skip RANSAC
        return Verdict(0, 0.0, 0.0, flipped, accepted=False, matches=len(good))
    source = reference.keypoints[[m.trainIdx for m in good]]
    target = query.keypoints[[m.queryIdx for m in good]]
    model, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_THRESHOLD,
        maxIters=2000, confidence=0.995,
    )
    if model is None:
        return Verdict(0, 0.0, 0.0, flipped, accepted=False, matches=len(good))
    inlier = mask.ravel().astype(bool)
    inliers = int(inlier.sum())
    scale = math.hypot(model[0, 0], model[1, 0])
    angle = math.degrees(math.atan2(model[1, 0], model[0, 0]))
    spread = _spread(source[inlier], _visible_area(model, query.size, reference.size))
    coherent = (
        inliers >= min_inliers
        and inliers >= MIN_INLIER_RATIO * len(good)
        and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]
        and abs(angle) <= MAX_ANGLE_DEG
    )
    accepted = coherent and spread >= MIN_SPREAD
    return Verdict(inliers, scale, angle, flipped, accepted, len(good), spread, model,
                   clustered=coherent and not accepted)


def box_agreement(verdict: Verdict, reference: Features, query: Features,
                  reference_box: tuple[float, float, float, float],
                  query_box: tuple[float, float, float, float]) -> float:
    """How well the fitted similarity maps ``reference_box`` onto ``query_box`` (both relative
    boxes: the region of the frame that was hashed, and the box of the post that matched
    it): the intersection over union of the mapped box and the query's, 0..1.

    The hashes said where the frame should be in the post (the whole post, the picture
    inside pads or a screenshot, the rows under a caption); the right frame lands there.
    A neighbouring frame of a pan or a zoom is accepted by local features too (the same
    scenery, shifted or scaled), but it lands off the box, by as much as the camera moved.
    """
    if verdict.model is None:
        return 0.0
    rw, rh = reference.size
    qw, qh = query.size
    left, top, right, bottom = reference_box
    corners = np.float32([[left * rw, top * rh], [right * rw, top * rh],
                          [right * rw, bottom * rh], [left * rw, bottom * rh]])
    mapped = cv2.transform(corners.reshape(-1, 1, 2), verdict.model).reshape(-1, 2)
    left, top, right, bottom = query_box
    if verdict.flipped:  # the model maps onto the mirrored query
        left, right = 1.0 - right, 1.0 - left
    box = np.float32([[left * qw, top * qh], [right * qw, top * qh], [right * qw, bottom * qh],
                      [left * qw, bottom * qh]])
    overlap, _ = cv2.intersectConvexConvex(mapped, box)
    union = cv2.contourArea(mapped) + cv2.contourArea(box) - overlap
    return float(overlap / union) if union > 0 else 0.0


PHOTOMETRIC_SIDE = 160  # long side the query is compared at, pixel by pixel


def photometric_distance(query: np.ndarray, reference: np.ndarray, reference_side: int,
                         verdict: Verdict) -> float:
    """How different the query looks from a stored frame laid onto it by ``verdict``'s
    similarity, pixel by pixel: the mean absolute difference of the two, each normalised
    to zero mean and unit deviation over where they overlap (so a brightness, contrast or
    colour edit costs nothing) after a light blur (so JPEG and resizing cost little).

    ``query`` is the query's grey picture (the one its features were computed on);
    ``reference`` a stored frame's grey picture at any size, ``reference_side`` the long
    side of the picture the model was fitted to. Frames of one fixed shot share one
    geometry, so this tells apart moments that local features cannot: a static camera
    whose only change is a passing car, a hold with a moving face.
    """
    if verdict.model is None:
        return math.inf
    if verdict.flipped:
        query = np.ascontiguousarray(query[:, ::-1])
    q_scale = PHOTOMETRIC_SIDE / max(query.shape)
    size = (max(1, round(query.shape[1] * q_scale)), max(1, round(query.shape[0] * q_scale)))
    small = cv2.resize(query, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    r_scale = max(reference.shape) / reference_side
    to_query = np.vstack([verdict.model, [0.0, 0.0, 1.0]])
    model = (np.diag([q_scale, q_scale, 1.0]) @ to_query
             @ np.diag([1 / r_scale, 1 / r_scale, 1.0]))[:2]
    laid = cv2.warpAffine(reference.astype(np.float32), model, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(reference.shape, np.uint8), model, size,
                            flags=cv2.INTER_NEAREST)
    inside = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    if inside.sum() < 0.05 * inside.size:
        return math.inf
    a = cv2.GaussianBlur(small, (0, 0), 1.0)[inside]
    b = cv2.GaussianBlur(laid, (0, 0), 1.0)[inside]
    a = (a - a.mean()) / (a.std() + 1e-6)
    b = (b - b.mean()) / (b.std() + 1e-6)
    return float(np.abs(a - b).mean())


def _visible_area(model: np.ndarray, query_size: tuple[int, int],
                  reference_size: tuple[int, int]) -> float:
    """Area of the part of the reference that the query shows, under the model (reference →
    query): the query's rectangle mapped back, clipped to the reference's rectangle. A crop
    shows only part of the frame, and only that part can hold inliers."""
    w, h = query_size
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    mapped = cv2.transform(corners, cv2.invertAffineTransform(model)).reshape(-1, 2)
    rw, rh = reference_size
    frame = np.float32([[0, 0], [rw, 0], [rw, rh], [0, rh]])
    area, _ = cv2.intersectConvexConvex(mapped, frame)
    return float(area)


def _spread(points: np.ndarray, visible_area: float) -> float:
    """Area of the convex hull of ``points`` as a fraction of the visible reference area.

    A line of text gives a thin hull (small area) however many inliers it has; a real view of
    a frame spreads its inliers over a good part of what it shows.
    """
    if len(points) < 3 or visible_area <= 0:
        return 0.0
    hull = cv2.convexHull(points.astype(np.float32))
    return min(1.0, float(cv2.contourArea(hull)) / visible_area)
