"""Training: the curves of every model the study trained or fine-tuned."""

from __future__ import annotations

from volrob.report.page import Paragraph, Section
from volrob.report.sections.context import Context
from volrob.report.training_plot import training_plot


def build(ctx: Context) -> Section | None:
    """None when the study trained nothing (given checkpoints, or a single run)."""
    logs = {t.name: t.log for t in ctx.results.trained if t.log is not None and not t.log.empty}
    if not logs:
        return None
    a = ctx.assets
    title = f"Training curves of {len(logs)} model(s)"
    fig = a.figure("training", lambda p: training_plot(logs, p, title=title), ctx.tag() + title,
                   "Fine-tunes start from their source's weights; their epochs count from 1.")
    text = "; ".join(f"{t.name}: best mean validation Dice {t.stage.get('best_val_dice', float('nan')):.3f} at "
                     f"epoch {t.stage.get('best_epoch')}" for t in ctx.results.trained if t.name in logs)
    return Section("training", "Training", [Paragraph(text + "."), fig])
