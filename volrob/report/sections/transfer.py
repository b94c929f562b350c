"""Transfer (black-box by transfer): one heatmap per attack and budget (source × target), the transfer ratios, the
"black-box stronger than white-box" check, the perturbations' DCT spectra and, when the run split them, the damage
per frequency band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from volrob.analysis.spectrum import spectrum_table
from volrob.report.assets import display
from volrob.report.figure import save_png
from volrob.report.heatmap import transfer_figure
from volrob.report.labels import budget_text
from volrob.report.page import Details, Gallery, Paragraph, Section
from volrob.report.results_dir import RunFolder
from volrob.report.sections.context import Context
from volrob.report.spectrum_plot import band_bar_plot, spectrum_plot


def perturbation_spectra(run: RunFolder, bins: int = 16) -> pd.DataFrame:
    """Radial DCT energy spectra (:func:`~volrob.analysis.spectrum.spectrum_table`) of every stored perturbation
    (``units/<cell>/<case>.npz``), named ``<attack> <budget> on <source>``, with its ``case``; empty when none is
    stored."""
    frames = []
    for cell in run.record.get("cells") or []:
        name = f"{cell['attack']} {budget_text(cell.get('budget_key'), cell.get('budget'))} on {cell['source']}"
        for path in sorted((run.path / "units" / cell["cell"]).glob("*.npz")):
            with np.load(path) as data:
                delta = torch.from_numpy(np.array(data["delta"], dtype=np.float64))
            frame = spectrum_table({name: delta.reshape(1, *delta.shape[-4:])}, bins)
            frames.append(frame.assign(case=path.stem))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _order(values: pd.Series, preferred: list[str]) -> list[str]:
    seen = [str(v) for v in pd.unique(values)]
    return [p for p in preferred if p in seen] + [v for v in seen if v not in preferred]


def _matrix_blocks(ctx: Context, run: RunFolder, matrices: pd.DataFrame) -> list:
    a, region = ctx.assets, run.region
    names = [m.get("name") for m in run.config.get("models") or []]
    success = float(run.config.get("success_drop") or 0.5)
    blocks: list = []
    for (attack, key, budget), g in matrices.groupby(["attack", "budget_key", "budget"], sort=False, dropna=False):
        sources, targets = _order(g["source"], names), _order(g["model"], names)
        what = f"{attack}, {budget_text(key, budget)}"
        title = f"{ctx.tag()}Transfer of {what}: {region} Dice drop and attack success (n = {int(g['n'].max())})"

        def draw(path: Path, g: pd.DataFrame = g, s: list[str] = sources, t: list[str] = targets) -> Path:
            return save_png(transfer_figure(g, sources=s, targets=t, region=region, success_drop=success), path)

        blocks.append(a.figure(f"transfer_{attack}_{budget_text(key, budget)}", draw, title,
                               "Rows craft, columns are scored; the diagonal is white-box. A drop below zero means "
                               "the perturbation helped that model."))
    shown = matrices.assign(budget=[budget_text(k, v) for k, v in
                                    zip(matrices["budget_key"], matrices["budget"], strict=True)])
    shown = shown[["attack", "budget", "source", "model", "n", "clean_dice", "adversarial_dice", "dice_drop",
                   "success_rate", "transfer_ratio"]].rename(columns={"model": "target"})
    blocks.append(a.table("transfer_matrices", matrices, "Transfer matrices",
                          "transfer ratio = black-box drop ÷ the target's own white-box drop under the same attack "
                          "and budget (– where that is not positive).",
                          shown=display(shown, {"success_rate": ".0%", "transfer_ratio": ".2f"})))
    return blocks


def build(ctx: Context) -> Section | None:
    """None without a transfer stage."""
    run = ctx.results.run("transfer")
    if run is None:
        return None
    matrices = run.table("matrices.csv")
    if matrices is None or matrices.empty:
        return None
    a = ctx.assets
    blocks: list = [Paragraph(
        f"Every perturbation is crafted once on its source model and scored on every target with the target's own "
        f"sliding window; split `{run.config.get('split')}`, region {run.region}. A case counts as a success when "
        f"its Dice falls by at least {float(run.config.get('success_drop') or 0.5):.0%} of its clean value.")]
    blocks += _matrix_blocks(ctx, run, matrices)
    flag = next((f for f in run.flags if f.get("name") == "blackbox_stronger_than_whitebox"), None)
    if flag is not None and flag.get("applicable", True):
        if flag.get("raised"):
            blocks.append(Paragraph(f"**Black-box stronger than white-box:** {flag['message']} {flag['meaning']} "
                                    f"{flag['advice']}", "warning"))
        else:
            blocks.append(Paragraph("Black-box stronger than white-box: not raised. No transferred perturbation hurt "
                                    "a target more than the target's own white-box attack of the same budget did "
                                    "(beyond the check's tolerance)."))
    per_case = perturbation_spectra(run)
    if not per_case.empty:
        spectra = per_case.groupby(["name", "bin_lo", "bin_hi"], sort=False).agg(
            energy_fraction=("energy_fraction", "mean"), case=("case", "nunique")).reset_index()
        title = "DCT energy spectrum of the transferred perturbations"
        n = int(spectra["case"].max())
        blocks.append(a.figure("perturbation_spectra", lambda p: spectrum_plot(spectra, p, title=title, n=n),
                               ctx.tag() + title,
                               "Share of each perturbation's energy by normalised DCT frequency radius, mean over "
                               f"its {n} stored case(s)."))
        blocks.append(Details("Spectrum table", [a.table(
            "perturbation_spectra", spectra.rename(columns={"case": "cases"}),
            "Radial DCT spectra: mean share of the energy per radius bin", shown=display(
                spectra.rename(columns={"case": "cases"}), {"energy_fraction": ".4f", "bin_lo": ".4f",
                                                            "bin_hi": ".4f"}))]))
    bands = run.table("bands_summary.csv")
    if bands is not None and not bands.empty:
        blocks += _band_blocks(ctx, run, bands)
    return Section("transfer", "Transfer between models", blocks)


def _band_blocks(ctx: Context, run: RunFolder, bands: pd.DataFrame) -> list:
    a, region = ctx.assets, run.region
    figures = []
    for (attack, key, budget, source), g in bands.groupby(["attack", "budget_key", "budget", "source"], sort=False,
                                                          dropna=False):
        what = budget_text(key, budget)
        n = int(g["n"].max())
        table = g.rename(columns={"model": "name", "dice_drop": "value"})

        def draw(path: Path, t: pd.DataFrame = table, at: str = str(attack), w: str = what, s: str = str(source),
                 k: int = n) -> Path:
            return band_bar_plot(t, path, ylabel=f"{region} Dice drop", attack=at, budget=w, source=s, n=k,
                                 region=region)

        figures.append(a.figure(f"bands_{attack}_{what}_{source}", draw, f"{ctx.tag()}{region} Dice drop per "
                                f"frequency band: {attack}, {what}, crafted on {source}"))
    shown = bands.assign(budget=[budget_text(k, v) for k, v in zip(bands["budget_key"], bands["budget"],
                                                                    strict=True)]).drop(columns=["budget_key"])
    return [Paragraph("Each perturbation was also split into DCT frequency bands and every band scored on every "
                      "target: which frequencies carry the damage, and which transfer."), Gallery(figures),
            a.table("bands_summary", bands, "Damage per frequency band", shown=display(
                shown.rename(columns={"model": "target"}), {"energy_fraction": ".3f"}))]
