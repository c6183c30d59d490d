"""LAMB without host reads: torch-optimizer's ``Lamb``, computed with ``torch._foreach_*`` ops.

The paper (Sec. 4) trains every network with LAMB. :class:`ForeachLamb` does torch-optimizer's
arithmetic, in its order, on whole lists of tensors, with the trust ratio kept on the device, so
a step never waits on a host read; state dicts load from one optimizer into the other. Why and
how: docs/DEVELOPERS.md, *LAMB without host reads (optim)*.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["ForeachLamb"]

#: What ``params`` may be: tensors, or dicts defining parameter groups.
Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


class ForeachLamb(torch.optim.Optimizer):
    """LAMB (You et al. 2019) with torch-optimizer's arithmetic and no per-tensor host reads.

    The update of a parameter ``p`` with gradient ``g``, as in torch-optimizer's ``Lamb``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        u = m / (sqrt(v) + eps) + weight_decay * p
        trust = clamp(|p|, 0, clamp_value) / |u|   (1 if either norm is 0, or if adam)
        p = p - lr * bias_correction * trust * u

    where ``bias_correction`` is 1, or ``sqrt(1 - beta2**step) / (1 - beta1**step)`` with
    ``debias``. Parameters without a gradient are skipped (their ``step`` does not advance).

    Args:
        params: Parameters to optimise, or dicts defining parameter groups (each may set its
            own ``lr``, ``betas``, ``eps`` and ``weight_decay``).
        lr: Learning rate.
        betas: Coefficients of the running averages of the gradient and of its square.
        eps: Added to the denominator ``sqrt(v)``.
        weight_decay: Decoupled weight decay, added to the update before its norm is taken.
        clamp_value: Upper bound of the weight norm in the trust ratio.
        adam: Use a trust ratio of 1 (plain Adam with decoupled weight decay), for comparison.
        debias: Apply Adam's bias correction; the LAMB paper's version 3 does not.
        multi_tensor: Scale every tensor's update by its own trust ratio in one multi-tensor
            kernel, by reading the ratios from a buffer the size of the parameters (one more
            optimizer state's worth of memory), instead of one kernel per tensor (CUDA's
            ``_foreach`` fast path needs operands of equal shapes; a 0-d ratio is not). None:
            on CUDA, where it saves hundreds of launches a step; the CPU has no fast path.

    With a :class:`torch.amp.GradScaler` (fp16), ``scaler.step(optimizer)`` hands the scale and
    an overflow flag to :meth:`step` as device tensors (``_step_supports_amp_scaling``): the
    gradients are unscaled and an overflowing step leaves parameters and moments unchanged
    without the scaler reading the flag back each step (its ``step`` counter still advances,
    which only ``debias`` would notice).

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> optimizer = ForeachLamb(model.parameters(), lr=3e-4, weight_decay=1.0)
        >>> loss_fn(model(images), labels).backward()
        >>> optimizer.step()
    """

    #: torch.amp.GradScaler hands ``grad_scale`` and ``found_inf`` over instead of syncing
    _step_supports_amp_scaling = True

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0,
        clamp_value: float = 10,
        adam: bool = False,
        debias: bool = False,
        multi_tensor: bool | None = None,
    ) -> None:
        if not lr > 0.0:
            raise ValueError(f"Invalid learning rate {lr!r}: expected lr > 0.")
        if not eps >= 0.0:
            raise ValueError(f"Invalid eps {eps!r}: expected eps >= 0.")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid betas[{i}] {beta!r}: expected 0 <= beta < 1.")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay {weight_decay!r}: expected >= 0.")
        if not clamp_value >= 0.0:
            raise ValueError(f"Invalid clamp_value {clamp_value!r}: expected >= 0.")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        # As in torch-optimizer: optimizer-wide settings, not per group (nor in the state dict).
        self.clamp_value = clamp_value
        self.adam = adam
        self.debias = debias
        self.multi_tensor = multi_tensor
        # per parameter layout: the ratio buffer and its views shaped like the parameters
        self._scale_buffers: dict[tuple, tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]] = {}
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restores the state; a ``step`` stored as a tensor becomes an ``int`` (one read)."""
        super().__setstate__(state)
        for param_state in self.state.values():
            step = param_state.get("step")
            if isinstance(step, torch.Tensor):
                param_state["step"] = int(step.item())

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """Performs one optimisation step.

        Args:
            closure: Re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None without a closure.

        Raises:
            RuntimeError: If a gradient is sparse.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            buckets: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError(
                        "ForeachLamb does not support sparse gradients (nor does LAMB's "
                        "trust ratio make sense for them); use torch.optim.SparseAdam for "
                        "sparse parameters, or make the gradient dense."
                    )
                buckets.setdefault((p.device, p.dtype), []).append(p)
            for params in buckets.values():
                self._update(group, params)
        return loss

    def _update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """One step for parameters of one group on one device with one dtype."""
        beta1, beta2 = group["betas"]
        grads, exp_avgs, exp_avg_sqs, states, step_sizes = [], [], [], [], []
        grad_scale = getattr(self, "grad_scale", None)  # set by GradScaler.step, else absent
        found_inf = getattr(self, "found_inf", None)
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            if self.debias:
                bias_correction = math.sqrt(1 - beta2 ** state["step"])
                bias_correction /= 1 - beta1 ** state["step"]
            else:
                bias_correction = 1
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            states.append(state)
            step_sizes.append(-group["lr"] * bias_correction)

        grads, keep, beta1, beta2 = _from_scaler(grads, grad_scale, found_inf, beta1, beta2)

        # m_t and v_t
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1 - group["betas"][0])
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - group["betas"][1])

        weight_norms = torch.stack(torch._foreach_norm(params)).clamp(0, self.clamp_value)
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denominators, group["eps"])
        adam_steps = torch._foreach_div(exp_avgs, denominators)
        del denominators
        if group["weight_decay"] != 0:
            torch._foreach_add_(adam_steps, params, alpha=group["weight_decay"])
        adam_norms = torch.stack(torch._foreach_norm(adam_steps))
        trust_ratios = torch.where(
            (weight_norms == 0) | (adam_norms == 0), 1.0, weight_norms / adam_norms
        )
        for state, weight_norm, adam_norm, trust_ratio in zip(
            states, weight_norms.unbind(), adam_norms.unbind(), trust_ratios.unbind()
        ):
            state["weight_norm"] = weight_norm
            state["adam_norm"] = adam_norm
            state["trust_ratio"] = trust_ratio

        if keep is not None:
            trust_ratios = trust_ratios * keep  # 0 on overflow: the parameters stay
        if self.adam and keep is None:
            # torch-optimizer: p.add_(adam_step, alpha=-step_size), one scalar per tensor
            for step_size in set(step_sizes):
                same = [i for i, s in enumerate(step_sizes) if s == step_size]
                torch._foreach_add_(
                    [params[i] for i in same], [adam_steps[i] for i in same], alpha=step_size
                )
            return
        if self.adam:  # with a scaler: the "trust ratio" is 1, or 0 on overflow
            trust_ratios = torch.ones_like(trust_ratios) * keep
        multi = self.multi_tensor if self.multi_tensor is not None else params[0].is_cuda
        if multi and len(set(step_sizes)) == 1 and all(map(_dense, params)):
            # the same arithmetic, p + u * s, with s read from a tensor shaped like p
            scales = self._ratio_views(params, trust_ratios * step_sizes[0])
        else:
            # torch-optimizer: p.add_(adam_step, alpha=-step_size * trust_ratio)
            scales = torch._foreach_mul(list(trust_ratios.unbind()), step_sizes)
        torch._foreach_addcmul_(params, adam_steps, scales)

    def _ratio_views(self, params: list[torch.Tensor], ratios: torch.Tensor) -> list[torch.Tensor]:
        """Each of ``ratios`` (one per parameter) spread over a tensor shaped (and strided) like
        its parameter: views of one buffer, filled by two kernels. The buffer, its views and the
        per-parameter sizes are made once per parameter layout (a host-to-device copy then)."""
        key = tuple((id(p), p.shape, p.stride()) for p in params)
        if key not in self._scale_buffers:
            if len(self._scale_buffers) >= 4:  # layouts that come and go: keep the newest
                self._scale_buffers.clear()
            sizes = [p.numel() for p in params]
            buffer = torch.empty(sum(sizes), dtype=ratios.dtype, device=ratios.device)
            offsets = [0, *itertools.accumulate(sizes[:-1])]
            views = [buffer.as_strided(p.shape, p.stride(), offset)
                     for p, offset in zip(params, offsets)]  # fmt: skip
            repeats = torch.tensor(sizes, device=ratios.device)
            self._scale_buffers[key] = (buffer, repeats, views)
        buffer, repeats, views = self._scale_buffers[key]
        buffer.copy_(torch.repeat_interleave(ratios, repeats, output_size=buffer.numel()))
        return views


def _dense(p: torch.Tensor) -> bool:
    """Whether ``p`` fills its memory without gaps or overlaps in a layout a view can copy."""
    return p.is_contiguous() or (
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
    )


def _from_scaler(
    grads: list[torch.Tensor],
    grad_scale: torch.Tensor | None,
    found_inf: torch.Tensor | None,
    beta1: float,
    beta2: float,
) -> tuple[list[torch.Tensor], torch.Tensor | None, Any, Any]:
    """A GradScaler's scale and overflow flag applied on the device: the gradients unscaled
    (into temporaries; ``p.grad`` stays scaled), and on overflow zeroed (``inf * 0`` would be
    NaN) with both betas 1, so the moments stay; ``keep`` (0 on overflow, else 1) then zeroes
    the update. Without a scaler: everything as given, ``keep`` None."""
    keep = None
    if grad_scale is not None:
        grads = torch._foreach_div(grads, grad_scale.to(grads[0].device))
    if found_inf is not None:
        found_inf = found_inf.to(grads[0].device)
        skip = found_inf > 0
        grads = [g.masked_fill(skip, 0.0) for g in grads]
        keep = 1.0 - found_inf.to(grads[0].dtype)
        beta1 = 1.0 - keep * (1.0 - beta1)
        beta2 = 1.0 - keep * (1.0 - beta2)
    return grads, keep, beta1, beta2
