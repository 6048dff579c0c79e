"""The training curve: loss per epoch (training and validation) and, where the validation set has
ground truth, its occlusion IoU, as one PNG written atomically."""
from __future__ import annotations

import io

from s3pot.core.atomic import write_bytes_atomic
from s3pot.core.errors import require

from .options import TRAIN_EXTRA


def plot_history(history: list[dict], path, *, title: str = "s3pot train") -> None:
    """``history``: one row per epoch as :class:`~.trainer.Trainer` records it (``epoch``,
    ``train`` and ``val`` loss terms, the latter with ``mean_iou`` where there is ground truth)."""
    matplotlib = require("matplotlib", TRAIN_EXTRA)
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    val_rows = [row for row in history if row.get("val")]
    iou_rows = [row for row in val_rows if "mean_iou" in row["val"]]
    fig, axes = plt.subplots(1, 2 if iou_rows else 1, figsize=(10 if iou_rows else 6, 4),
                             squeeze=False)
    loss = axes[0][0]
    loss.plot(epochs, [row["train"]["total"] for row in history], marker="o", label="training")
    if val_rows:
        loss.plot([row["epoch"] for row in val_rows], [row["val"]["total"] for row in val_rows],
                  marker="s", label="validation")
    loss.set(xlabel="epoch (0: before training)", ylabel="loss L", title="loss")
    loss.legend()
    loss.grid(alpha=0.3)
    loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    if iou_rows:
        iou = axes[0][1]
        iou.plot([row["epoch"] for row in iou_rows], [row["val"]["mean_iou"] for row in iou_rows],
                 marker="s", label="mean over images")
        iou.plot([row["epoch"] for row in iou_rows], [row["val"]["pooled_iou"] for row in iou_rows],
                 marker="^", label="pooled")
        iou.set(xlabel="epoch", ylabel="occlusion IoU", title="validation occlusion IoU", ylim=(0, 1))
        iou.legend()
        iou.grid(alpha=0.3)
        iou.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
