"""``rekap report EVENT``: the programme report ops send upward, as PDF and XLSX.

What it holds (Bahasa Indonesia): the headline totals (``Rp5.230.000.000``, "Rp5,23
miliar"), the totals of the event's child events (the exhibition), the daily curve,
the channels, the IKM table, refunds, and the champion shortlist
(:mod:`consumers.shortlist`), with charts in both files.

Checked first, written after: :func:`consumers.reconcile.reconcile` folds the sales topic
(the ledger) and compares it with a snapshot of Redis; if it finds any difference, or
records the worker has not applied yet, nothing is written and the command exits
non-zero with the reason. Otherwise every figure is taken from *that same snapshot*
(``Report.trees``), not read again, so a sale applied a moment later cannot slip into a
report that says it was checked. The report names the time of the check and the sales
topic's end offsets it covered.

Files: ``laporan-<event>.pdf`` and ``laporan-<event>.xlsx`` in ``--out`` (default
``REKAP_RUNTIME_DIR/laporan``), each written to a temporary name and renamed, so a
failed run leaves the previous report whole. Libraries: openpyxl (XLSX, native charts,
``"Rp"#,##0`` number formats) and reportlab (PDF with its own vector charts); both are
pure Python wheels or ship their binaries, so ``pip install`` is the whole setup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from consumers.figures import EventFigures, Totals, from_hashes
from consumers.reconcile import Report as Reconciled
from consumers.shortlist import CRITERIA, LABELS, Shortlist, build, raw_text
from rekap.days import zone
from rekap.errors import RekapError
from rekap.money import format_idr_short
from rekap.names import CHANNELS
from rekap.registry import Registry
from rekap.settings import Settings
from streams.web.queries import CHANNEL_LABELS

MONTHS: Final = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus",
                 "September", "Oktober", "November", "Desember")
#: The Excel number format of rupiah: integer, thousands grouped by the reader's locale.
RUPIAH_FORMAT: Final = '"Rp"#,##0'
COUNT_FORMAT: Final = "#,##0"
#: IKM shown in the charts of the leaderboard and the shortlist (the tables list all).
CHART_TOP: Final = 10


class NotChecked(RekapError):
    """Reconcile found a difference (or unapplied records): the report is not written."""


@dataclass(frozen=True)
class Check:
    """What the report quotes about its check against the ledger."""

    at: datetime
    topic: str
    ends: dict[int, int]
    records: int

    def sentence(self, timezone: str) -> str:
        local = self.at.astimezone(zone(timezone))
        offsets = ", ".join(f"p{p}: {o}" for p, o in sorted(self.ends.items()))
        return (f"Diperiksa terhadap ledger pada {long_date(local.date())} pukul "
                f"{local:%H.%M.%S} {local.tzname()}: {count_text(self.records)} catatan "
                f"topik {self.topic} hingga offset akhir {offsets}; tidak ada selisih.")


@dataclass(frozen=True)
class ReportData:
    figures: EventFigures
    shortlist: Shortlist
    check: Check


@dataclass(frozen=True)
class Written:
    pdf: Path
    xlsx: Path
    check: Check
    #: The event's time zone, in which the check's time is quoted.
    timezone: str


def long_date(d: date) -> str:
    """``6 Juni 2022``."""
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def count_text(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def pct_text(part: int, whole: int) -> str:
    return "0,0%" if whole <= 0 else f"{part * 100 / whole:.1f}".replace(".", ",") + "%"


# ------------------------------------------------------------------- check --

def checked_data(settings: Settings, registry: Registry, reconciled: Reconciled, event_id: str,
                 at: datetime) -> ReportData:
    """The report's figures from a clean reconcile's own snapshot; :class:`NotChecked` if
    it was not clean."""
    if not reconciled.ok:
        head = reconciled.differences[:5]
        more = len(reconciled.differences) - len(head)
        raise NotChecked(
            "reconcile found differences between Redis and the ledger, so no report was written "
            "(run `rekap reconcile` for the full list; `rekap rebuild` rebuilds Redis from the "
            "ledger):\n  " + "\n  ".join(head) + (f"\n  … and {more} more" if more > 0 else ""))
    hashes = {k: v for t in reconciled.trees.values() for k, v in t.hashes.items()}
    # the generation reconcile read: a `rekap rebuild` switching meanwhile changes nothing here
    figures = from_hashes(reconciled.keys, registry, event_id, hashes)
    check = Check(at=at, topic=settings.topic_sales, ends=dict(reconciled.ends),
                  records=reconciled.records)
    return ReportData(figures, build(figures), check)


def run(settings: Settings, event_id: str, out_dir: Path | None = None,
        timeout_s: float = 30.0) -> Written:
    """``rekap report``: reconcile, then write both files."""
    from consumers.reconcile import reconcile
    from rekap.errors import ConfigError
    from rekap.redisconn import REDIS_ERRORS, connect_sync, unavailable
    from rekap.registry import load_registry

    registry = load_registry(settings.registry_path)
    if event_id not in registry.events:
        raise ConfigError(f"event {event_id!r} is not in the registry {settings.registry_path} "
                          "(known: " + ", ".join(registry.events) + ")")
    client = connect_sync(settings)
    try:
        reconciled = reconcile(settings, registry, client, timeout_s)
    except REDIS_ERRORS as exc:
        raise unavailable(settings, exc, "reading totals to check the report") from exc
    finally:
        client.close()
    data = checked_data(settings, registry, reconciled, event_id, datetime.now(UTC))
    out = out_dir or Path(settings.runtime_dir) / "laporan"
    out.mkdir(parents=True, exist_ok=True)
    pdf, xlsx = out / f"laporan-{event_id}.pdf", out / f"laporan-{event_id}.xlsx"
    _atomic(xlsx, lambda tmp: write_xlsx(data, tmp))
    _atomic(pdf, lambda tmp: write_pdf(data, tmp))
    return Written(pdf, xlsx, data.check, data.figures.event.timezone)


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------- content --

def headline_rows(f: EventFigures) -> list[tuple[str, int, str]]:
    """(label, integer, how it reads) of the summary; the XLSX and the PDF show the same."""
    t = f.totals
    rows = [
        ("Penjualan bersih", t.amount_idr, format_idr_short(t.amount_idr)),
        ("Penjualan kotor", t.gross_idr, format_idr_short(t.gross_idr)),
        ("Refund", t.refunds_idr, format_idr_short(t.refunds_idr)),
        ("Jumlah transaksi", t.count, count_text(t.count)),
        ("Jumlah refund", t.refund_count, count_text(t.refund_count)),
        ("Kuantitas terjual", t.quantity, count_text(t.quantity)),
        ("IKM peserta", len(f.ikm), count_text(len(f.ikm))),
        ("IKM dengan penjualan", sum(1 for i in f.ikm if i.totals.count > 0),
         count_text(sum(1 for i in f.ikm if i.totals.count > 0))),
    ]
    for child, ct in f.children:
        rows.append((f"Penjualan bersih — {child.name}", ct.amount_idr,
                     f"{format_idr_short(ct.amount_idr)} ({long_date(child.starts_on)} – "
                     f"{long_date(child.ends_on)})"))
    return rows


#: Labels of :func:`headline_rows` whose value is money (formatted as rupiah).
MONEY_LABELS: Final = frozenset({"Penjualan bersih", "Penjualan kotor", "Refund"})


def is_money(label: str) -> bool:
    return label in MONEY_LABELS or label.startswith("Penjualan bersih —")


def daily_rows(f: EventFigures) -> list[tuple[date, int, int, int]]:
    """(day, net, count, refunds) for every day of the event's window."""
    return [(d, f.totals.day_net(d), int(f.totals.by_day.get(d, {}).get("count", 0)),
             int(f.totals.by_day.get(d, {}).get("refunds_idr", 0))) for d in f.window()]


