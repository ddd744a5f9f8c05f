"""Exact decimal strings <-> integer units at a fixed scale of 10^8 (Binance's finest step).

Binance sends prices and quantities as decimal strings with at most 8 decimals ("61737.63000000",
"46.371"). Each becomes the integer number of 10^-8 units, so the book adds and compares exact
integers and never drifts. `units_to_float` gives the float64 nearest to the exact value (the same
float as `float(Decimal(text))`), which is what the Parquet columns hold.
"""

from __future__ import annotations

SCALE_DIGITS = 8
SCALE = 10 ** SCALE_DIGITS
_PAD = tuple(10 ** (SCALE_DIGITS - d) for d in range(SCALE_DIGITS + 1))
_EXACT_FLOAT_LIMIT = 2 ** 53


def to_units(text: str) -> int:
    """`"61737.63"` -> 6173763000000. Raises ValueError for anything that is not a plain
    non-negative decimal with at most 8 significant decimals (signs, exponents, spaces, `_`)."""
    dot = text.find(".")
    if dot < 0:
        digits, decimals = text, 0
    else:
        digits = text[:dot] + text[dot + 1:]
        decimals = len(text) - dot - 1
        if decimals > SCALE_DIGITS:
            extra = text[dot + 1 + SCALE_DIGITS:]
            if extra.strip("0"):
                raise ValueError(f"{text!r} has more than {SCALE_DIGITS} decimals")
            digits = digits[: len(digits) - len(extra)]
            decimals = SCALE_DIGITS
    if not (digits.isascii() and digits.isdigit()) or dot == 0:
        raise ValueError(f"{text!r} is not a plain decimal number")
    return int(digits) * _PAD[decimals]


def units_to_float(units: int) -> float:
    """The float64 nearest to units / 10^8 (correctly rounded, like float(Decimal(text)))."""
    if units < _EXACT_FLOAT_LIMIT:
        return units / 1e8  # both operands exact in float64: IEEE division rounds correctly
    return units / SCALE    # int / int true division is correctly rounded for any size


def units_to_str(units: int) -> str:
    """Units back to a minimal decimal string: 6173763000000 -> "61737.63"."""
    whole, frac = divmod(units, SCALE)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:08d}".rstrip("0")


class UnitsCache(dict):
    """`cache[text]` = to_units(text), remembered: prices and sizes repeat all the time, and a dict
    lookup is ten times cheaper than parsing. Anything that is not a valid decimal string raises
    ValueError (TypeError for unhashable values). Bounded: cleared when it holds `limit` entries."""

    def __init__(self, limit: int = 500_000):
        super().__init__()
        self.limit = limit

    def __missing__(self, text):
        if type(text) is not str:
            raise ValueError(f"{text!r:.40} is not a decimal string")
        units = to_units(text)
        if len(self) >= self.limit:
            self.clear()
        self[text] = units
        return units
