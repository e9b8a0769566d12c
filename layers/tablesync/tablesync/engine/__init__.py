"""The step-wise diff engine (differ.py) and its parts: the sides (sides.py), the strategy seam
(strategy.py), the range-checksum walk (walk.py) with its narrowing of differing ranges
(narrowing.py) and its chunk tuning (tuning.py). docs/architecture.md draws the picture."""

from .differ import Differ
from .keys import differing_columns, row_key, rows_by_key
from .sides import ConnectorFactory, Side, SideRef
from .strategy import DifferenceCallback, Strategy

__all__ = [
    "ConnectorFactory",
    "Differ",
    "DifferenceCallback",
    "Side",
    "SideRef",
    "Strategy",
    "differing_columns",
    "row_key",
    "rows_by_key",
]
