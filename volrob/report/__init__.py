"""Reports: one self-contained page per study or run (:func:`build_report`, ``volrob report``) and the matplotlib
figures it and the engine draw (Agg, written atomically).

Each figure is a pure ``*_figure(table, ...) -> Figure`` and a thin ``*_plot(table, path, ...) -> Path`` writer.
"""

from volrob.report.budget_plot import budget_figure, budget_plot, budget_table
from volrob.report.build import build_report
from volrob.report.heatmap import transfer_figure, transfer_plot
from volrob.report.query_plot import query_figure, query_plot
from volrob.report.scatter_plot import scatter_figure, scatter_plot
from volrob.report.spectrum_plot import band_bar_figure, band_bar_plot, spectrum_figure, spectrum_plot

__all__ = ["band_bar_figure", "band_bar_plot", "budget_figure", "budget_plot", "budget_table", "build_report",
           "query_figure",
           "query_plot", "scatter_figure", "scatter_plot", "spectrum_figure", "spectrum_plot", "transfer_figure",
           "transfer_plot"]
