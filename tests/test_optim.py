"""ForeachLamb against its reference, torch-optimizer's Lamb (micrograd's way: check against
another implementation).

Two identical copies of a network see the same batches, one optimiser each; their parameters
must agree after many steps (with the paper's recipe, a learning-rate change midway, and with
the defaults). Hard cases (weight norms above ``clamp_value``, zero weights, zero and missing
gradients, ``debias``, ``adam``, two parameter groups, two dtypes) run on bare tensors with
the same gradients for both. State dicts must load into each other and continue identically,
and ``step()`` must never read a tensor's value on the host.

Tolerance: float32's, ``rtol=1e-5, atol=1e-6``, on parameters that move by up to ~1e-2. On the
CPU the two optimisers agree bit for bit (observed difference 0.0, also with
``ATEN_CPU_CAPABILITY=default``): ForeachLamb runs the same kernels on the same values in the
same order. Over a free-running training the network tests in effect demand that: a network
amplifies any change of rounding (with one extra rounding in the update, ``p + (u * s)``
instead of ``p + u * s``, resnet18 differs by 1.5e-5 after 25 steps and shufflenet by up to
5e-2 after 30), so the bare-tensor tests, where nothing feeds back, are the ones that would
also hold on CUDA, whose ``_foreach_norm`` sums in another order than ``torch.norm``.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
import torch_optimizer

from ctlib.optim import ForeachLamb

RTOL, ATOL = 1e-5, 1e-6
RECIPE = {"lr": 3e-4, "weight_decay": 1.0}  # the paper's (ctlib.train.TrainConfig)
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: as fast as two on a shared 2-core machine, and steadier."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class HostRead(RuntimeError):
    """Raised by the trapped tensor methods."""


@pytest.fixture
def trap_host_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Calling the returned function makes every host read of a tensor raise HostRead."""

    def trap() -> None:
        for name in HOST_READS:

            def refuse(self: torch.Tensor, *args: object, _name: str = name) -> None:
                raise HostRead(f"Tensor.{_name} called in step()")

            monkeypatch.setattr(torch.Tensor, name, refuse)

    return trap


# ---- a real network --------------------------------------------------------------------------


def network(name: str) -> torch.nn.Module:
    """A torchvision network with a one-logit head (ctlib's ``resnet18`` and ``shufflenet``)."""
    # lazy: torchvision's import is slow and only the network tests need it
    import torchvision

    torch.manual_seed(0)
    return getattr(torchvision.models, name)(num_classes=1).train()


