"""Figures of training: the learning-rate schedule beside the paper's, loss curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ctlib.config import TrainConfig, lr_at
from ctlib.plots.palette import REFERENCE, RUN

__all__ = ["plot_history", "plot_lr_schedule"]


def plot_lr_schedule(config: TrainConfig, paper: TrainConfig | None = None) -> Figure:
    """The learning rate of ``config`` and of the paper's recipe, over the course of training.

    The x axis is the share of training done, so a 5-epoch run and the paper's 100 epochs
    can be compared: the drops come at the same shares (rounded to whole epochs), the
    levels may differ. The paper's is drawn in the reference grey, this run in black.
    """

    paper = paper or TrainConfig()
    figure, ax = plt.subplots(figsize=(7, 3))
    runs = (
        (paper, f"paper: {paper.epochs} epochs", "-", REFERENCE, 2.2),
        (config, f"this run: {config.epochs} epochs", "o--", RUN, 1.2),
    )
    for cfg, label, style, colour, width in runs:
        starts = np.arange(cfg.epochs + 1)  # epoch e covers [e, e + 1) / epochs
        rates = [lr_at(int(e), cfg) for e in starts[:-1]]
        ax.step(
            100 * starts / cfg.epochs,
            [*rates, rates[-1]],
            style,
            where="post",
            label=label,
            color=colour,
            linewidth=width,
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
    """Training loss (and validation loss where recorded) per epoch, with the lr: one run, in
    black; training solid, validation dashed."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(history["epoch"], history["train_loss"], "o-", color=RUN, label="training loss")
    if "val_loss" in history:
        left.plot(history["epoch"], history["val_loss"], "s--", color=RUN,
                  markerfacecolor="none", label="validation loss")  # fmt: skip
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="training curve")
    left.legend()
    right.step(history["epoch"], history["lr"], where="mid", color=RUN)
    right.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="learning rate used")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return figure
