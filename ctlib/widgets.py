"""The notebooks' widgets: the CAM explorer (:func:`build_explorer`, notebook 05) and the slice
viewer (:class:`SliceViewer`, notebook 01), built from small named callbacks.

The explorer shows the paper's Grad-CAM figures (Sec. 5) live: pick an image, a trained network,
a CAM method, a layer, the class and the opacity, and see the original, the heat map mapped back
and the overlay. Each control calls one ``on_*`` method of :class:`Explorer`, so tests drive it
without a browser. Browser hooks, JupyterLab and Colab: docs/DEVELOPERS.md, *Widgets*.
"""

from __future__ import annotations

import html
import io
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import ipywidgets as widgets
import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from torch import nn

from ctlib.canvas import fit_to_canvas
from ctlib.data import CLASS_NAMES, CTDataset, read_grayscale, to_grayscale
from ctlib.explain import (
    CAM_METHODS,
    CamResult,
    cam_layer_choices,
    expand_image_paths,
    explain_image,
    fold_split,
    load_trained,
)
from ctlib.models import spec_of
from ctlib.plots import figure_png, plot_cam
from ctlib.plots.palette import ATTENTION_BACKGROUND
from ctlib.study.paper import canvas_columns

__all__ = [
    "TARGETS",
    "Explorer",
    "SliceViewer",
    "build_explorer",
    "find_checkpoints",
    "review_order",
    "uploaded_files",
]

log = logging.getLogger(__name__)

TARGETS: dict[str, int | None] = {
    "predicted": None,
    **{name: label for label, name in CLASS_NAMES.items()},
}
"""The target-class choices: label -> ``target`` of :func:`ctlib.explain.explain_image`."""

ModelSource = str | os.PathLike | nn.Module | tuple
_CACHE_SIZE = 64
_colab_enabled = False


# --------------------------------------------------------------------------- helpers


def find_checkpoints(results: str | os.PathLike[str]) -> dict[str, Path]:
    """Every ``model.pt`` under a results folder, named ``dataset/protocol/arch/foldK``."""
    root = Path(results)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Results folder {str(root)!r} does not exist; train first "
            "(python -m ctlib cv ...) or pass checkpoints=[...]."
        )
    found = {str(p.parent.relative_to(root)): p for p in sorted(root.rglob("model.pt"))}
    if not found:
        raise FileNotFoundError(f"No model.pt under {root}: no finished fold yet.")
    return found