def train_both(
    name: str,
    size: int,
    steps: int,
    kwargs: dict[str, float],
    lr_change: tuple[int, float] | None,
    **options: object,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Initial, torch-optimizer's and ForeachLamb's parameters after ``steps`` steps of two
    copies of a network (BatchNorm in train mode) on the same random batches of 8."""
    reference = network(name)
    model = copy.deepcopy(reference)
    initial = [p.detach().clone() for p in reference.parameters()]
    optimizers = [
        (reference, torch_optimizer.Lamb(reference.parameters(), **kwargs)),
        (model, ForeachLamb(model.parameters(), **kwargs, **options)),
    ]
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        images = torch.randn(8, 3, size, size, generator=generator)
        labels = torch.randint(0, 2, (8, 1), generator=generator).float()
        for net, optimizer in optimizers:
            if lr_change is not None and step == lr_change[0]:
                for group in optimizer.param_groups:
                    group["lr"] = lr_change[1]  # as ctlib.train's schedule does, per epoch
            optimizer.zero_grad(set_to_none=True)
            F.binary_cross_entropy_with_logits(net(images), labels).backward()
            optimizer.step()
    return initial, list(reference.parameters()), list(model.parameters())


@pytest.mark.parametrize(
    ("name", "size", "steps", "kwargs", "lr_change"),
    [
        ("resnet18", 32, 10, RECIPE, (5, 1e-4)),
        ("shufflenet_v2_x0_5", 64, 30, RECIPE, (15, 1e-4)),
        ("shufflenet_v2_x0_5", 64, 30, {}, None),
        ("shufflenet_v2_x0_5", 64, 30, {**RECIPE, "multi_tensor": True}, (15, 1e-4)),
    ],
    ids=["resnet18-recipe", "shufflenet-recipe", "shufflenet-defaults", "shufflenet-multi-tensor"],
)
def test_matches_torch_optimizer_on_a_network(
    name: str, size: int, steps: int, kwargs: dict[str, float], lr_change: tuple[int, float] | None
) -> None:
    options = {"multi_tensor": kwargs.pop("multi_tensor")} if "multi_tensor" in kwargs else {}
    initial, expected, actual = train_both(name, size, steps, kwargs, lr_change, **options)
    norms = torch.stack([p.norm() for p in initial])
    # the network exercises all three branches of the trust ratio
    assert (norms > 10).any() and (norms == 0).any() and ((norms > 0) & (norms < 10)).any()
    moved = max((e - p).abs().max().item() for e, p in zip(expected, initial))
    assert moved > 1e-3, "the reference did not train; the comparison would prove nothing"
    for e, a in zip(expected, actual, strict=True):
        torch.testing.assert_close(a.detach(), e.detach(), rtol=RTOL, atol=ATOL)


# ---- hard cases on bare tensors --------------------------------------------------------------


def hard_params() -> list[dict[str, object]]:
    """Two groups: a weight of norm ~50 (> clamp_value), one of norm ~0.6, a zero weight, a
    weight whose gradient is always zero, one that never gets one, one that skips steps (its
    ``step`` lags behind), a channels-last 4-D weight and a float64 one."""
    generator = torch.Generator().manual_seed(0)

    def param(*shape: int, scale: float = 1.0, dtype: torch.dtype = torch.float32):
        return torch.nn.Parameter(scale * torch.randn(*shape, generator=generator, dtype=dtype))

    big, small = param(50, 50), param(40, scale=0.1)
    zero, zero_grad = torch.nn.Parameter(torch.zeros(7)), param(5, 3)
    no_grad, sometimes = param(4), param(6, 2)
    conv = torch.nn.Parameter(param(4, 3, 3, 3).data.to(memory_format=torch.channels_last))
    double = param(9, dtype=torch.float64)
    return [
        {"params": [big, small, zero, zero_grad, no_grad]},
        {"params": [sometimes, conv, double], "lr": 1e-2, "weight_decay": 0.0},
    ]


def set_grads(params: list[torch.Tensor], step: int, generator: torch.Generator) -> None:
    big, small, zero, zero_grad, no_grad, sometimes, conv, double = params
    for p in (big, small, zero, sometimes, conv, double):
        p.grad = 1e-2 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
    conv.grad = conv.grad.contiguous(memory_format=torch.channels_last)
    zero_grad.grad = torch.zeros_like(zero_grad)
    no_grad.grad = None
    if step % 3 == 1:
        sometimes.grad = None


def run_on(
    optimizer: torch.optim.Optimizer, steps: int, first_step: int = 0
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """``steps`` steps of ``optimizer`` with :func:`set_grads`' gradients (seeded by the first
    step, so that a resumed run sees what an uninterrupted one does)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    generator = torch.Generator().manual_seed(first_step + 1)
    for step in range(first_step, first_step + steps):
        set_grads(params, step, generator)
        optimizer.step()
    return params, optimizer


