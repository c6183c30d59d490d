"""A synthetic chest-CT data set: the kit's embedded default, needing no download.

Axial slices drawn from scratch with numpy and OpenCV; positive slices (label 1, "COVID") carry
ground-glass-like lesions whose boolean mask is known, so Grad-CAM maps can be scored against
them (:func:`ctlib.explain.score_cams`). The label never touches anatomy, framing or noise, the
pixels are seeded per patient and slice, and patients come in balanced pairs. Entry points:
:func:`generate`, :func:`write_synthetic`, :func:`render_patient`. See docs/DEVELOPERS.md,
*The synthetic set*.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

__all__ = [
    "SYNTHETIC_VERSION",
    "SyntheticConfig",
    "SyntheticSlice",
    "generate",
    "load_mask",
    "render_patient",
    "write_synthetic",
]

logger = logging.getLogger(__name__)

SYNTHETIC_VERSION = "1.1"
"""Version of the generator; bump it whenever the pixels for a given config change."""

# Tags of the independent random streams. Keys always have four entries:
# SeedSequence pads with zeros, so [s, 1] and [s, 1, 0] would otherwise collide.
_ANATOMY, _SLICE, _LESION_PATIENT, _LESION_SLICE, _LABEL = 1, 2, 3, 4, 5

# A positive slice shows at least this much lesion (pixels, fraction of lung pixels);
# its lesions are re-drawn (up to 8 times) otherwise.
_MIN_LESION_PIXELS = 20
_MIN_LESION_FRACTION = 0.004

FRAME_COLUMNS = [
    "path",
    "mask_path",
    "label",
    "patient_id",
    "slice_index",
    "width",
    "height",
    "lesion_pixels",
]


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise ValueError(
            f"SyntheticConfig.{name}={value!r}; expected a pair (lo, hi) with "
            f"{low} <= lo <= hi <= {high}."
        )


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. The defaults give 80 patients, about 200 slices.

    Attributes:
        n_patients: number of patients; half are positive (pairs of patients, one
            positive each, so an odd count has one extra patient of either class).
        slices_per_patient: inclusive range of slices per patient; slices of one
            patient share the body and vary the lungs slightly, as adjacent slices do.
        seed: base seed; any non-negative integer.
        width_range: inclusive range of image widths in pixels.
        height_range: inclusive range of image heights in pixels.
        body_aspect_range: range of the body's width/height ratio.
        fill_range: range of the fraction of the frame width the body spans (about 1:
            body fills the frame; smaller: black margins), the same for both classes.
        lesions_per_slice: inclusive range of lesions a positive patient has; each
            positive slice shows a non-empty subset of them.
        lesion_contrast: range of a lesion's peak intensity rise above the lung, in
            grey levels (ground-glass opacities are faint; consolidations denser).
        mask_threshold: a pixel belongs to the lesion mask where the lesion raises
            the intensity by at least this many grey levels (before noise and blur),
            inside the lung.
        noise_sigma: range of the standard deviation of the Gaussian noise.
        blur_sigma: range of the Gaussian blur applied before the noise, in pixels.
    """

    n_patients: int = 80
    slices_per_patient: tuple[int, int] = (1, 4)
    seed: int = 0
    width_range: tuple[int, int] = (180, 520)
    height_range: tuple[int, int] = (120, 420)
    body_aspect_range: tuple[float, float] = (1.0, 1.6)
    fill_range: tuple[float, float] = (0.72, 0.98)
    lesions_per_slice: tuple[int, int] = (1, 4)
    lesion_contrast: tuple[float, float] = (40.0, 90.0)
    mask_threshold: float = 15.0
    noise_sigma: tuple[float, float] = (2.5, 5.0)
    blur_sigma: tuple[float, float] = (0.6, 1.0)

    def __post_init__(self) -> None:
        if isinstance(self.n_patients, bool) or not isinstance(self.n_patients, int):
            raise ValueError(f"SyntheticConfig.n_patients={self.n_patients!r}; expected an int.")
        if self.n_patients < 1:
            raise ValueError(f"SyntheticConfig.n_patients={self.n_patients}; expected >= 1.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"SyntheticConfig.seed={self.seed!r}; expected an int >= 0.")
        _check_range("slices_per_patient", self.slices_per_patient, 1, 1000)
        _check_range("width_range", self.width_range, 64, 4096)
        _check_range("height_range", self.height_range, 64, 4096)
        _check_range("body_aspect_range", self.body_aspect_range, 0.5, 3.0)
        _check_range("fill_range", self.fill_range, 0.3, 1.0)
        _check_range("lesions_per_slice", self.lesions_per_slice, 1, 20)
        _check_range("lesion_contrast", self.lesion_contrast, 1.0, 200.0)
        _check_range("noise_sigma", self.noise_sigma, 0.0, 50.0)
        _check_range("blur_sigma", self.blur_sigma, 0.0, 10.0)
        if not 0.0 < self.mask_threshold < self.lesion_contrast[0]:
            raise ValueError(
                f"SyntheticConfig.mask_threshold={self.mask_threshold}; expected "
                f"0 < threshold < lesion_contrast[0]={self.lesion_contrast[0]}, otherwise "
                "the faintest lesions would have empty masks."
            )


@dataclass(frozen=True, eq=False)
class SyntheticSlice:
    """One rendered slice (compared by identity: it holds arrays).

    Attributes:
        image: uint8 (H, W) grey image.
        mask: bool (H, W) lesion mask; all False for label 0.
        label: 1 (COVID, lesions) or 0 (no lesions).
        patient_id: e.g. ``"synth-0007"``.
        slice_index: 0-based slice number within the patient.
        lungs: bool (H, W) lung mask (both lungs), for scoring heat maps inside the
            lungs; kept in memory only, ``write_synthetic`` does not save it.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    patient_id: str
    slice_index: int
    lungs: np.ndarray | None = None


# --------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class _Lung:
    """A lung in body-normalised coordinates (body ellipse = unit circle)."""

    cu: float
    cv: float
    ru: float
    rv: float
    wobble: tuple[tuple[float, float], ...]  # (amplitude, phase) for harmonics 2, 3, 4


@dataclass(frozen=True)
class _Anatomy:
    """Per-patient geometry and intensities, drawn from the label-blind stream."""

    width: int
    height: int
    n_slices: int
    cx: float
    cy: float
    a: float  # body half-width in pixels
    b: float  # body half-height in pixels
    back: float  # the back is flat below v = back
    body_wobble: tuple[tuple[float, float], ...]
    tissue: float
    rim: float  # extra brightness of the skin rim (0: none)
    lung_level: float
    heart_level: float
    bone_level: float
    lungs: tuple[_Lung, _Lung]
    heart: tuple[float, float, float, float]  # cu, cv, ru, rv
    n_ribs: int
    table: bool
    noise: float
    blur: float


def _seed_key(config: SyntheticConfig, stream: int, index: int, k: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, stream, index, k]))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _wobble(rng: np.random.Generator, amplitude: float) -> tuple[tuple[float, float], ...]:
    return tuple(
        (float(rng.uniform(-amplitude, amplitude)), float(rng.uniform(0, 2 * math.pi)))
        for _ in range(3)
    )


def _anatomy(config: SyntheticConfig, patient_index: int) -> _Anatomy:
    """Draw a patient's geometry. Never sees the label, so sizes cannot leak it."""
    rng = _seed_key(config, _ANATOMY, patient_index)
    width = int(rng.integers(config.width_range[0], config.width_range[1] + 1))
    n_slices = int(rng.integers(config.slices_per_patient[0], config.slices_per_patient[1] + 1))
    aspect = _uniform(rng, config.body_aspect_range)
    fill = _uniform(rng, config.fill_range)
    frame_ratio = float(rng.uniform(0.85, 1.15))  # frame height / body height
    a = 0.5 * fill * width
    b = a / aspect
    height = int(
        round(
            min(max(2 * b * frame_ratio / 0.97 + 4, config.height_range[0]), config.height_range[1])
        )
    )
    # If the height range clips the frame, shrink the body to fit (keeping its aspect).
    shrink = min(1.0, 0.49 * height / b)
    a, b = a * shrink, b * shrink
    cx = 0.5 * width + float(rng.uniform(-1, 1)) * max(0.0, 0.5 * width - a) * 0.6
    cy = 0.5 * height + float(rng.uniform(-1, 1)) * max(0.0, 0.5 * height - b) * 0.6

    def lung(side: float, scale: float) -> _Lung:
        return _Lung(
            cu=side * float(rng.uniform(0.40, 0.47)),
            cv=float(rng.uniform(-0.06, 0.04)),
            ru=scale * float(rng.uniform(0.30, 0.36)),
            rv=scale * float(rng.uniform(0.56, 0.66)),
            wobble=_wobble(rng, 0.05),
        )

    # Image left = patient's right lung (larger); image right = left lung (heart side).
    lungs = (lung(-1.0, 1.0), lung(+1.0, float(rng.uniform(0.88, 0.97))))
    heart = (
        float(rng.uniform(0.04, 0.12)),
        float(rng.uniform(-0.12, 0.0)),
        float(rng.uniform(0.24, 0.30)),
        float(rng.uniform(0.26, 0.34)),
    )
    tissue = float(rng.uniform(110, 150))
    return _Anatomy(
        width=width,
        height=height,
        n_slices=n_slices,
        cx=cx,
        cy=cy,
        a=a,
        b=b,
        back=float(rng.uniform(0.84, 0.95)),
        body_wobble=_wobble(rng, 0.03),
        tissue=tissue,
        rim=float(rng.uniform(15, 35)) if rng.random() < 0.7 else 0.0,
        lung_level=float(rng.uniform(15, 45)),
        heart_level=tissue - float(rng.uniform(0, 20)),
        bone_level=float(rng.uniform(220, 250)),
        lungs=lungs,
        heart=heart,
        n_ribs=int(rng.integers(8, 15)),
        table=bool(rng.random() < 0.5),
        noise=_uniform(rng, config.noise_sigma),
        blur=_uniform(rng, config.blur_sigma),
    )


# --------------------------------------------------------------------------- drawing


def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(u, v), np.arctan2(v, u)


def _radius(theta: np.ndarray, wobble: tuple[tuple[float, float], ...]) -> np.ndarray:
    r = np.ones_like(theta)
    for harmonic, (amp, phase) in enumerate(wobble, start=2):
        r += amp * np.cos(harmonic * theta + phase)
    return r


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Zero-mean, roughly unit-variance noise smooth over ``cell`` pixels."""
    h, w = shape
    low = rng.standard_normal((int(h / cell) + 3, int(w / cell) + 3)).astype(np.float32)
    big = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    return big / max(float(big.std()), 1e-6)


def _ellipse(
    canvas: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle_deg: float,
    value: float,
) -> None:
    """Fill an anti-aliased ellipse (sub-pixel centre) with ``value``, in place."""
    s = 16  # 4 fractional bits
    cv2.ellipse(
        canvas,
        (int(round(centre[0] * s)), int(round(centre[1] * s))),
        (max(1, int(round(axes[0] * s))), max(1, int(round(axes[1] * s)))),
        angle_deg,
        0,
        360,
        float(value),
        thickness=-1,
        lineType=cv2.LINE_AA,
        shift=4,
    )


@dataclass(frozen=True)
class _Frame:
    """Per-slice geometry shared by the anatomy and the lesion passes."""

    u: np.ndarray
    v: np.ndarray
    lungs: np.ndarray  # bool, both lungs
    lung_shapes: tuple[_Lung, _Lung]
    body: np.ndarray  # bool


def _render_anatomy(anat: _Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, _Frame]:
    """Clean float32 image of one slice (no lesions, no noise) and its geometry."""
    h, w = anat.height, anat.width
    xs = (np.arange(w, dtype=np.float32) + 0.5 - anat.cx) / anat.a
    ys = (np.arange(h, dtype=np.float32) + 0.5 - anat.cy) / anat.b
    u, v = np.meshgrid(xs, ys)
    rho, theta = _polar(u, v)
    r_body = _radius(theta, anat.body_wobble)
    body = (rho <= r_body) & (v <= anat.back)
    # Normalised distance to the skin, ~0 at the border (for the rim and ribs).
    depth = np.minimum(r_body - rho, (anat.back - v) * 0.8)

    img = np.zeros((h, w), np.float32)
    tissue = anat.tissue + 5.0 * _smooth_noise(rng, (h, w), 12.0)
    img[body] = tissue[body]
    if anat.rim > 0:
        rim = body & (depth < 0.025 * float(rng.uniform(0.8, 1.3)))
        img[rim] += anat.rim

    # Heart / mediastinum (grows a little towards lower slices).
    hu, hv, hru, hrv = anat.heart
    hs = float(rng.uniform(0.9, 1.1))
    heart = ((u - hu) / (hru * hs)) ** 2 + ((v - hv) / (hrv * hs)) ** 2 <= 1.0
    img[heart] = anat.heart_level + 4.0 * _smooth_noise(rng, (h, w), 8.0)[heart]
    heart_margin = ((u - hu) / (hru * hs + 0.05)) ** 2 + ((v - hv) / (hrv * hs + 0.05)) ** 2 <= 1.0

    # Lungs: wobbly ellipses, slightly varied per slice, carved by the heart.
    shapes = []
    lungs = np.zeros((h, w), bool)
    for lung in anat.lungs:
        scale = float(rng.uniform(0.92, 1.05))
        shape = _Lung(
            cu=lung.cu + float(rng.uniform(-0.02, 0.02)),
            cv=lung.cv + float(rng.uniform(-0.02, 0.02)),
            ru=lung.ru * scale,
            rv=lung.rv * scale,
            wobble=lung.wobble,
        )
        shapes.append(shape)
        lr, lt = _polar((u - shape.cu) / shape.ru, (v - shape.cv) / shape.rv)
        lungs |= lr <= _radius(lt, shape.wobble)
    lungs &= ~heart_margin & body & (depth > 0.1)
    lung_tex = anat.lung_level + 4.0 * _smooth_noise(rng, (h, w), 5.0)
    img[lungs] = lung_tex[lungs]

    # Vessels: bright dots and short streaks inside both lungs (both classes).
    vessels = np.zeros((h, w), np.float32)
    unit = min(anat.a, anat.b)
    for shape in shapes:
        n_vessels = int(rng.integers(10, 30))
        for _ in range(n_vessels):
            # Denser towards the hilum (medial side).
            ang = float(rng.uniform(-math.pi, math.pi))
            rad = float(rng.beta(1.5, 1.8)) * 0.9
            pu = shape.cu + rad * shape.ru * math.cos(ang)
            pv = shape.cv + rad * shape.rv * math.sin(ang)
            size = unit * float(rng.uniform(0.008, 0.022)) * (1.4 - 0.6 * rad)
            elong = 1.0 if rng.random() < 0.6 else float(rng.uniform(1.5, 3.5))
            direction = math.degrees(math.atan2(pv - shape.cv, pu - shape.cu))
            _ellipse(
                vessels,
                (anat.cx + pu * anat.a, anat.cy + pv * anat.b),
                (max(0.8, size * elong), max(0.8, size)),
                direction,
                float(rng.uniform(70, 150)),
            )
    img += vessels * lungs

    # Spine: vertebral body, canal, posterior arch and spinous process.
    bone = np.zeros((h, w), np.float32)
    canal = np.zeros((h, w), np.float32)
    rs = unit * float(rng.uniform(0.10, 0.13))
    sx = anat.cx + anat.a * float(rng.uniform(-0.02, 0.02))
    sy = anat.cy + anat.b * float(rng.uniform(0.52, 0.58))
    _ellipse(bone, (sx, sy), (rs * 1.05, rs * 0.95), 0, 1.0)
    _ellipse(bone, (sx, sy + 1.6 * rs), (rs * 0.85, rs * 0.75), 0, 1.0)
    _ellipse(bone, (sx, sy + 2.5 * rs), (rs * 0.22, rs * 0.55), 0, 1.0)
    _ellipse(canal, (sx, sy + 1.55 * rs), (rs * 0.45, rs * 0.4), 0, 1.0)
    # Aorta beside the spine (medium grey, like the heart).
    _ellipse(canal, (sx + 0.9 * rs * 1.6, sy - 1.1 * rs), (0.75 * rs, 0.75 * rs), 0, -1.0)

    # Ribs: small bright ellipses along the inner border, spine and sternum excluded.
    offset = float(rng.uniform(-0.1, 0.1))
    angles = np.linspace(-math.pi, math.pi, anat.n_ribs, endpoint=False) + offset
    angles += rng.uniform(-0.08, 0.08, size=anat.n_ribs)
    for ang in angles:
        if abs(math.remainder(ang + math.pi / 2, 2 * math.pi)) < 0.35:  # sternum (top)
            continue
        if abs(math.remainder(ang - math.pi / 2, 2 * math.pi)) < 0.45:  # spine (bottom)
            continue
        rr = float(_radius(np.array([ang]), anat.body_wobble)[0]) - float(rng.uniform(0.07, 0.11))
        px, py = anat.cx + rr * anat.a * math.cos(ang), anat.cy + rr * anat.b * math.sin(ang)
        if (py - anat.cy) / anat.b > anat.back - 0.06:
            continue
        tangent = math.degrees(math.atan2(anat.b * math.cos(ang), -anat.a * math.sin(ang)))
        long_axis = unit * float(rng.uniform(0.04, 0.07))
        _ellipse(bone, (px, py), (long_axis, unit * float(rng.uniform(0.018, 0.028))), tangent, 1.0)
    if rng.random() < 0.7:  # sternum
        _ellipse(bone, (anat.cx, anat.cy - anat.b * 0.9), (unit * 0.07, unit * 0.03), 0, 1.0)

    bone = np.clip(bone, 0, 1) * body
    img = img * (1 - bone) + (anat.bone_level + 6.0 * _smooth_noise(rng, (h, w), 3.0)) * bone
    canal = np.clip(canal, -1, 1) * body
    cord = np.clip(canal, 0, 1)
    img = img * (1 - cord) + (anat.tissue - 40) * cord
    aorta = np.clip(-canal, 0, 1)
    img = img * (1 - aorta) + (anat.heart_level + 8) * aorta

    if anat.table:  # the scanner table: a bright thin arc under the body
        ty = anat.cy + anat.b * (anat.back + float(rng.uniform(0.08, 0.14)))
        table = np.zeros((h, w), np.float32)
        cv2.ellipse(
            table,
            (int(round(anat.cx * 16)), int(round((ty - 2 * anat.b) * 16))),
            (int(round(anat.a * 2.2 * 16)), int(round(2 * anat.b * 16))),
            0,
            62,
            118,
            1.0,
            thickness=max(1, int(unit * 0.02)),
            lineType=cv2.LINE_AA,
            shift=4,
        )
        img = np.maximum(img, 170.0 * table * (~body))

    frame = _Frame(u=u, v=v, lungs=lungs, lung_shapes=(shapes[0], shapes[1]), body=body)
    return img, frame


@dataclass(frozen=True)
class _Lesion:
    """A lesion prototype, in lung-relative coordinates (lung ellipse = unit circle)."""

    side: int
    p: float
    q: float
    size: float  # radius as a fraction of the lung's mean half-axis
    contrast: float
    n_lobes: int


def _lesion_prototypes(config: SyntheticConfig, patient_index: int) -> list[_Lesion]:
    rng = _seed_key(config, _LESION_PATIENT, patient_index)
    n = int(rng.integers(config.lesions_per_slice[0], config.lesions_per_slice[1] + 1))
    lesions = []
    for _ in range(n):
        side = int(rng.integers(2))
        # Peripheral and posterior: angle near lateral-posterior, radius far out.
        lateral_posterior = math.atan2(0.8, -0.6 if side == 0 else 0.6)
        if rng.random() < 0.75:
            ang = float(rng.vonmises(lateral_posterior, 1.5))
        else:
            ang = float(rng.uniform(-math.pi, math.pi))
        rad = float(rng.uniform(0.35, 0.75))
        lesions.append(
            _Lesion(
                side=side,
                p=rad * math.cos(ang),
                q=rad * math.sin(ang),
                size=float(rng.uniform(0.18, 0.45)),
                contrast=_uniform(rng, config.lesion_contrast),
                n_lobes=int(rng.integers(2, 5)),
            )
        )
    return lesions


def _render_lesions(
    anat: _Anatomy,
    frame: _Frame,
    prototypes: list[_Lesion],
    rng: np.random.Generator,
    pull: float = 1.0,
) -> np.ndarray:
    """Float32 field of intensity rise due to lesions (already restricted to the lungs).

    ``pull`` < 1 moves the lesions toward the lung centre (used when a slice's lung is
    too small for the patient's peripheral lesions).
    """
    h, w = anat.height, anat.width
    keep = rng.random(len(prototypes)) < 0.7
    keep[int(rng.integers(len(prototypes)))] = True  # at least one lesion per slice
    field = np.zeros((h, w), np.float32)
    texture = 1.0 + 0.2 * _smooth_noise(rng, (h, w), 4.0) + 0.1 * _smooth_noise(rng, (h, w), 1.5)
    for proto, on in zip(prototypes, keep, strict=True):
        if not on:
            continue
        lung = frame.lung_shapes[proto.side]
        # Adjacent slices: the lesion drifts and changes size a little.
        p = pull * proto.p + float(rng.uniform(-0.06, 0.06))
        q = pull * proto.q + float(rng.uniform(-0.06, 0.06))
        radius = proto.size * float(rng.uniform(0.75, 1.2))
        # Pixel coordinates of the lesion centre; radius in pixels.
        px = anat.cx + (lung.cu + p * lung.ru) * anat.a
        py = anat.cy + (lung.cv + q * lung.rv) * anat.b
        r_px = radius * 0.5 * (lung.ru * anat.a + lung.rv * anat.b)
        lesion = np.zeros((h, w), np.float32)
        # Only touch the bounding box: lesions are small.
        x0, x1 = max(0, int(px - 2 * r_px)), min(w, int(px + 2 * r_px) + 1)
        y0, y1 = max(0, int(py - 2 * r_px)), min(h, int(py + 2 * r_px) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        box = np.zeros((y1 - y0, x1 - x0), np.float32)
        for lobe in range(proto.n_lobes):
            if lobe == 0:
                ox, oy, rl = 0.0, 0.0, r_px
            else:
                ang = float(rng.uniform(-math.pi, math.pi))
                dist = float(rng.uniform(0.3, 0.7)) * r_px
                ox, oy, rl = (
                    dist * math.cos(ang),
                    dist * math.sin(ang),
                    r_px * float(rng.uniform(0.45, 0.8)),
                )
            stretch = float(rng.uniform(0.7, 1.3))
            d2 = ((xx - px - ox) / (rl * stretch)) ** 2 + ((yy - py - oy) / (rl / stretch)) ** 2
            # Compact soft profile: 1 at the centre, 0 (with zero slope) at d = 1.
            box = np.maximum(box, np.clip(1.0 - d2, 0.0, 1.0) ** 1.5)
        lesion[y0:y1, x0:x1] = box
        field = np.maximum(field, proto.contrast * lesion)
    return field * texture * frame.lungs


def _finish(img: np.ndarray, anat: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Blur, add noise, clip and quantise to uint8."""
    if anat.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=anat.blur)
    img = img + anat.noise * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- public API


def patient_label(config: SyntheticConfig, patient_index: int) -> int:
    """The label of a patient: one positive in each pair ``(2k, 2k + 1)``.

    Args:
        config: the generator configuration (only ``seed`` matters).
        patient_index: 0-based patient number.

    Returns:
        1 (COVID, lesions) or 0.
    """
    pair = patient_index // 2
    first_is_positive = int(_seed_key(config, _LABEL, pair).integers(2))
    return first_is_positive if patient_index % 2 == 0 else 1 - first_is_positive


def render_patient(
    config: SyntheticConfig, patient_index: int, label: int | None = None
) -> list[SyntheticSlice]:
    """Render all slices of one synthetic patient.

    Args:
        config: the generator configuration.
        patient_index: 0-based patient number, ``0 <= patient_index < config.n_patients``.
        label: force the class instead of the patient's own (``None``). The anatomy,
            framing and noise are the same either way, so ``label=0`` and ``label=1``
            give a counterfactual pair that differs only by the lesions.

    Returns:
        The patient's slices, ``slice_index`` 0, 1, ...

    Example:
        >>> slices = render_patient(SyntheticConfig(n_patients=4), 1)
        >>> slices[0].patient_id
        'synth-0001'
    """
    if not 0 <= patient_index < config.n_patients:
        raise ValueError(
            f"patient_index={patient_index} is outside 0..{config.n_patients - 1} "
            f"(config.n_patients={config.n_patients})."
        )
    if label is None:
        label = patient_label(config, patient_index)
    elif label not in (0, 1):
        raise ValueError(f"label={label!r}; expected 0, 1 or None (the patient's own label).")
    anat = _anatomy(config, patient_index)
    prototypes = _lesion_prototypes(config, patient_index) if label == 1 else []
    patient_id = f"synth-{patient_index:04d}"
    slices = []
    for k in range(anat.n_slices):
        rng = _seed_key(config, _SLICE, patient_index, k)
        img, frame = _render_anatomy(anat, rng)
        mask = np.zeros(img.shape, bool)
        if prototypes:
            lesion_rng = _seed_key(config, _LESION_SLICE, patient_index, k)
            # Re-draw when the lesions shown fall mostly outside the lung (a few pixels
            # would be label noise); keep the largest draw if none is big enough.
            min_pixels = max(_MIN_LESION_PIXELS, _MIN_LESION_FRACTION * frame.lungs.sum())
            best_field, best_mask = None, mask
            for attempt in range(8):  # later attempts pull the lesions toward the lung centre
                field = _render_lesions(anat, frame, prototypes, lesion_rng, 1.0 - attempt / 8)
                mask = (field >= config.mask_threshold) & frame.lungs
                if best_field is None or mask.sum() > best_mask.sum():
                    best_field, best_mask = field, mask
                if mask.sum() >= min_pixels:
                    break
            field, mask = best_field, best_mask
            if not mask.any():
                raise RuntimeError(
                    f"Could not place a lesion inside the lungs of {patient_id} slice {k}; "
                    "this is a bug in ctlib.data.synthetic, please report it with the config."
                )
            img = img + field
        image = _finish(img, anat, rng)
        slices.append(SyntheticSlice(image, mask, int(label), patient_id, k, frame.lungs))
    return slices


def generate(
    config: SyntheticConfig = SyntheticConfig(), progress: bool = False
) -> Iterator[SyntheticSlice]:
    """Yield every slice of the data set, patient by patient.

    Args:
        config: the generator configuration.
        progress: show a progress bar over patients.

    Yields:
        Slices in the order (patient 0, slice 0), (patient 0, slice 1), ...
    """
    for index in tqdm(
        range(config.n_patients), desc="synthetic CT", unit="patient", disable=not progress
    ):
        yield from render_patient(config, index)


def load_mask(path: str | Path) -> np.ndarray:
    """Read a lesion mask PNG written by :func:`write_synthetic`.

    Args:
        path: a file under ``<dest>/masks``.

    Returns:
        bool (H, W) array, True on lesion pixels.
    """
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def _write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def _config_payload(config: SyntheticConfig) -> dict:
    payload = {
        # the generator's name as written into existing sets (kept: a new name would make
        # every cached set look foreign)
        "generator": "ctlib.synthetic",
        "version": SYNTHETIC_VERSION,
        "config": asdict(config),
    }
    return json.loads(json.dumps(payload))  # tuples -> lists, as read back from disk


def _read_existing(dest: Path, expected: dict) -> pd.DataFrame:
    config_file, labels_file = dest / "config.json", dest / "labels.csv"
    fix = f"Use another folder, or delete {dest} to regenerate it."
    if not config_file.is_file() or not labels_file.is_file():
        raise ValueError(
            f"{dest} exists but is not a complete synthetic data set (config.json or "
            f"labels.csv missing). {fix}"
        )
    try:
        found = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_file} is not valid JSON ({err}). {fix}") from err
    if found != expected:
        raise ValueError(
            f"{dest} holds a synthetic data set made with a different configuration or "
            f"generator version:\n  found:    {found}\n  expected: {expected}\n{fix}"
        )
    frame = pd.read_csv(
        labels_file,
        dtype={
            "path": str,
            "mask_path": str,
            "label": "int64",
            "patient_id": str,
            "slice_index": "int64",
            "width": "int64",
            "height": "int64",
            "lesion_pixels": "int64",
        },
    )
    if list(frame.columns) != FRAME_COLUMNS:
        raise ValueError(
            f"{labels_file} has columns {list(frame.columns)}, expected {FRAME_COLUMNS}. {fix}"
        )
    frame["path"] = [str(dest / p) for p in frame["path"]]
    frame["mask_path"] = [str(dest / p) for p in frame["mask_path"]]
    missing = [p for p in (*frame["path"], *frame["mask_path"]) if not os.path.isfile(p)]
    if missing:
        raise ValueError(
            f"{dest} is incomplete: {len(missing)} files missing, e.g. {missing[0]}. {fix}"
        )
    return frame