def review_order(frame: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Images for review: misclassified first (most wrong first), then the rest in order.

    Adds ``caption`` (what the dropdown shows) and ``status`` (``wrong``, ``right`` or
    ``unknown``). ``label`` and ``prob`` are used where present.
    """
    frame = frame.reset_index(drop=True).copy()
    label = pd.to_numeric(frame.get("label", pd.Series(np.nan, index=frame.index)), errors="coerce")
    prob = pd.to_numeric(frame.get("prob", pd.Series(np.nan, index=frame.index)), errors="coerce")
    known = label.notna() & prob.notna()
    wrong = known & ((prob >= threshold).astype(float) != label)
    frame["status"] = np.where(wrong, "wrong", np.where(known, "right", "unknown"))
    badness = (prob - label).abs().where(wrong, -1.0)
    frame = frame.assign(_wrong=wrong, _bad=badness).sort_values(
        ["_wrong", "_bad"], ascending=[False, False], kind="stable"
    )
    frame = frame.drop(columns=["_wrong", "_bad"])
    names = {float(label): name for label, name in CLASS_NAMES.items()}

    def caption(row: pd.Series) -> str:
        parts = [{"wrong": "✗", "right": "✓"}.get(row["status"], "·")]
        lab = pd.to_numeric(row.get("label", np.nan), errors="coerce")
        parts.append(names.get(float(lab), "?") if pd.notna(lab) else "?")
        p = pd.to_numeric(row.get("prob", np.nan), errors="coerce")
        if pd.notna(p):
            parts.append(f"p={float(p):.2f}")
        parts.append(Path(str(row["path"])).name)
        return " ".join(parts)

    frame["caption"] = [caption(row) for _, row in frame.iterrows()]
    return frame.reset_index(drop=True)


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``(name, content)`` of the files in a ``FileUpload.value`` (ipywidgets 8 or 7)."""
    if isinstance(value, Mapping):  # ipywidgets 7: {name: {"metadata": ..., "content": bytes}}
        items = [{"name": name, **dict(item)} for name, item in value.items()]
    else:  # ipywidgets 8: ({"name": ..., "content": memoryview, ...}, ...)
        items = [dict(item) for item in (value or ())]
    return [(str(item.get("name", "upload")), bytes(item.get("content", b""))) for item in items]


def _decode(content: bytes, name: str) -> np.ndarray:

    if not content:
        raise ValueError(
            f"The upload of {name!r} arrived empty (in Colab, files of ~1 MB and more "
            "are dropped); pass such images as a folder: build_explorer(images=...)."
        )
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()
            return to_grayscale(image)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{name!r} is no image Pillow can read ({err}).") from err


def _enable_colab_widgets() -> None:
    """In Colab with ipywidgets 8, switch on Colab's custom widget manager (once)."""
    global _colab_enabled
    if _colab_enabled or "google.colab" not in sys.modules:
        return
    if int(widgets.__version__.split(".")[0]) < 8:
        return
    try:
        from google.colab import output  # type: ignore[import-not-found]  # lazy: exists only on Colab

        output.enable_custom_widget_manager()
        _colab_enabled = True
    except (ImportError, AttributeError) as err:
        log.warning(
            "Could not enable Colab's custom widget manager (%s); if the explorer does not "
            "show, run: from google.colab import output; "
            "output.enable_custom_widget_manager()",
            err,
        )


# --------------------------------------------------------------------------- the app


class Explorer(widgets.VBox):
    """The explorer app (an ``ipywidgets.VBox``) and its named callbacks.

    Args:
        models: name -> a ``model.pt`` path, ``(model, info)`` from
            :func:`ctlib.explain.load_trained`, or a kit-built ``nn.Module``. Loaded lazily.
        images: a frame with ``path`` (and ``label``, ``prob`` where known), shown in the
            order given (see :func:`review_order`); ``caption`` is used when present.
        methods: CAM method keys offered (default: all of :data:`ctlib.explain.CAM_METHODS`).
        method: the method selected first.
        alpha: the overlay opacity first set.
        panel: width of each of the three panels in inches.
        dpi: resolution of the drawn figure.

    Attributes:
        result: the :class:`ctlib.explain.CamResult` shown (None before the first draw or
            after an error).
        last_error: the message of the last error shown, else None.
    """

    def __init__(
        self,
        models: Mapping[str, ModelSource],
        images: pd.DataFrame,
        *,
        methods: Sequence[str] | None = None,
        method: str = "gradcam",
        alpha: float = 0.5,
        panel: float = 3.2,
        dpi: int = 80,
    ) -> None:
        super().__init__()
        if not models:
            raise ValueError("Explorer needs at least one trained network (models={name: path}).")
        if "path" not in images.columns or images.empty:
            raise ValueError("Explorer needs images: a non-empty frame with a 'path' column.")
        methods = list(methods or CAM_METHODS)
        unknown = [m for m in methods + [method] if m not in CAM_METHODS]
        if unknown:
            raise ValueError(f"Unknown CAM methods {unknown}; choose from {list(CAM_METHODS)}.")
        self.sources = dict(models)
        self.images = images.reset_index(drop=True)
        self.panel, self.dpi = panel, dpi
        self.result: CamResult | None = None
        self.last_error: str | None = None
        self._models: dict[str, tuple[nn.Module, dict]] = {}
        self._uploads: dict[str, tuple[str, np.ndarray]] = {}
        self._cams: OrderedDict[tuple, CamResult] = OrderedDict()
        self._holding = False

        self.image_picker = widgets.Dropdown(
            options=self._image_options(), description="image", layout=widgets.Layout(width="460px")
        )
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.model_picker = widgets.Dropdown(
            options=list(self.sources), description="network", layout=widgets.Layout(width="460px")
        )
        labels = [CAM_METHODS[m][1] + (" (slow)" if m == "scorecam" else "") for m in methods]
        self.method_picker = widgets.Dropdown(
            options=list(zip(labels, methods)), value=method, description="method"
        )
        self.layer_picker = widgets.Dropdown(options=[], description="layer")
        self.target_picker = widgets.ToggleButtons(
            options=list(TARGETS), value="predicted", description="explain"
        )
        self.opacity_slider = widgets.FloatSlider(
            value=alpha, min=0.0, max=1.0, step=0.05, description="opacity", continuous_update=False
        )
        self.heatmap_image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.heatmap_image.add_class("ctlib-heatmap")
        self.info_html = widgets.HTML()
        self.info_html.add_class("ctlib-info")
        self.add_class("ctlib-explorer")
        for control, css in (
            (self.image_picker, "ctlib-image-picker"),
            (self.upload, "ctlib-upload"),
            (self.model_picker, "ctlib-network"),
            (self.method_picker, "ctlib-method"),
            (self.layer_picker, "ctlib-layer"),
            (self.target_picker, "ctlib-target"),
            (self.opacity_slider, "ctlib-opacity"),
        ):
            control.add_class(css)
        self.children = [
            widgets.HBox([self.image_picker, self.upload]),
            widgets.HBox([self.model_picker, self.method_picker]),
            widgets.HBox([self.layer_picker, self.opacity_slider]),
            self.target_picker,
            self.heatmap_image,
            self.info_html,
        ]
        for control, callback in (
            (self.image_picker, self.on_image_change),
            (self.upload, self.on_upload),
            (self.model_picker, self.on_model_change),
            (self.method_picker, self.on_method_change),
            (self.layer_picker, self.on_layer_change),
            (self.target_picker, self.on_target_change),
            (self.opacity_slider, self.on_opacity_change),
        ):
            control.observe(self._guarded(callback), names="value")
        self.on_model_change()

    # ---------------------------------------------------------------- callbacks

    def on_image_change(self, change: Mapping[str, Any] | None = None) -> None:
        """Another image was picked: compute and draw its CAM."""
        self.refresh()

    def on_upload(self, change: Mapping[str, Any] | None = None) -> None:
        """Files were uploaded: add them to the top of the image list and show the first."""
        files = uploaded_files(self.upload.value)
        if not files:
            return
        first = None
        try:
            for name, content in files:
                key = f"upload:{len(self._uploads)}:{name}"
                self._uploads[key] = (name, _decode(content, name))
                first = first or key
        except ValueError as err:
            self._show_error(str(err))
        if first is not None:
            with self._hold():
                self.image_picker.options = self._image_options()
                self.image_picker.value = first
            self.refresh()

    def on_model_change(self, change: Mapping[str, Any] | None = None) -> None:
        """Another network was picked: offer its layers (its CAM layer first) and redraw."""
        try:
            model, info = self.current_model()
            layers = cam_layer_choices(model, info["arch"], tuple(info["canvas"]))
        except (ValueError, RuntimeError, OSError) as err:
            self._show_error(f"Could not load {self.model_picker.value!r}: {err}")
            return
        with self._hold():
            self.layer_picker.options = layers
            self.layer_picker.value = layers[0]
        self.refresh()

    def on_method_change(self, change: Mapping[str, Any] | None = None) -> None:
        """Another CAM method was picked: recompute."""
        self.refresh()

    def on_layer_change(self, change: Mapping[str, Any] | None = None) -> None:
        """Another target layer was picked: recompute."""
        self.refresh()

    def on_target_change(self, change: Mapping[str, Any] | None = None) -> None:
        """Another class to explain was picked: recompute."""
        self.refresh()

    def on_opacity_change(self, change: Mapping[str, Any] | None = None) -> None:
        """The opacity moved: redraw the overlay (no new CAM)."""
        self.redraw()

    # ---------------------------------------------------------------- state

    def current_model(self) -> tuple[nn.Module, dict]:
        """The selected network and its info (loaded once)."""
        name = self.model_picker.value
        if name not in self._models:
            self._models[name] = _load_model(self.sources[name])
        return self._models[name]

    def current_image(self) -> tuple[np.ndarray, str]:
        """The selected image (2-D uint8) and its caption."""
        key = self.image_picker.value
        if key in self._uploads:
            name, image = self._uploads[key]
            return image, f"uploaded: {name}"
        row = self.images.iloc[int(key)]
        return read_grayscale(row["path"]), str(row.get("caption", Path(str(row["path"])).name))

    def compute(self) -> CamResult:
        """The CAM for the current choices (cached)."""
        model, info = self.current_model()
        key = (
            self.model_picker.value,
            self.image_picker.value,
            self.method_picker.value,
            self.layer_picker.value,
            self.target_picker.value,
        )
        if key not in self._cams:
            image, _ = self.current_image()
            self._cams[key] = explain_image(
                model,
                image,
                info["arch"],
                self.method_picker.value,
                TARGETS[self.target_picker.value],
                self.layer_picker.value,
                canvas=tuple(info["canvas"]),
                threshold=info["threshold"],
            )
            while len(self._cams) > _CACHE_SIZE:
                self._cams.popitem(last=False)
        self._cams.move_to_end(key)
        return self._cams[key]

    def refresh(self) -> None:
        """Compute the CAM for the current choices and draw it."""
        try:
            self.result = self.compute()
        except (ValueError, RuntimeError, OSError) as err:
            log.exception("CAM failed")
            self.result = None
            self._show_error(f"{type(err).__name__}: {err}")
            return
        self.redraw()

    def redraw(self) -> None:
        """Draw the current result: image, heat map, overlay; and the text below."""
        if self.result is None:
            return
        image, caption = self.current_image()
        figure = plot_cam(
            image,
            self.result,
            alpha=float(self.opacity_slider.value),
            title=caption,
            panel=self.panel,
        )
        self.heatmap_image.value = figure_png(figure, dpi=self.dpi)
        r = self.result
        verdict = CLASS_NAMES[int(r.predicted)]
        self.last_error = None
        self.info_html.value = (
            f"<b>{html.escape(caption)}</b><br>P(COVID) = {r.prob:.3f} → <b>{verdict}</b> "
            f"(threshold {r.threshold:.2f}) · {html.escape(r.method_name)} of "
            f"{'COVID' if r.target == 1 else 'non-COVID'} on "
            f"<code>{html.escape(r.layer)}</code> · heat on padding: <b>{r.padding_share:.1%}</b>"
        )

    # ---------------------------------------------------------------- internals

    def _image_options(self) -> list[tuple[str, str]]:
        uploads = [(f"uploaded: {name}", key) for key, (name, _) in reversed(self._uploads.items())]
        captions = (
            self.images["caption"]
            if "caption" in self.images.columns
            else self.images["path"].map(lambda p: Path(str(p)).name)
        )
        return uploads + [(str(c), str(i)) for i, c in enumerate(captions)]

    def _show_error(self, message: str) -> None:
        self.last_error = message
        self.info_html.value = (
            f"<span style='background-color:{ATTENTION_BACKGROUND}; padding:0 0.3em'>"
            f"⚠ {html.escape(message)}</span>"
        )

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """Change controls without each change running its callback."""
        old, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = old

    def _guarded(self, callback: Callable[[Mapping[str, Any] | None], None]):
        def run(change: Mapping[str, Any]) -> None:
            if not self._holding:
                callback(change)

        run.__name__ = callback.__name__
        return run


def _load_model(source: ModelSource) -> tuple[nn.Module, dict]:
    """``(model, info)`` from a checkpoint path, a ``(model, info)`` pair or a kit model."""
    if isinstance(source, tuple):
        return source
    if isinstance(source, nn.Module):
        spec = spec_of(source, None)
        return source, {
            "arch": spec.name,
            "canvas": getattr(source, "ctlib_canvas", spec.canvas),
            "mean": spec.mean,
            "std": spec.std,
            "threshold": float(getattr(source, "ctlib_threshold", 0.5)),
        }
    return load_trained(source)


def build_explorer(
    results: str | os.PathLike[str] | None = None,
    *,
    checkpoints: Mapping[str, ModelSource] | Sequence[str | os.PathLike[str]] | None = None,
    images: pd.DataFrame | str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    methods: Sequence[str] | None = None,
    method: str = "gradcam",
    alpha: float = 0.5,
    threshold: float = 0.5,
    max_images: int | None = 500,
    colab: bool = True,
) -> Explorer:
    """The CAM explorer for trained networks (notebook 05).

    Args:
        results: a results folder of ``ctlib.cv.run_cv``; every ``model.pt`` under it is offered.
        checkpoints: instead of (or besides) ``results``: ``model.pt`` paths, or a mapping of
            name -> path / ``(model, info)`` / kit model.
        images: the images offered: a frame with ``path`` (and ``label``, ``prob``), image
            files or folders. Default: the test images of the first network's fold, with the
            probabilities its run saved, misclassified first.
        methods: CAM methods offered (default: all).
        method: the method selected first.
        alpha: the overlay opacity first set.
        threshold: decides "misclassified" for the ordering of saved predictions.
        max_images: offer at most this many images (misclassified first).
        colab: in Google Colab, switch on its custom widget manager (needed with ipywidgets 8).

    Returns:
        The :class:`Explorer` (an ``ipywidgets.VBox``: display it).
    """
    if colab:
        _enable_colab_widgets()
    models: dict[str, ModelSource] = {}
    if results is not None:
        models.update(find_checkpoints(results))
    if isinstance(checkpoints, Mapping):
        models.update(checkpoints)
    elif checkpoints is not None:
        for path in checkpoints:
            path = Path(path)
            models[f"{path.parent.name}/{path.name}"] = path
    if not models:
        raise ValueError("No networks: pass a results folder or checkpoints=[...model.pt].")
    if images is None:
        first = next(iter(models.values()))
        if not isinstance(first, (str, os.PathLike)):
            raise ValueError("Pass images=... (no fold folder to take the test images from).")
        split = fold_split(Path(first).parent)
        frame = split[split["split"] == "test"]
    elif isinstance(images, pd.DataFrame):
        frame = images
    else:
        items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        frame = pd.DataFrame({"path": [str(p) for p in expand_image_paths(items)]})
    frame = review_order(frame, threshold)
    if max_images is not None:
        frame = frame.head(max_images)
    return Explorer(models, frame, methods=methods, method=method, alpha=alpha)


class SliceViewer:
    """A small explorer: a slider picks a slice, a menu the canvas it is drawn on.

    Built from small named callbacks (:meth:`render`, :meth:`update`) so that it can be
    tested without a browser; ``.widget`` is what a notebook displays.

    Args:
        dataset: the data set to browse.
        canvases: label -> canvas ``(width, height)``; default :func:`canvas_columns`.
        square: side of the plain (squashed) resize offered for contrast.
    """

    ORIGINAL = "original"

    def __init__(
        self,
        dataset: CTDataset,
        canvases: Mapping[str, tuple[int, int]] | None = None,
        square: int = 224,
    ) -> None:
        self.dataset = dataset
        self.canvases = dict(canvases) if canvases is not None else canvas_columns()
        self.square = square
        squashed = f"squashed {square}×{square}"
        self.options = [self.ORIGINAL, squashed, *self.canvases]
        self.canvases[squashed] = (square, square)
        self.slider = widgets.IntSlider(
            value=0, min=0, max=len(dataset) - 1, description="slice", continuous_update=False
        )
        self.menu = widgets.Dropdown(
            options=self.options, value=self.ORIGINAL, description="drawn as"
        )
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.slider.observe(self.update, names="value")
        self.menu.observe(self.update, names="value")
        self.widget = widgets.VBox(  # flex-start: pictures at their own size, not stretched
            [widgets.HBox([self.slider, self.menu]), self.image, self.caption],
            layout=widgets.Layout(align_items="flex-start"),
        )
        self.update()

    def render(self, index: int, option: str) -> tuple[np.ndarray, str]:
        """The picture for slice ``index`` drawn as ``option``, and its caption."""

        image = self.dataset.read_image(index)
        label = CLASS_NAMES.get(int(self.dataset.frame["label"].iloc[index]), "?")
        h, w = image.shape
        if option == self.ORIGINAL:
            return image, f"{label}, {w}×{h} as stored"
        cw, ch = self.canvases[option]
        if option.startswith("squashed"):
            return (
                cv2.resize(image, (cw, ch), interpolation=cv2.INTER_AREA),
                f"{label}, {w}×{h} squashed to {cw}×{ch}: aspect ratio lost",
            )
        canvas, box = fit_to_canvas(image, (cw, ch))
        padding = 1 - box.width * box.height / (cw * ch)
        return canvas, f"{label}, {w}×{h} on the {cw}×{ch} canvas: {padding:.0%} padding"

    def update(self, change: object = None) -> None:
        """Redraw for the current slider and menu values (the widgets' callback)."""
        picture, caption = self.render(int(self.slider.value), str(self.menu.value))
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG")
        self.image.value = buffer.getvalue()
        self.caption.value = f"<span class='ctlib-caption'>{caption}</span>"
