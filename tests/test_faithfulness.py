"""Faithfulness of CAMs (ROAD and the confidence change), wired to pytorch-grad-cam's metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ctlib.data import load_dataset
from ctlib.data.synthetic import SyntheticConfig
from ctlib.explain.faithfulness import (
    RANDOM_MAP,
    RANDOM_NETWORK,
    ClassProbability,
    faithfulness,
    map_faithfulness,
    road_beside_pointing,
    smooth_random_map,
    summarize_faithfulness,
)
from ctlib.models import create_model


class _LeftHalf(nn.Module):
    """One logit from the left half of the image only: its mean brightness, scaled."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[-1]
        return 4.0 * x[:, :, :, : width // 2].mean(dim=(1, 2, 3)).unsqueeze(1)


def test_a_map_on_what_the_network_reads_is_more_faithful_than_one_beside_it() -> None:
    torch.manual_seed(0)
    x = torch.zeros(1, 3, 32, 48)
    x[:, :, 8:24, 4:20] = 1.0  # a bright patch in the left half: P(COVID) high
    left = np.zeros((32, 48), np.float32)
    left[8:24, 4:20] = 1.0
    right = left[:, ::-1].copy()  # the same patch's place, mirrored: the network ignores it
    model = _LeftHalf().eval()
    on = map_faithfulness(model, x, left, target=1, percentiles=(50, 80))
    beside = map_faithfulness(model, x, right, target=1, percentiles=(50, 80))
    # removing what the map ranks first hurts only when the map points at what is read
    assert on["morf"] < beside["morf"] - 0.05
    assert on["road"] > beside["road"]
    assert on["road"] == pytest.approx((on["lerf"] - on["morf"]) / 2)
    # multiplying by a map that keeps the patch keeps the evidence; the mirrored one drops it
    assert on["mult_change"] > beside["mult_change"]
    assert all(-1.0 <= v <= 1.0 for v in (*on.values(), *beside.values()))


def test_class_probability_target_and_random_map() -> None:
    logit = torch.tensor([2.0])
    assert ClassProbability(1)(logit).item() == pytest.approx(torch.sigmoid(logit).item())
    assert ClassProbability(0)(logit).item() == pytest.approx(1 - torch.sigmoid(logit).item())
    noise = smooth_random_map((64, 40), seed=3)
    assert noise.shape == (40, 64) and noise.min() >= 0.0 and noise.max() <= 1.0
    assert np.array_equal(noise, smooth_random_map((64, 40), seed=3))
    assert not np.array_equal(noise, smooth_random_map((64, 40), seed=4))


def test_faithfulness_of_a_tiny_network_on_synthetic_slices(tmp_path) -> None:
    data = load_dataset("synthetic", tmp_path, synthetic=SyntheticConfig(n_patients=4),
                        progress=False)  # fmt: skip
    torch.manual_seed(0)
    model = create_model("shufflenet", pretrained=False, progress=False)
    model.ctlib_canvas = (64, 48)
    model.train()
    per_image = faithfulness(model, data.frame, methods=("gradcam", "eigencam"), max_images=2,
                             percentiles=(50,), progress=False)  # fmt: skip
    assert model.training, "the model's mode is restored"
    assert per_image["map"].tolist() == ["Grad-CAM", "Eigen-CAM", RANDOM_MAP, RANDOM_NETWORK] * 2
    assert per_image["path"].nunique() == 2
    scores = per_image[["morf", "lerf", "road", "mult_change", "prob"]].to_numpy()
    assert np.isfinite(scores).all() and (np.abs(scores) <= 1).all()
    summary = summarize_faithfulness(per_image)
    assert summary["map"].tolist() == ["Grad-CAM", "Eigen-CAM", RANDOM_MAP, RANDOM_NETWORK]
    assert summary["images"].tolist() == [2, 2, 2, 2]
    again = faithfulness(model, data.frame, methods=("gradcam", "eigencam"), max_images=2,
                         percentiles=(50,), progress=False)  # fmt: skip
    pd.testing.assert_frame_equal(per_image, again)  # seeded: the sample and the noise
    with pytest.raises(ValueError, match="Unknown CAM method 'nope'"):
        faithfulness(model, data.frame, methods=("gradcam", "nope"), progress=False)


def _road_rows(path: str, scores: dict[str, float]) -> list[dict]:
    return [{"path": path, "map": name, "road": value, "morf": -value, "lerf": value,
             "mult_change": 0.0} for name, value in scores.items()]  # fmt: skip


def test_road_beside_pointing_splits_each_methods_road_by_its_pointing_game() -> None:
    cams = pd.DataFrame(
        {
            "path": ["a", "b", "c", "a", "b", "c"],
            "method": ["gradcam"] * 3 + ["eigencam"] * 3,
            "pointing": [True, True, False, False, False, False],
        }
    )
    road = pd.DataFrame(
        _road_rows("a", {"Grad-CAM": 0.3, "Eigen-CAM": 0.1, RANDOM_MAP: 0.0, RANDOM_NETWORK: 0.02})
        + _road_rows("b", {"Grad-CAM": 0.1, "Eigen-CAM": 0.2, RANDOM_MAP: 0.02, RANDOM_NETWORK: 0})
        + _road_rows("c", {"Grad-CAM": -0.1, "Eigen-CAM": 0.3, RANDOM_MAP: 0.04, RANDOM_NETWORK: 0})
        + _road_rows("elsewhere", {"Grad-CAM": 9.0, RANDOM_MAP: 9.0, RANDOM_NETWORK: 9.0})
    )
    table = road_beside_pointing(cams, road).set_index("method")
    assert table.index.tolist() == ["gradcam", "eigencam"]
    grad = table.loc["gradcam"]
    assert grad["road"] == pytest.approx(0.1)  # (0.3 + 0.1 - 0.1) / 3: "elsewhere" left out
    assert grad["road_hit"] == pytest.approx(0.2) and grad["road_miss"] == pytest.approx(-0.1)
    assert (grad["hits"], grad["misses"]) == (2, 1)
    eigen = table.loc["eigencam"]
    assert np.isnan(eigen["road_hit"]) and eigen["road_miss"] == pytest.approx(0.2)
    assert table["road_random_map"].tolist() == pytest.approx([0.02, 0.02])
    assert table["road_random_network"].tolist() == pytest.approx([0.02 / 3] * 2)
    with pytest.raises(ValueError, match="baseline map"):
        road_beside_pointing(cams, road[road["map"] != RANDOM_MAP])
    with pytest.raises(ValueError, match="Eigen-CAM"):
        road_beside_pointing(cams, road[road["map"] != "Eigen-CAM"])
