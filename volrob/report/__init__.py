"""Reports: matplotlib figures (Agg, written atomically) and self-contained summaries."""

from volrob.report.heatmap import transfer_heatmap
from volrob.report.query_plot import query_plot
from volrob.report.spectrum_plot import band_bar_plot, spectrum_plot

__all__ = ["band_bar_plot", "query_plot", "spectrum_plot", "transfer_heatmap"]
