"""MIDAS: Market Intelligence Data Acquisition System.

Records Binance order books and trades, rebuilds the exact book on a fixed grid, computes
features in DuckDB and catalogs every partition. The data's way is one straight line:

    wire (midas.wire) -> raw records (midas.raw) -> book (midas.book) -> grid rows
    -> features (midas.features) -> catalog (midas.catalog)
"""

__version__ = "0.1.0"