def run(
    optimizer_class: type[torch.optim.Optimizer], steps: int, kwargs: dict[str, object]
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """``steps`` steps from :func:`hard_params`."""
    return run_on(optimizer_class(hard_params(), **kwargs), steps)


LAMB_VARIANTS = [
    {"weight_decay": 1.0},
    {"weight_decay": 1.0, "debias": True},
    {"weight_decay": 0.1, "adam": True},
    {"weight_decay": 0.1, "adam": True, "debias": True},
    {"clamp_value": 0.5, "eps": 1e-8, "betas": (0.8, 0.99)},
]


def assert_same(expected: torch.optim.Optimizer, actual: torch.optim.Optimizer) -> None:
    """Same parameters and same per-parameter state (values and ``step``'s type)."""
    for e_group, a_group in zip(expected.param_groups, actual.param_groups, strict=True):
        for e, a in zip(e_group["params"], a_group["params"], strict=True):
            torch.testing.assert_close(a.detach(), e.detach(), rtol=RTOL, atol=ATOL)
            e_state, a_state = expected.state[e], actual.state[a]
            assert set(a_state) == set(e_state)
            for key, value in e_state.items():
                if key == "step":
                    assert type(a_state[key]) is type(value) and a_state[key] == value
                else:  # torch-optimizer's trust_ratio is the int 1 where a norm is zero
                    a_value, e_value = (
                        torch.as_tensor(v, dtype=e.dtype) for v in (a_state[key], value)
                    )
                    torch.testing.assert_close(a_value, e_value, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("multi_tensor", [False, True], ids=["per-tensor", "multi-tensor"])
@pytest.mark.parametrize("kwargs", LAMB_VARIANTS, ids=str)
def test_matches_torch_optimizer_on_hard_cases(
    kwargs: dict[str, object], multi_tensor: bool
) -> None:
    expected_params, expected = run(torch_optimizer.Lamb, 30, kwargs)
    actual_params, actual = run(ForeachLamb, 30, {**kwargs, "multi_tensor": multi_tensor})
    assert_same(expected, actual)
    big, small, no_grad = expected_params[0], expected_params[1], expected_params[4]
    assert big.norm() > 10 and 0 < small.norm() < 10
    assert not actual.state[actual_params[4]], "a parameter without a gradient got state"
    torch.testing.assert_close(actual_params[4], no_grad, rtol=0, atol=0)
    assert actual.state[actual_params[5]]["step"] == 20  # skipped steps 1, 4, ..., 28


def save_and_load(state_dict: dict) -> dict:
    """Through bytes, as a checkpoint goes: ``torch.save``, then ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    ("first", "then"),
    [(torch_optimizer.Lamb, ForeachLamb), (ForeachLamb, torch_optimizer.Lamb)],
    ids=["torch_optimizer-to-foreach", "foreach-to-torch_optimizer"],
)
@pytest.mark.parametrize("kwargs", [{"weight_decay": 1.0}, {"debias": True}], ids=str)
def test_state_dict_round_trip_continues_identically(
    first: type[torch.optim.Optimizer],
    then: type[torch.optim.Optimizer],
    kwargs: dict[str, object],
) -> None:
    """Ten steps with one, a checkpoint, ten more with the other == twenty uninterrupted."""
    _, interrupted = run(first, 10, kwargs)
    saved = save_and_load(interrupted.state_dict())
    groups = [
        {**g, "params": [torch.nn.Parameter(p.detach().clone()) for p in g["params"]]}
        for g in interrupted.param_groups
    ]
    resumed = then(groups, **kwargs)
    resumed.load_state_dict(saved)
    run_on(resumed, 10, first_step=10)
    _, uninterrupted = run(torch_optimizer.Lamb, 10, kwargs)
    run_on(uninterrupted, 10, first_step=10)
    assert_same(uninterrupted, resumed)


def test_tensor_step_is_loaded_as_int() -> None:
    """A ``step`` saved as a tensor (torch.optim's habit) is counted on as an ``int``."""
    params, optimizer = run(ForeachLamb, 5, {"debias": True})
    saved = optimizer.state_dict()
    for state in saved["state"].values():
        state["step"] = torch.tensor(float(state["step"]))
    resumed = ForeachLamb(hard_params(), debias=True)
    resumed.load_state_dict(saved)
    resumed_params = [p for g in resumed.param_groups for p in g["params"]]
    steps = [resumed.state[p]["step"] for p in resumed_params if resumed.state[p]]
    assert steps and all(type(s) is int for s in steps)
    assert [optimizer.state[p]["step"] for p in params if optimizer.state[p]] == steps


# ---- no host reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", LAMB_VARIANTS, ids=str)
def test_step_reads_nothing_back_to_the_host(
    kwargs: dict[str, object], trap_host_reads: Callable[[], None]
) -> None:
    groups = hard_params()
    params = [p for g in groups for p in g["params"]]
    optimizer = ForeachLamb(groups, **kwargs)
    generator = torch.Generator().manual_seed(0)
    trap_host_reads()
    for step in range(3):
        set_grads(params, step, generator)
        optimizer.step()


def test_the_multi_tensor_path_spreads_each_ratio_over_its_own_parameter() -> None:
    optimizer = ForeachLamb(hard_params(), multi_tensor=True)
    params = [p for g in optimizer.param_groups for p in g["params"]][:3]
    views = optimizer._ratio_views(params, torch.tensor([2.0, 3.0, 5.0]))
    for view, p, ratio in zip(views, params, (2.0, 3.0, 5.0), strict=True):
        assert view.shape == p.shape and view.stride() == p.stride()
        assert torch.equal(view, torch.full_like(p, ratio))
    again = optimizer._ratio_views(params, torch.tensor([7.0, 1.0, 0.0]))
    assert again is views  # one buffer and its views, made once, refilled each step
    assert torch.equal(again[2], torch.zeros_like(params[2]))


@pytest.mark.parametrize("multi_tensor", [False, True], ids=["per-tensor", "multi-tensor"])
@pytest.mark.parametrize("kwargs", [{"weight_decay": 1.0}, {"weight_decay": 0.1, "adam": True}],
                         ids=str)  # fmt: skip
def test_a_grad_scaler_hands_over_scale_and_overflow_without_host_reads(
    kwargs: dict[str, object],
    multi_tensor: bool,
    trap_host_reads: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fp16's loss scaling, on the CPU: the scaled step equals the unscaled one, an overflowing
    step changes nothing, and neither reads a value back (GradScaler skips its own read)."""
    expected_params, _ = run(ForeachLamb, 4, kwargs)
    optimizer = ForeachLamb(hard_params(), **kwargs, multi_tensor=multi_tensor)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    generator = torch.Generator().manual_seed(1)
    trap_host_reads()
    for step in range(4):
        set_grads(params, step, generator)
        for p in params:  # as a scaled loss's backward leaves them
            if p.grad is not None:
                p.grad = scaler.scale(p.grad)
        scaler.step(optimizer)
        scaler.update()
    monkeypatch.undo()  # the trap's end: the checks below read values
    for e, a in zip(expected_params, params, strict=True):
        torch.testing.assert_close(a.detach(), e.detach(), rtol=RTOL, atol=ATOL)
    unchanged = [p.detach().clone() for p in params]
    moments = {k: [optimizer.state[p][n].clone() for n in ("exp_avg", "exp_avg_sq")]
               for k, p in enumerate(params) if optimizer.state[p]}  # fmt: skip
    set_grads(params, 4, generator)
    for p in params:
        if p.grad is not None:
            p.grad = scaler.scale(p.grad)
    params[0].grad[0] = float("inf")  # an overflow in one tensor skips the whole step
    params[6].grad[0, 1, 2, 0] = float("nan")
    trap_host_reads()
    scaler.step(optimizer)
    scaler.update()
    monkeypatch.undo()
    for p, before in zip(params, unchanged, strict=True):
        torch.testing.assert_close(p.detach(), before, rtol=0, atol=0)
    for k, (exp_avg, exp_avg_sq) in moments.items():
        assert torch.equal(optimizer.state[params[k]]["exp_avg"], exp_avg), k
        assert torch.equal(optimizer.state[params[k]]["exp_avg_sq"], exp_avg_sq), k
    assert scaler.get_scale() == 512.0  # the scaler saw the overflow: halved


def test_host_read_trap_catches_a_scaler_with_an_optimizer_that_cannot_take_its_flag(
    trap_host_reads: Callable[[], None],
) -> None:
    class Plain(ForeachLamb):
        _step_supports_amp_scaling = False

    optimizer = Plain(hard_params())
    scaler = torch.amp.GradScaler("cpu")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    set_grads(params, 0, torch.Generator().manual_seed(0))
    for p in params:
        if p.grad is not None:
            p.grad = scaler.scale(p.grad)
    trap_host_reads()
    with pytest.raises(HostRead):
        scaler.step(optimizer)


def test_host_read_trap_catches_torch_optimizer(trap_host_reads: Callable[[], None]) -> None:
    groups = hard_params()
    optimizer = torch_optimizer.Lamb(groups)
    set_grads([p for g in groups for p in g["params"]], 0, torch.Generator().manual_seed(0))
    trap_host_reads()
    with pytest.raises(HostRead):
        optimizer.step()


# ---- the rest of the Optimizer contract ------------------------------------------------------


def test_closure_is_evaluated_with_gradients_and_its_loss_returned() -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    expected_weight = torch.nn.Parameter(weight.detach().clone())

    def closure_for(p: torch.nn.Parameter, optimizer: torch.optim.Optimizer):
        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = (p**2).sum()
            loss.backward()
            return loss

        return closure

    optimizer = ForeachLamb([weight], lr=0.1)
    reference = torch_optimizer.Lamb([expected_weight], lr=0.1)
    loss = optimizer.step(closure_for(weight, optimizer))
    reference.step(closure_for(expected_weight, reference))
    assert loss.detach() == pytest.approx(5.0)
    torch.testing.assert_close(weight, expected_weight, rtol=RTOL, atol=ATOL)
    assert ForeachLamb([torch.nn.Parameter(torch.ones(1))]).step() is None


def test_sparse_gradients_are_refused() -> None:
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        ForeachLamb(embedding.parameters()).step()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.0},
        {"eps": -1.0},
        {"betas": (1.0, 0.999)},
        {"betas": (0.9, -0.1)},
        {"weight_decay": -1.0},
        {"clamp_value": -1.0},
    ],
    ids=str,
)
def test_invalid_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Invalid"):
        ForeachLamb([torch.nn.Parameter(torch.ones(2))], **kwargs)