def channel_rows(t: Totals) -> list[tuple[str, int, int, int]]:
    """(label, net, count, refunds) per channel, every channel."""
    return [(CHANNEL_LABELS[c], t.channel_net(c), int(t.by_channel[c]["count"]),
             int(t.by_channel[c]["refunds_idr"])) for c in CHANNELS]


def ikm_rows(f: EventFigures) -> list[tuple[int, Any]]:
    """(rank by net, IKM figures), net descending then id; equal nets share a rank."""
    ordered = sorted(f.ikm, key=lambda i: (-i.totals.amount_idr, i.ikm_id))
    out: list[tuple[int, Any]] = []
    for n, i in enumerate(ordered, start=1):
        same = out and out[-1][1].totals.amount_idr == i.totals.amount_idr
        out.append((out[-1][0] if same else n, i))
    return out


def refund_rows(f: EventFigures) -> list[tuple[str, int, int, int]]:
    """(IKM name, refunds, refund count, gross) of the IKM with refunds, largest first."""
    rows = [(i.name, i.totals.refunds_idr, i.totals.refund_count, i.totals.gross_idr)
            for i in f.ikm if i.totals.refund_count > 0]
    return sorted(rows, key=lambda r: (-r[1], r[0]))


# -------------------------------------------------------------------- XLSX --

