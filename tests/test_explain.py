"""Explainability: features, t-SNE, CAMs mapped back through the canvas box, CAM scores.

Networks are random-init at small canvases (the shapes and the plumbing are what is tested),
or tiny hand-made networks whose heat is known in advance: a "padding detector" whose only
feature fires where the canvas is black, and a "bright-spot detector" whose only feature
fires on bright pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from ctlib import explain
from ctlib.canvas import fit_to_canvas
from ctlib.cv import trained_fold
from ctlib.data import load_dataset
from ctlib.data.synthetic import SyntheticConfig
from ctlib.explain import (
    CAM_METHODS,
    body_mask,
    cam_layer_choices,
    embed_tsne,
    energy_in_mask,
    explain_files,
    explain_image,
    extract_features,
    fold_split,
    gradcam,
    heat_location,
    pointing_baseline,
    pointing_game,
    randomized_copy,
    score_cams,
    select_outcomes,
    separation_scores,
    spearman,
    ssim,
    summarize_cam_scores,
)
from ctlib.models import create_model, get_spec, list_models, penultimate_features
from ctlib.transforms import normalize

torch.set_num_threads(1)
CANVAS = (96, 72)  # (width, height): aspect 4:3, small and fast
ALL = list_models()  # the paper's twelve and efficientnet_lite0


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


class _Detector(nn.Module):
    """A network in ResNet18's layout (``layer4``, ``fc``) whose one feature is known.

    ``layer4`` is a 1x1 convolution + ReLU of the input's mean channel: ``sign=-1`` fires where
    the canvas is dark (padding, normalised to about -2), ``sign=+1`` where it is bright. The
    one logit is the mean of that feature, so Grad-CAM's heat is the feature itself.
    """

    def __init__(self, sign: float) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, kernel_size=1)
        with torch.no_grad():
            conv.weight.fill_(sign / 3)
            conv.bias.fill_(0.0)
        self.layer4 = nn.Sequential(conv, nn.ReLU())
        self.fc = nn.Linear(1, 1)
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.fill_(-0.5)
        self.ctlib_arch = "resnet18"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer4(x).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):  # -> CTDataset
    return load_dataset(
        "synthetic",
        tmp_path_factory.mktemp("synth"),
        synthetic=SyntheticConfig(n_patients=6),
        progress=False,
    )


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet18")
    model.ctlib_canvas = CANVAS
    return model


# --------------------------------------------------------------------------- features


def _canvas_for(name: str) -> tuple[int, int]:
    return (112, 84) if name in ("inceptionv3", "xception") else CANVAS  # their minimum: 75/71 px


@pytest.mark.parametrize("name", ALL)
def test_features_and_cam_per_architecture(name: str, synth, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    frame = synth.frame.head(3)
    size = _canvas_for(name)
    feats = extract_features(
        model, frame, canvas=size, batch_size=2, progress=False, cache_folder=tmp_path
    )
    spec = get_spec(name)
    assert feats.features.shape == (3, spec.feature_dim)
    assert feats.features.dtype == np.float32 and feats.probs.shape == (3,)
    assert feats.paths == frame["path"].tolist()
    x = torch.stack(
        [
            normalize(fit_to_canvas(synth.read_image(i), size)[0], spec.mean, spec.std)
            for i in range(3)
        ]
    )
    with torch.no_grad():
        expected = penultimate_features(model, x).numpy()
        probs = torch.sigmoid(model(x)[:, 0]).numpy()
    # batches of 2 here, of 3 there: float sums differ slightly (random-init activations are huge)
    np.testing.assert_allclose(
        feats.features, expected, rtol=2e-3, atol=1e-4 * float(np.abs(expected).max())
    )
    np.testing.assert_allclose(feats.probs, probs, rtol=2e-3, atol=1e-4)
    # Grad-CAM on the registry's layer, mapped back to a portrait original
    heat = gradcam(model, synth.read_image(0)[:, :90], name, target=1, canvas=size)
    assert heat.shape == (synth.read_image(0).shape[0], 90) and 0 <= heat.min() <= heat.max() <= 1
    assert _hooks(model) == 0


def test_cached_features_are_reused_and_keyed_by_weights(
    resnet, synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = synth.frame.head(4)
    first = extract_features(resnet, frame, progress=False, cache_folder=tmp_path)
    assert not first.from_cache and len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("features were computed again instead of read from the cache")

    monkeypatch.setattr("ctlib.explain.features._compute_features", fail)
    second = extract_features(resnet, frame, progress=False, cache_folder=tmp_path)
    assert second.from_cache and second.key == first.key
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_array_equal(second.probs, first.probs)
    # other weights, another canvas or other images: another key, so a new computation
    other = randomized_copy(resnet, 0.1)
    with pytest.raises(AssertionError, match="computed again"):
        extract_features(other, frame, progress=False, cache_folder=tmp_path)
    with pytest.raises(AssertionError, match="computed again"):
        extract_features(resnet, frame, canvas=(64, 48), progress=False, cache_folder=tmp_path)
    with pytest.raises(AssertionError, match="computed again"):
        extract_features(resnet, synth.frame.head(3), progress=False, cache_folder=tmp_path)


def _clusters(n: int = 40, dim: int = 64, gap: float = 6.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    features = rng.normal(size=(n, dim)) + gap * labels[:, None] * np.eye(dim)[0]
    return features.astype(np.float32), labels


def test_tsne_shape_and_determinism() -> None:
    features, _ = _clusters()
    a = embed_tsne(features, perplexity=10, seed=3, max_iter=300)
    assert a.shape == (40, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, embed_tsne(features, perplexity=10, seed=3, max_iter=300))
    r = embed_tsne(features, perplexity=10, seed=3, max_iter=300, init="random")
    np.testing.assert_array_equal(
        r, embed_tsne(features, perplexity=10, seed=3, max_iter=300, init="random")
    )
    assert not np.allclose(
        r, embed_tsne(features, perplexity=10, seed=4, max_iter=300, init="random")
    )
    with pytest.raises(ValueError, match="perplexity"):
        embed_tsne(features, perplexity=40)


def test_separation_scores_tell_separated_from_mixed() -> None:
    features, labels = _clusters(gap=12.0)
    apart = separation_scores(features, labels, features[:, :2]).set_index("space")
    assert list(apart.index) == ["features", "t-SNE"]
    assert apart.loc["features", "knn_accuracy"] == 1.0
    assert apart.loc["features", "silhouette"] > 0.1
    mixed = separation_scores(features, np.random.default_rng(1).permutation(labels))
    assert mixed.loc[0, "knn_accuracy"] < 0.8 and abs(mixed.loc[0, "silhouette"]) < 0.05
    with pytest.raises(ValueError, match="two classes"):
        separation_scores(features, np.zeros(len(labels)))


# --------------------------------------------------------------------------- CAM: shapes, mapping


@pytest.mark.parametrize("shape", [(200, 120), (120, 200)], ids=["portrait", "landscape"])
def test_heatmap_has_the_original_shape(resnet, shape: tuple[int, int]) -> None:
    image = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    for method in ("gradcam", "eigencam"):
        heat = gradcam(resnet, image, "resnet18", method=method)
        assert heat.shape == shape and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    result = explain_image(resnet, image, "resnet18")
    assert result.canvas_heatmap.shape == (CANVAS[1], CANVAS[0])
    assert result.target == result.predicted


@pytest.mark.parametrize("shape", [(200, 120), (120, 200)], ids=["portrait", "landscape"])
def test_heat_is_mapped_back_to_the_right_place(shape: tuple[int, int]) -> None:
    h, w = shape
    image = np.full(shape, 20, np.uint8)
    y0, x0 = int(0.70 * h), int(0.20 * w)  # a bright square off-centre
    image[y0 : y0 + 16, x0 : x0 + 16] = 250
    result = explain_image(_Detector(+1.0), image, canvas=CANVAS, target=1)
    peak = np.unravel_index(np.argmax(result.heatmap), shape)
    assert y0 - 3 <= peak[0] < y0 + 19 and x0 - 3 <= peak[1] < x0 + 19
    assert energy_in_mask(result.heatmap, image > 100) > 0.8


def test_padding_share_zero_when_the_image_fills_the_canvas(resnet) -> None:
    rng = np.random.default_rng(0)
    for shape in ((72, 96), (144, 192)):  # the canvas' 4:3 aspect, at 1x and 2x
        image = (rng.random(shape) * 255).astype(np.uint8)
        result = explain_image(resnet, image, "resnet18")
        assert tuple(result.box) == (0, 0, 96, 72)
        assert result.padding_share == 0.0


def test_padding_share_high_when_the_network_looks_at_padding() -> None:
    image = np.full((200, 80), 200, np.uint8)  # tall and bright: wide black bars on the canvas
    result = explain_image(_Detector(-1.0), image, canvas=CANVAS, target=1)
    assert result.padding_share > 0.95
    assert result.heatmap.max() < 0.05  # the heat left with the padding
    looking_at_image = explain_image(_Detector(+1.0), image, canvas=CANVAS, target=1)
    assert looking_at_image.padding_share < 0.05


@pytest.mark.parametrize("method", list(CAM_METHODS))
def test_hooks_released_mode_restored_no_grads_left(resnet, method: str) -> None:
    image = (np.random.default_rng(0).random((80, 120)) * 255).astype(np.uint8)
    resnet.train()
    before = _hooks(resnet)
    result = explain_image(resnet, image, "resnet18", method=method, target=1)
    assert _hooks(resnet) == before == 0
    assert resnet.training, "the model's train mode must be restored"
    assert all(p.grad is None for p in resnet.parameters())
    assert result.method == method and result.heatmap.shape == image.shape
    resnet.eval()


def test_hooks_released_when_the_cam_fails(resnet, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    forward = resnet.forward

    def failing(x):
        calls["n"] += 1
        if calls["n"] == 2:  # the first pass predicts; the second is pytorch-grad-cam's
            raise RuntimeError("boom inside the CAM")
        return forward(x)

    monkeypatch.setattr(resnet, "forward", failing)
    with pytest.raises(RuntimeError, match="boom") as caught:
        explain_image(resnet, np.zeros((50, 60), np.uint8), "resnet18")
    # the traceback (kept alive here, as a notebook keeps sys.last_traceback) holds the CAM
    # object; its hooks must be gone anyway
    assert caught.traceback and _hooks(resnet) == 0


def test_cam_inside_no_grad_and_on_a_frozen_backbone() -> None:
    torch.manual_seed(0)
    model = create_model("shufflenet", strategy="feature_extraction")
    image = (np.random.default_rng(0).random((90, 120)) * 255).astype(np.uint8)
    with torch.no_grad():
        heat = gradcam(model, image, method="gradcam", target=1)
    assert heat.shape == image.shape and heat.max() > 0


def test_targets_and_methods_are_checked(resnet) -> None:
    image = np.zeros((40, 50), np.uint8)
    with pytest.raises(ValueError, match="target"):
        explain_image(resnet, image, "resnet18", target=2)
    with pytest.raises(ValueError, match="Unknown CAM method"):
        explain_image(resnet, image, "resnet18", method="gradcam3000")
    with pytest.raises(ValueError, match="no layer"):
        explain_image(resnet, image, "resnet18", layer="layer9")
    assert explain_image(resnet, image, "resnet18", method="Grad-CAM++").method == "gradcam++"


def test_cam_layer_choices(resnet) -> None:
    assert cam_layer_choices(resnet, "resnet18") == ["layer4", "layer3", "layer2", "layer1"]
    lite0 = create_model("efficientnet_lite0")  # nested stages, strides 1, 2, 2, 2, 1, 2, 1
    assert cam_layer_choices(lite0, canvas=CANVAS) == ["bn2", "blocks.4", "blocks.2", "blocks.1"]
    assert _hooks(resnet) == 0
    result = explain_image(resnet, np.zeros((60, 80), np.uint8) + 99, "resnet18", layer="layer2")
    assert result.layer == "layer2"


# --------------------------------------------------------------------------- scores


def test_pointing_game_on_hand_made_maps() -> None:
    mask = np.zeros((100, 100), bool)
    mask[40:50, 40:50] = True
    heat = np.zeros((100, 100), np.float32)
    heat[45, 45] = 1.0
    assert pointing_game(heat, mask, tolerance=0)
    heat[:] = 0
    heat[45, 60] = 1.0  # 11 px right of the mask's last column
    assert not pointing_game(heat, mask, tolerance=0)
    assert not pointing_game(heat, mask, tolerance=10)
    assert pointing_game(heat, mask, tolerance=11)
    heat[:] = 0
    heat[90, 5] = 1.0
    assert not pointing_game(heat, mask, tolerance=15)
    assert not pointing_game(np.ones((100, 100)), mask)  # a flat map points nowhere
    assert pointing_baseline(mask, tolerance=0) == pytest.approx(0.01)
    assert pointing_baseline(mask, tolerance=0, region=mask) == 1.0
    assert 0.01 < pointing_baseline(mask, tolerance=5) < 0.05


def test_energy_spearman_ssim() -> None:
    mask = np.zeros((40, 40), bool)
    mask[:10] = True
    assert energy_in_mask(mask.astype(float), mask) == 1.0
    assert energy_in_mask(np.ones((40, 40)), mask) == pytest.approx(0.25)
    assert np.isnan(energy_in_mask(np.zeros((40, 40)), mask))
    rng = np.random.default_rng(0)
    a = rng.random((40, 40))
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones_like(a)))
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((48, 64))
    b = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1)
    expected = metrics.structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-6)


def test_randomized_copy(resnet) -> None:
    state = {k: v.clone() for k, v in resnet.state_dict().items()}
    rng_before = torch.random.get_rng_state()
    full = randomized_copy(resnet, 1.0, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert all(torch.equal(v, resnet.state_dict()[k]) for k, v in state.items())  # original intact
    assert not torch.equal(full.conv1.weight, resnet.conv1.weight)
    assert not torch.equal(full.fc.weight, resnet.fc.weight)
    top = randomized_copy(resnet, 0.05, seed=0)  # the cascade's first steps: head and last layers
    assert torch.equal(top.conv1.weight, resnet.conv1.weight)
    assert not torch.equal(top.fc.weight, resnet.fc.weight)
    assert torch.equal(randomized_copy(resnet, 1.0, seed=0).fc.weight, full.fc.weight)


def test_body_mask_fills_lungs_and_drops_text() -> None:
    import cv2

    image = np.zeros((120, 160), np.uint8)
    cv2.ellipse(image, (70, 60), (55, 40), 0, 0, 360, 160, -1)
    truth = image > 0
    cv2.ellipse(image, (50, 60), (15, 20), 0, 0, 360, 10, -1)  # a dark lung inside
    image[5:12, 140:155] = 255  # a caption in the corner
    mask = body_mask(image)
    assert (mask == truth).mean() > 0.99
    assert not mask[5:12, 140:155].any() and mask[60, 50]


def test_score_cams_columns_and_ranges(resnet, synth) -> None:
    per_image = score_cams(
        resnet,
        synth,
        "resnet18",
        methods=("gradcam", "eigencam"),
        max_images=2,
        progress=False,
        per_image=True,
    )
    assert len(per_image) == 4 and set(per_image["method"]) == {"gradcam", "eigencam"}
    for column in ("energy", "lesion_area", "random_pointing", "body_pointing", "padding_share"):
        assert per_image[column].between(0, 1).all(), column
    assert (per_image["body_pointing"] >= per_image["random_pointing"]).all()
    assert per_image["sanity_spearman"].dropna().lt(0.999).all()
    summary = summarize_cam_scores(per_image).set_index("method")
    assert summary.loc["gradcam", "n_images"] == 2
    assert summary.loc["gradcam", "pointing_game"] == pytest.approx(
        per_image.loc[per_image["method"] == "gradcam", "pointing"].mean()
    )
    with pytest.raises(ValueError, match="lesion masks"):
        score_cams(resnet, synth.frame.drop(columns="mask_path"), "resnet18")


def test_heat_location_sees_padding(synth) -> None:
    frame = synth.frame.head(2)
    looking_at_padding = heat_location(
        _Detector(-1.0), frame, canvas=CANVAS, target=1, progress=False
    )
    row = looking_at_padding.iloc[0]
    assert row["n_images"] == 2
    assert row["outside_body_share"] >= row["padding_share"] - 1e-9
    assert row["outside_body_share"] > row["outside_body_area"]


# --------------------------------------------------------------------------- runs and files


def _fake_fold(root: Path) -> Path:
    base = root / "synthetic" / "patient" / "resnet18"
    folder = base / "fold1"
    folder.mkdir(parents=True)
    (root / "x").mkdir()
    paths = [str(root / "x" / f"{i}.png") for i in range(6)]
    for path in paths:
        Path(path).touch()
    pd.DataFrame(
        {
            "path": paths,
            "label": [1, 0, 1, 0, 1, 0],
            "patient_id": list("aabbcc"),
            "fold": [0, 0, 1, 1, 1, 1],
        }
    ).to_csv(base / "folds.csv", index=False)
    pd.DataFrame(
        {"path": paths[2:], "label": [1, 0, 1, 0], "prob": [0.9, 0.8, 0.2, 0.1], "fold": 1}
    ).to_csv(folder / "predictions.csv", index=False)
    (folder / "config.json").write_text(json.dumps({"train": {"canvas": list(CANVAS)}}))
    return folder


def test_fold_split_and_select_outcomes(tmp_path: Path) -> None:
    split = fold_split(_fake_fold(tmp_path))
    assert split["split"].tolist() == ["train"] * 2 + ["test"] * 4
    assert split["prob"].isna().tolist() == [True, True, False, False, False, False]
    test = split[split["split"] == "test"]
    names = {outcome: [Path(p).name for p in select_outcomes(test, outcome)["path"]]
             for outcome in ("tp", "misclassified")}  # fmt: skip
    assert names == {"tp": ["2.png"], "misclassified": ["3.png", "4.png"]}
    assert select_outcomes(test, "fn")["prob"].tolist() == [0.2]
    with pytest.raises(ValueError, match="outcome"):
        select_outcomes(test, "maybe")
    with pytest.raises(FileNotFoundError):
        fold_split(tmp_path)


def test_a_fold_whose_images_moved_names_one_and_the_fix(tmp_path: Path) -> None:
    """Its images gone (a cleared cache held the synthetic set): a message, not a traceback
    from deep inside feature extraction."""
    folder = _fake_fold(tmp_path)
    (tmp_path / "x" / "3.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of the 6 images .*3\.png") as gone:
        fold_split(folder)
    assert f"delete {folder.parent}" in str(gone.value)


def test_explain_files_on_a_folder(resnet, tmp_path: Path) -> None:
    Image.fromarray(np.full((60, 90), 128, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((50, 40, 3), 90, np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    info = {"arch": "resnet18", "canvas": CANVAS, "threshold": 0.5}
    out = explain_files([tmp_path], (resnet, info), method="hirescam", progress=False)
    assert [p.name for p, _, _ in out] == ["a.png", "b.jpg"]
    assert [r.heatmap.shape for _, _, r in out] == [(60, 90), (50, 40)]


def test_plots_return_figures(resnet) -> None:
    import matplotlib.pyplot as plt

    from ctlib.plots import figure_png, heat_overlay, plot_cam, plot_cam_gallery, plot_tsne

    image = (np.random.default_rng(0).random((60, 80)) * 255).astype(np.uint8)
    result = explain_image(resnet, image, "resnet18")
    overlay = heat_overlay(image, result.heatmap, alpha=0.0)
    assert overlay.shape == (60, 80, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay[..., 0], image)
    assert not np.array_equal(heat_overlay(image, result.heatmap, alpha=0.7)[..., 0], image)
    png = figure_png(plot_cam(image, result, title="x"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    figure = plot_cam_gallery([(image, result, "a"), (image, result, "b")], columns=2)
    assert len(figure.axes) == 2
    emb = np.random.default_rng(0).normal(size=(8, 2))
    figure = plot_tsne(
        emb, [1, 0, 1, 0] * 2, ["train"] * 4 + ["test"] * 4, misclassified=[False] * 7 + [True]
    )
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert len(labels) == 5 and labels[-1] == "misclassified test (1)"
    plt.close("all")


@pytest.mark.realdata
def test_body_mask_and_heat_location_on_real_slices(data_root: Path) -> None:
    rng = np.random.default_rng(0)
    for name in ("covid19-ct", "sars-cov-2-ct"):
        dataset = load_dataset(name, data_root, progress=False)
        for index in rng.choice(len(dataset), 6, replace=False):
            image = dataset.read_image(int(index))
            share = body_mask(image).mean()
            assert 0.3 < share <= 1.0, (name, dataset.frame["path"].iloc[int(index)], share)
        torch.manual_seed(0)
        model = create_model("shufflenet")
        table = heat_location(model, dataset.frame.head(3), canvas=CANVAS, progress=False)
        row = table.iloc[0]
        assert row["n_images"] == 3 and 0 <= row["padding_share"] <= row["outside_body_share"] <= 1


def test_trained_fold_trains_once_then_reuses_and_fold_tsne(synth, tmp_path: Path) -> None:
    from ctlib.train import TrainConfig

    config = TrainConfig(
        arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(96, 64)
    )
    with pytest.raises(FileNotFoundError, match="python -m ctlib cv"):
        trained_fold(tmp_path, "synthetic", arch="shufflenet-scratch")
    with pytest.raises(ValueError, match="pass the data set"):
        trained_fold(tmp_path, "synthetic", config)
    with pytest.raises(ValueError, match="recipe trains"):
        trained_fold(tmp_path, synth, config, arch="resnet18")
    folder = trained_fold(tmp_path, synth, config, protocol="patient", n_folds=2)
    assert folder == tmp_path / "synthetic" / "patient" / "shufflenet-scratch" / "fold0"
    stamp = (folder / "model.pt").stat().st_mtime_ns
    again = trained_fold(tmp_path, synth, config, protocol="patient", n_folds=2)
    assert again == folder and (folder / "model.pt").stat().st_mtime_ns == stamp  # not retrained
    # without a recipe, the finished fold is found by its run name
    assert (
        trained_fold(
            tmp_path, "synthetic", arch="shufflenet-scratch", protocol="patient", n_folds=2
        )
        == folder
    )

    embedding = explain.fold_tsne(folder, perplexity=5.0, max_iter=250, cache=False)
    points = embedding.points
    assert len(points) == len(synth) and {"x", "y", "split", "misclassified"} <= set(points.columns)
    assert set(points["split"]) == {"train", "test"}
    test = points[points["split"] == "test"]
    assert (
        test["nearest_train"].notna().all()
        and not points.loc[points["split"] == "train", "misclassified"].any()
    )
    # patient-level folds: the nearest training image is never the same patient
    assert not test["same_patient"].astype(bool).any()
    assert set(embedding.scores["space"]) == {"features", "t-SNE"}
    assert embedding.arch == "shufflenet"

    with_masks = explain.lesion_masks(points)
    covid = with_masks[with_masks["label"] == 1]
    assert covid["mask_path"].map(lambda p: Path(p).is_file()).all()
    assert explain.lesion_masks(with_masks) is with_masks
    real = explain.lesion_masks(pd.DataFrame({"path": ["/elsewhere/CT_COVID/a.png"]}))
    assert real["mask_path"].isna().all()


def test_fold_gallery_and_the_figures_command(synth, tmp_path: Path, capsys) -> None:
    from matplotlib.figure import Figure

    from ctlib.cli import main
    from ctlib.plots import plot_outcome_gallery
    from ctlib.train import TrainConfig

    config = TrainConfig(
        arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(96, 64)
    )
    folder = trained_fold(tmp_path, synth, config, protocol="paper", n_folds=2)
    test = pd.read_csv(folder / "predictions.csv")
    gallery = explain.fold_gallery(folder, n=2)
    assert list(gallery.items) == list(explain.GALLERY_OUTCOMES)
    assert gallery.n_test == len(test) and gallery.arch == "shufflenet"
    counts = gallery.shown.dropna(subset=["n_outcome"]).set_index("outcome")["n_outcome"]
    assert int(counts.sum()) == len(test)  # the four outcomes split the test fold
    for outcome, items in gallery.items.items():
        expected = explain.select_outcomes(test, outcome, 2)
        assert int(counts[outcome]) == len(explain.select_outcomes(test, outcome))
        assert [p.name for p, _, _ in items] == [Path(p).name for p in expected["path"]]
        for (_, image, result), prob in zip(items, expected["prob"]):
            # explained with the fold's own network on its own canvas: the probability the CAM
            # saw is the one saved at test time, and the class explained is the predicted one
            assert result.prob == pytest.approx(prob, abs=1e-4)
            assert result.target == result.predicted and result.heatmap.shape == image.shape
    figure = plot_outcome_gallery(gallery, title="t")
    texts = " ".join(t.get_text() for t in figure.texts)
    assert isinstance(figure, Figure)
    assert f"true positives: COVID slices found: {int(counts['tp'])} of {len(test)}" in texts
    if not all(gallery.items.values()):
        assert "none in this fold" in texts
    empty = explain.FoldGallery(
        items={"fp": []},
        shown=pd.DataFrame({"outcome": ["fp"], "n_outcome": [0]}),
        arch="x",
        n_test=5,
    )
    assert "none in this fold" in " ".join(t.get_text() for t in plot_outcome_gallery(empty).texts)

    figures, tables = tmp_path / "figures", tmp_path / "explain"
    args = ["figures", str(tmp_path), "--dataset", "synthetic", "--run", "shufflenet-scratch"]
    args += ["--n", "2", "--perplexity", "5", "--figures", str(figures), "--out", str(tables)]
    assert main([*args, "-q"]) == 0
    assert {p.name for p in figures.iterdir()} == {"tsne_synthetic.png", "gradcam_synthetic.png"}
    shown = pd.read_csv(tables / "gallery_synthetic_paper_shufflenet-scratch_fold0.csv")
    paths = shown["path"].dropna()
    assert len(paths) == sum(len(v) for v in gallery.items.values())
    assert not paths.map(lambda p: Path(p).is_absolute()).any()  # no machine's paths
    scores = pd.read_csv(tables / "tsne_synthetic_paper_shufflenet-scratch_fold0.csv")
    assert set(scores["images"]) == {"train", "test"} and scores["knn_accuracy"].between(0, 1).all()
    capsys.readouterr()
    assert main([*args[:-4], "--fold", "1", "-q"]) == 2  # fold 1 was never trained
    assert "--only-folds 1" in capsys.readouterr().err


def test_score_on_lesions_meets_the_mask() -> None:
    from ctlib.explain import score_on_lesions

    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    on, off = np.zeros((40, 40)), np.zeros((40, 40))
    on[15, 15], off[35, 35] = 1.0, 1.0
    assert score_on_lesions(on, mask) == {
        "pointing_game": True, "energy_in_lesions": 1.0, "lesion_area": 100 / 1600
    }  # fmt: skip
    scored = score_on_lesions(off, mask, tolerance=0)
    assert not scored["pointing_game"] and scored["energy_in_lesions"] == 0.0


def test_cam_scores_over_seeds_reads_each_seed_once(tmp_path: Path) -> None:
    from ctlib.study.honest import cam_scores_over_seeds

    committed, yours = tmp_path / "explain", tmp_path / "cam-score"
    committed.mkdir()
    yours.mkdir()
    rows = {"method_name": ["Grad-CAM"], "pointing_game": [0.5]}
    pd.DataFrame({**rows, "seed": [0]}).to_csv(committed / "cam_scores_a.csv", index=False)
    pd.DataFrame({**rows, "seed": [1]}).to_csv(committed / "cam_scores_b.csv", index=False)
    pd.DataFrame({**rows, "seed": [1]}).to_csv(yours / "cam_scores_x.csv", index=False)  # again
    pd.DataFrame({**rows, "seed": [3]}).to_csv(yours / "cam_scores_y.csv", index=False)
    raw = cam_scores_over_seeds(committed, yours)
    assert raw["seed"].tolist() == [0, 1, 3]
    assert raw["source"].tolist() == [str(committed)] * 2 + [str(yours)]
    with pytest.raises(FileNotFoundError, match="No CAM scores"):
        cam_scores_over_seeds(tmp_path / "empty")
