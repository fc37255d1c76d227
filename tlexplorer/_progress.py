"""Progress bars: every long step shows its name, a count and an estimate of the time left."""
from __future__ import annotations

#: tqdm's default layout, with the count shown to one decimal: bars whose count moves in fractions
#: (one instance's conductance path spread over several passes) then move visibly within an item.
FRACTION_BAR = "{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def fraction_bar_format(total) -> "str | None":
    """:data:`FRACTION_BAR` when the total is known (tqdm's own layout otherwise)."""
    return FRACTION_BAR if total else None
