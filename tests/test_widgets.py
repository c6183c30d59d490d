"""The CAM explorer's callbacks, driven without a browser (fastbook style).

Setting a control's value runs its callback as a click would; the tests then read the PNG
bytes of the output image and the CamResult shown.
"""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ctlib import widgets as cw
from ctlib.models import create_model, save_checkpoint
from ctlib.widgets import Explorer, build_explorer, review_order, uploaded_files

torch.set_num_threads(1)
CANVAS = (96, 72)
PNG = b"\x89PNG\r\n\x1a\n"
NOW = datetime.now(timezone.utc)  # FileUpload (ipywidgets 8) holds last_modified as a datetime


def _write_images(folder: Path, n: int = 3) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        shape = (80, 120) if i % 2 else (120, 80)
        path = folder / f"img{i}.png"
        Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _model(name: str = "shufflenet", seed: int = 0):  # -> nn.Module
    torch.manual_seed(seed)
    model = create_model(name).eval()
    model.ctlib_canvas = CANVAS
    return model


@pytest.fixture()
def explorer(tmp_path: Path) -> Explorer:
    paths = _write_images(tmp_path)
    images = review_order(
        pd.DataFrame({"path": paths, "label": [1, 0, 1], "prob": [0.9, 0.7, 0.4]})
    )
    return Explorer(
        {"shufflenet": _model(), "resnet18": _model("resnet18")},
        images,
        methods=["gradcam", "hirescam", "eigencam", "layercam"],
    )


def test_first_draw_and_css_class(explorer: Explorer) -> None:
    assert explorer.heatmap_image.value[:8] == PNG
    assert "ctlib-heatmap" in explorer.heatmap_image._dom_classes
    assert "ctlib-method" in explorer.method_picker._dom_classes
    assert explorer.result is not None and explorer.last_error is None
    assert "padding" in explorer.info_html.value and "P(COVID)" in explorer.info_html.value
    # misclassified first: img1 (non-COVID, p=0.7) is most wrong, then img2 (COVID, p=0.4)
    assert [label for label, _ in explorer.image_picker.options][:2] == [
        "✗ non-COVID p=0.70 img1.png",
        "✗ COVID p=0.40 img2.png",
    ]
    assert explorer.result.heatmap.shape == (80, 120)  # img1 is landscape


def test_method_change_redraws(explorer: Explorer) -> None:
    before = explorer.heatmap_image.value
    explorer.method_picker.value = "eigencam"  # runs on_method_change, as a click would
    assert explorer.result.method == "eigencam"
    assert explorer.heatmap_image.value[:8] == PNG and explorer.heatmap_image.value != before


def test_target_change_redraws(explorer: Explorer) -> None:
    explorer.target_picker.value = "COVID"
    covid = explorer.heatmap_image.value
    assert explorer.result.target == 1
    explorer.target_picker.value = "non-COVID"
    assert explorer.result.target == 0
    assert explorer.heatmap_image.value != covid


def test_opacity_redraws_without_a_new_cam(
    explorer: Explorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = explorer.heatmap_image.value

    def fail(*args, **kwargs):
        raise AssertionError("the CAM was computed again for an opacity change")

    monkeypatch.setattr(cw, "explain_image", fail)
    explorer.opacity_slider.value = 0.9
    assert explorer.heatmap_image.value != before and explorer.last_error is None


def test_image_model_and_layer_changes(explorer: Explorer) -> None:
    first = explorer.result
    explorer.image_picker.value = explorer.image_picker.options[2][1]
    assert explorer.result.heatmap.shape == (120, 80)
    explorer.model_picker.value = "resnet18"
    assert explorer.result.arch == "resnet18"
    assert list(explorer.layer_picker.options) == ["layer4", "layer3", "layer2", "layer1"]
    explorer.layer_picker.value = "layer3"
    assert explorer.result.layer == "layer3"
    explorer.on_method_change()  # called directly: same choices, served from the cache
    assert explorer.result.layer == "layer3" and first.arch == "shufflenet"


def _png(shape: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full(shape, 77, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_upload_ipywidgets8_value(explorer: Explorer) -> None:
    content = _png((50, 70))
    explorer.upload.value = (
        {
            "name": "mine.png",
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": NOW,
        },
    )
    assert explorer.image_picker.value.startswith("upload:")
    assert explorer.image_picker.options[0][0] == "uploaded: mine.png"
    assert explorer.result.heatmap.shape == (50, 70)
    assert "uploaded: mine.png" in explorer.info_html.value


def test_bad_upload_is_reported_not_raised(explorer: Explorer) -> None:
    explorer.upload.value = (
        {
            "name": "x.png",
            "type": "image/png",
            "size": 3,
            "content": memoryview(b"abc"),
            "last_modified": NOW,
        },
    )
    assert "x.png" in explorer.last_error and "x.png" in explorer.info_html.value
    assert not explorer.image_picker.value.startswith("upload:")


def test_uploaded_files_reads_both_formats() -> None:
    v8 = ({"name": "a.png", "content": memoryview(b"12")},)
    v7 = {"a.png": {"metadata": {"name": "a.png"}, "content": b"12"}}
    assert uploaded_files(v8) == uploaded_files(v7) == [("a.png", b"12")]
    assert uploaded_files(()) == []


def test_build_explorer_from_a_results_folder(tmp_path: Path) -> None:
    paths = _write_images(tmp_path, 4)
    base = tmp_path / "runs" / "synthetic" / "patient" / "shufflenet"
    folder = base / "fold0"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {"path": paths, "label": [1, 0, 1, 0], "patient_id": list("abcd"), "fold": [1, 0, 0, 0]}
    ).to_csv(base / "folds.csv", index=False)
    pd.DataFrame(
        {"path": paths[1:], "label": [0, 1, 0], "prob": [0.1, 0.3, 0.2], "fold": 0}
    ).to_csv(folder / "predictions.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"train": {"canvas": list(CANVAS)}}))
    save_checkpoint(_model(), folder / "model.pt", extra={"threshold": 0.5})
    app = build_explorer(tmp_path / "runs", methods=["gradcam", "eigencam"])
    assert list(app.model_picker.options) == ["synthetic/patient/shufflenet/fold0"]
    assert [label for label, _ in app.image_picker.options] == [
        "✗ COVID p=0.30 img2.png",
        "✓ non-COVID p=0.10 img1.png",
        "✓ non-COVID p=0.20 img3.png",
    ]
    assert app.result.heatmap.shape == (120, 80) and app.heatmap_image.value[:8] == PNG  # img2
    with pytest.raises(FileNotFoundError):
        build_explorer(tmp_path / "nothing")
