"""``rekap booth status``: what the booth's outbox holds, for the staff at the cash box.

Counts, refunds and net rupiah per state (a refund subtracts its amount), as JSON
for scripts or as a table in Bahasa Indonesia, followed by the latest rejections.
"""

from __future__ import annotations

from typing import Any

from producers.booth.outbox import Outbox
from rekap.money import format_idr

#: Outbox states in table order, with their labels.
LABELS = (("pending", "tertunda"), ("sent", "terkirim"), ("rejected", "ditolak"))
#: Rejections listed under the table, newest first.
SHOW_REJECTED = 10


def status_json(booth_id: str, outbox: Outbox) -> dict[str, Any]:
    """``amounts_idr``: net rupiah, refunds subtracted; ``refunds``: how many of ``counts``."""
    return {"booth_id": booth_id, "counts": outbox.counts(), "refunds": outbox.refunds(),
            "amounts_idr": outbox.amounts()}


def print_status(booth_id: str, outbox: Outbox) -> None:
    """The table and the latest rejections, on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    counts, refunds, amounts = outbox.counts(), outbox.refunds(), outbox.amounts()
    table = Table(title=f"Outbox booth {booth_id}")
    table.add_column("Status")
    table.add_column("Jumlah", justify="right")
    table.add_column("Retur", justify="right")
    table.add_column("Nilai bersih", justify="right")
    for state, label in LABELS:
        table.add_row(label, str(counts[state]), str(refunds[state]), format_idr(amounts[state]))
    console = Console()
    console.print(table)
    for sale_id, reason, detail in outbox.rejected(SHOW_REJECTED):
        console.print(f"[red]ditolak[/red] {sale_id}: {reason} — {detail}")