def write_synthetic(
    dest: str | Path, config: SyntheticConfig = SyntheticConfig(), progress: bool = True
) -> pd.DataFrame:
    """Write the data set to ``dest`` (or reuse it if already there) and return its frame.

    Layout: ``images/<patient_id>_s<k>.png``, ``masks/<same>.png`` (0/255),
    ``labels.csv`` (paths relative to ``dest``, so the folder can be moved) and
    ``config.json`` (the config and ``SYNTHETIC_VERSION``). Everything is built in a
    sibling temporary folder and renamed into place, so an interrupted run never
    leaves a half-written ``dest``.

    Args:
        dest: the folder to create.
        config: the generator configuration.
        progress: show a progress bar.

    Returns:
        One row per slice with columns ``path`` and ``mask_path`` (absolute), ``label``,
        ``patient_id``, ``slice_index``, ``width``, ``height``, ``lesion_pixels``.

    Raises:
        ValueError: ``dest`` exists but holds something else (another config or
            generator version, or an incomplete folder).
    """
    dest = Path(dest).expanduser().absolute()
    expected = _config_payload(config)
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()  # an empty folder is as good as none
    if dest.exists():
        logger.info("Reusing synthetic data set at %s", dest)
        return _read_existing(dest, expected)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an earlier process with our pid that was killed
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "masks").mkdir()
        rows = []
        for s in generate(config, progress=progress):
            name = f"{s.patient_id}_s{s.slice_index}.png"
            _write_png(tmp / "images" / name, s.image)
            _write_png(tmp / "masks" / name, s.mask.astype(np.uint8) * 255)
            rows.append(
                (
                    f"images/{name}",
                    f"masks/{name}",
                    s.label,
                    s.patient_id,
                    s.slice_index,
                    s.image.shape[1],
                    s.image.shape[0],
                    int(s.mask.sum()),
                )
            )
        pd.DataFrame(rows, columns=FRAME_COLUMNS).to_csv(tmp / "labels.csv", index=False)
        (tmp / "config.json").write_text(json.dumps(expected, indent=2) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.exists():
                raise
            # Another process finished first: use its folder if it matches.
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("Wrote %d synthetic slices to %s", len(rows), dest)
    return _read_existing(dest, expected)
