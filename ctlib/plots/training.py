"""Figures of training: the learning-rate schedule beside the paper's, loss curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ctlib.config import TrainConfig, lr_at

__all__ = ["plot_history", "plot_lr_schedule"]


def plot_lr_schedule(config: TrainConfig, paper: TrainConfig | None = None) -> Figure:
    """The learning rate of ``config`` and of the paper's recipe, over the course of training.

    The x axis is the share of training done, so a 5-epoch run and the paper's 100 epochs
    can be compared: the drops come at the same shares (rounded to whole epochs), the
    levels may differ.
    """

    paper = paper or TrainConfig()
    figure, ax = plt.subplots(figsize=(7, 3))
    runs = (
        (paper, f"paper: {paper.epochs} epochs", "-"),
        (config, f"this run: {config.epochs} epochs", "o--"),
    )
    for cfg, label, style in runs:
        starts = np.arange(cfg.epochs + 1)  # epoch e covers [e, e + 1) / epochs
        rates = [lr_at(int(e), cfg) for e in starts[:-1]]
        ax.step(
            100 * starts / cfg.epochs,
            [*rates, rates[-1]],
            style,
            where="post",
            label=label,
            markersize=3,
        )
    ax.set(
        yscale="log",
        xlabel="training done (%)",
        ylabel="learning rate",
        title="LAMB learning-rate schedule (a short run rounds the drops to whole epochs)",
    )
    ax.legend(loc="lower left")
    figure.tight_layout()
    return figure


def plot_history(history: pd.DataFrame) -> Figure:
    """Training loss (and validation loss/accuracy where recorded) per epoch, with the lr."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(history["epoch"], history["train_loss"], "o-", label="training loss")
    if "val_loss" in history:
        left.plot(history["epoch"], history["val_loss"], "s-", label="validation loss")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="training curve")
    left.legend()
    right.step(history["epoch"], history["lr"], where="mid")
    right.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="learning rate used")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure
