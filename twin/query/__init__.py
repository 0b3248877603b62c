"""Area queries (圈选): parse a drawn area, exact summaries and records inside it, H3 overlays, grid dossiers.

The point/partition index and the compiled kernels behind them are private (``_index``, ``_kernels``)."""
