"""Tick and lot sizes of the simulated symbols, per venue, and exact decimal formatting.

Prices and quantities are kept as integers (a price in ticks, a quantity in lots) and formatted the
way each venue prints them: spot always with 8 decimals (`"61737.63000000"`), USD-M futures with
the tick's and the lot's own decimals (`"63943.90"`, `"0.003"`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from midas.venues import FUTURES, SPOT

# symbol -> (spot tick, spot lot, futures tick, futures lot, typical price)
_KNOWN: dict[str, tuple[str, str, str, str, str]] = {
    "BTCUSDT": ("0.01", "0.00001", "0.10", "0.001", "60000"),
    "ETHUSDT": ("0.01", "0.0001", "0.01", "0.001", "3000"),
    "BNBUSDT": ("0.01", "0.001", "0.010", "0.01", "550"),
    "SOLUSDT": ("0.01", "0.001", "0.0100", "1", "150"),
}
_GENERIC = ("0.001", "0.01", "0.001", "0.1")
SPOT_DECIMALS = 8
_SCALES = [10 ** d for d in range(19)]


def _decimals(step: str) -> int:
    exponent = Decimal(step).as_tuple().exponent
    return max(0, -int(exponent))


@dataclass(frozen=True)
class Instrument:
    """One symbol on one venue. `tick` and `lot` are in units of 10**-decimals."""

    symbol: str
    venue: str
    price_decimals: int
    qty_decimals: int
    tick: int
    lot: int
    start_price_ticks: int
    median_level_lots: int

    def price(self, ticks: int) -> str:
        return _fixed(ticks * self.tick, self.price_decimals)

    def qty(self, lots: int) -> str:
        return _fixed(lots * self.lot, self.qty_decimals)


def _fixed(units: int, decimals: int) -> str:
    if decimals == 0:
        return str(units)
    whole, frac = divmod(units, _SCALES[decimals])
    return "%d.%0*d" % (whole, decimals, frac)


def instrument(symbol: str, venue: str) -> Instrument:
    """The simulated instrument for `symbol` on `venue` (deterministic for unknown symbols too)."""
    symbol = symbol.upper()
    if symbol in _KNOWN:
        spot_tick, spot_lot, fut_tick, fut_lot, price = _KNOWN[symbol]
    else:
        # An unknown symbol gets a stable price between 50 and 500 derived from its name.
        digest = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:4], "big")
        spot_tick, spot_lot, fut_tick, fut_lot = _GENERIC
        price = str(50 + digest % 451)
    if venue == SPOT:
        tick_s, lot_s = spot_tick, spot_lot
        price_dec = qty_dec = SPOT_DECIMALS
    elif venue == FUTURES:
        tick_s, lot_s = fut_tick, fut_lot
        price_dec, qty_dec = _decimals(fut_tick), _decimals(fut_lot)
    else:
        raise ValueError(f"unknown venue {venue!r}")
    tick = int(Decimal(tick_s) * 10 ** price_dec)
    lot = int(Decimal(lot_s) * 10 ** qty_dec)
    start_ticks = int(Decimal(price) / Decimal(tick_s))
    # A typical resting level is worth about 5,000 USDT.
    median_lots = max(1, int(Decimal(5000) / (Decimal(price) * Decimal(lot_s))))
    return Instrument(symbol, venue, price_dec, qty_dec, tick, lot, start_ticks, median_lots)