def write_xlsx(data: ReportData, path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    _sheet_summary(wb.active, data)
    _sheet_daily(wb.create_sheet("Harian"), data.figures)
    _sheet_channels(wb.create_sheet("Kanal"), data.figures)
    _sheet_ikm(wb.create_sheet("IKM"), data.figures)
    _sheet_refunds(wb.create_sheet("Refund"), data.figures)
    _sheet_shortlist(wb.create_sheet("Shortlist"), data.shortlist)
    wb.properties.title = f"Laporan {data.figures.event.name}"
    wb.properties.creator = "rekap"
    wb.save(path)


def _bold_row(ws: Any, row: int) -> None:
    from openpyxl.styles import Font

    for cell in ws[row]:
        cell.font = Font(bold=True)


def _widths(ws: Any, widths: list[int]) -> None:
    from openpyxl.utils import get_column_letter

    for n, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(n)].width = w


def _sheet_summary(ws: Any, data: ReportData) -> None:
    from openpyxl.styles import Font

    f = data.figures
    ev = f.event
    ws.title = "Ringkasan"
    ws["A1"] = f"Laporan Program — {ev.name}"
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = f"{ev.venue}, {long_date(ev.starts_on)} – {long_date(ev.ends_on)}"
    ws.append([])
    ws.append(["Uraian", "Nilai", "Keterangan"])
    _bold_row(ws, ws.max_row)
    for label, value, text in headline_rows(f):
        ws.append([label, value, text])
        ws.cell(ws.max_row, 2).number_format = RUPIAH_FORMAT if is_money(label) else COUNT_FORMAT
    ws.append([])
    ws.append([data.check.sentence(ev.timezone)])
    ws.append(["Angka diambil dari total Redis yang sama yang dibandingkan dengan ledger; "
               "nilai uang dalam rupiah bulat."])
    _widths(ws, [48, 20, 52])


def _sheet_daily(ws: Any, f: EventFigures) -> None:
    from openpyxl.chart import LineChart, Reference

    ws.append(["Tanggal", "Penjualan bersih", "Transaksi", "Refund"])
    _bold_row(ws, 1)
    for d, net, count, refunds in daily_rows(f):
        ws.append([d, net, count, refunds])
        ws.cell(ws.max_row, 1).number_format = "dd/mm/yyyy"
        for col in (2, 4):
            ws.cell(ws.max_row, col).number_format = RUPIAH_FORMAT
    chart = LineChart()
    chart.title = "Penjualan bersih harian"
    chart.y_axis.title = "Rupiah"
    chart.y_axis.numFmt = RUPIAH_FORMAT
    chart.x_axis.number_format = "dd/mm"
    chart.add_data(Reference(ws, min_col=2, min_row=1, max_row=ws.max_row), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=ws.max_row))
    chart.width, chart.height = 26, 10
    ws.add_chart(chart, "F2")
    _widths(ws, [12, 20, 12, 16])


def _sheet_channels(ws: Any, f: EventFigures) -> None:
    from openpyxl.chart import BarChart, Reference

    ws.append(["Kanal", "Penjualan bersih", "Transaksi", "Refund", "Porsi"])
    _bold_row(ws, 1)
    for label, net, count, refunds in channel_rows(f.totals):
        ws.append([label, net, count, refunds, pct_text(net, f.totals.amount_idr)])
        for col in (2, 4):
            ws.cell(ws.max_row, col).number_format = RUPIAH_FORMAT
    chart = BarChart()
    chart.title = "Penjualan bersih per kanal"
    chart.y_axis.numFmt = RUPIAH_FORMAT
    chart.add_data(Reference(ws, min_col=2, min_row=1, max_row=ws.max_row), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=1, min_row=2, max_row=ws.max_row))
    chart.width, chart.height = 16, 9
    ws.add_chart(chart, "G2")
    _widths(ws, [18, 20, 12, 16, 10])


def _sheet_ikm(ws: Any, f: EventFigures) -> None:
    from openpyxl.chart import BarChart, Reference

    ws.append(["Peringkat", "IKM", "Kota", "Kategori", "Penjualan bersih", "Penjualan kotor",
               "Refund", "Transaksi", "Jumlah refund", *[CHANNEL_LABELS[c] for c in CHANNELS],
               "Porsi"])
    _bold_row(ws, 1)
    for rank, i in ikm_rows(f):
        t = i.totals
        ws.append([rank, i.name, i.city, i.category, t.amount_idr, t.gross_idr, t.refunds_idr,
                   t.count, t.refund_count, *[t.channel_net(c) for c in CHANNELS],
                   pct_text(t.amount_idr, f.totals.amount_idr)])
        for col in (5, 6, 7, *range(10, 10 + len(CHANNELS))):
            ws.cell(ws.max_row, col).number_format = RUPIAH_FORMAT
    chart = BarChart()
    chart.type = "bar"
    chart.title = f"{CHART_TOP} IKM teratas (penjualan bersih)"
    chart.x_axis.scaling.orientation = "maxMin"
    chart.y_axis.numFmt = RUPIAH_FORMAT
    last = min(ws.max_row, CHART_TOP + 1)
    chart.add_data(Reference(ws, min_col=5, min_row=1, max_row=last), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=2, min_row=2, max_row=last))
    chart.width, chart.height = 18, 10
    ws.add_chart(chart, f"B{ws.max_row + 3}")
    _widths(ws, [10, 28, 18, 14, 18, 18, 16, 11, 13, 16, 16, 16, 16, 9])


def _sheet_refunds(ws: Any, f: EventFigures) -> None:
    ws.append(["IKM", "Refund", "Jumlah refund", "Tingkat refund (dari kotor)"])
    _bold_row(ws, 1)
    for name, refunds, n, gross in refund_rows(f):
        ws.append([name, refunds, n, pct_text(refunds, gross)])
        ws.cell(ws.max_row, 2).number_format = RUPIAH_FORMAT
    ws.append([])
    ws.append(["Total", f.totals.refunds_idr, f.totals.refund_count,
               pct_text(f.totals.refunds_idr, f.totals.gross_idr)])
    ws.cell(ws.max_row, 2).number_format = RUPIAH_FORMAT
    _bold_row(ws, ws.max_row)
    ws.append([])
    ws.append(["Refund per kanal", "Refund"])
    _bold_row(ws, ws.max_row)
    for label, _net, _count, refunds in channel_rows(f.totals):
        ws.append([label, refunds])
        ws.cell(ws.max_row, 2).number_format = RUPIAH_FORMAT
    _widths(ws, [28, 18, 14, 26])


def _sheet_shortlist(ws: Any, s: Shortlist) -> None:
    from openpyxl.chart import BarChart, Reference

    used = [c for c in CRITERIA if s.weights[c] > 0]
    head = ["Peringkat", "IKM", "Skor"]
    for c in used:
        head += [f"{LABELS[c]} (nilai)", f"{LABELS[c]} (skor)"]
    ws.append(head)
    _bold_row(ws, 1)
    for row in s.rows:
        line: list[Any] = [row.rank, row.raw.name, round(row.score, 4)]
        for c in used:
            raw = row.raw.values[c]
            line += [int(raw) if c == "net" else round(raw, 4), round(row.scores[c], 4)]
        ws.append(line)
        if "net" in used:
            ws.cell(ws.max_row, 4 + 2 * used.index("net")).number_format = RUPIAH_FORMAT
    ws.append([])
    ws.append(["Bobot: " + ", ".join(f"{LABELS[c]} {s.weights[c]:.2f}" for c in used)])
    (a0, a1), (b0, b1) = s.periods
    ws.append([f"Pertumbuhan: periode A {a0:%d/%m/%Y}–{a1:%d/%m/%Y} dibanding periode B "
               f"{b0:%d/%m/%Y}–{b1:%d/%m/%Y}; (B − A) / (A + B)."])
    for c, why in s.left_out.items():
        ws.append([f"{LABELS[c]} tidak dipakai: {why}."])
    chart = BarChart()
    chart.type = "bar"
    chart.title = f"Skor {CHART_TOP} teratas"
    chart.x_axis.scaling.orientation = "maxMin"
    last = min(len(s.rows) + 1, CHART_TOP + 1)
    chart.add_data(Reference(ws, min_col=3, min_row=1, max_row=last), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=2, min_row=2, max_row=last))
    chart.width, chart.height = 18, 10
    ws.add_chart(chart, f"B{ws.max_row + 3}")
    _widths(ws, [10, 28, 9, *([16] * (2 * len(used)))])


# --------------------------------------------------------------------- PDF --

def write_pdf(data: ReportData, path: Path) -> None:
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import cm
    from reportlab.platypus import PageBreak, SimpleDocTemplate

    from consumers import reportpdf as p

    f = data.figures
    ev = f.event
    doc = SimpleDocTemplate(str(path), pagesize=landscape(A4), leftMargin=1.5 * cm,
                            rightMargin=1.5 * cm, topMargin=1.5 * cm, bottomMargin=1.5 * cm,
                            title=f"Laporan {ev.name}", author="rekap")
    story: list[Any] = []
    story += p.summary_section(data, headline_rows(f), is_money)
    story += p.daily_section(daily_rows(f))
    story.append(PageBreak())
    story += p.channel_section(channel_rows(f.totals), f.totals.amount_idr)
    story += p.refund_section(refund_rows(f), f.totals)
    story.append(PageBreak())
    story += p.ikm_section(ikm_rows(f), f.totals.amount_idr)
    story.append(PageBreak())
    story += p.shortlist_section(data.shortlist, raw_text)
    doc.build(story, onFirstPage=p.footer(data), onLaterPages=p.footer(data))

