"""The PDF pages of ``rekap report`` (reportlab platypus flowables and vector charts).

:mod:`consumers.report` decides what is in the report; this module only lays it out.
Text is set in the PDF base fonts (Helvetica), which need no font file on the machine;
they cover Latin-1 and the typographic dashes, which is all Bahasa Indonesia needs
(no U+2212 minus sign: it would print as a box).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Final

from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import KeepTogether, Paragraph, Spacer, Table, TableStyle

from consumers.shortlist import CRITERIA, LABELS, Shortlist
from rekap.days import zone
from rekap.money import format_idr, format_idr_short

if TYPE_CHECKING:
    from consumers.figures import Totals
    from consumers.report import ReportData

_STYLES = getSampleStyleSheet()
H1: Final = ParagraphStyle("h1", parent=_STYLES["Heading1"], fontSize=18, spaceAfter=4)
H2: Final = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontSize=13, spaceBefore=8)
BODY: Final = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=9, leading=12)
SMALL: Final = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5)
ACCENT: Final = colors.HexColor("#0f766e")
#: Chart area inside the landscape A4 frame (26.7 cm wide).
CHART_W: Final = 25 * cm


def _table(rows: Sequence[Sequence[Any]], widths: Sequence[float] | None = None,
           right_from: int = 1, font_size: float = 8, right_to: int = -1) -> Table:
    """A table with a header row; columns ``right_from`` to ``right_to`` are right-aligned
    numbers."""
    t = Table([list(r) for r in rows], colWidths=widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, -1), "Helvetica", font_size),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", font_size),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6f4f1")),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, ACCENT),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f8f8")]),
        ("ALIGN", (right_from, 0), (right_to, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]))
    return t


def _axis_idr(value: float) -> str:
    """Axis labels: ``Rp50 juta``, ``Rp2,5 miliar`` (axes show shape; tables give exact rupiah)."""
    return format_idr_short(round(value))


def _score(value: float) -> str:
    return f"{value:.{3}f}".replace(".", ",")


def _count(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def _pct(part: int, whole: int) -> str:
    return "0,0%" if whole <= 0 else f"{part * 100 / whole:.1f}".replace(".", ",") + "%"


# ---------------------------------------------------------------- sections --

def summary_section(data: ReportData, headline: Sequence[tuple[str, int, str]],
                    is_money: Callable[[str], bool]) -> list[Any]:
    from consumers.report import long_date

    ev = data.figures.event
    rows: list[list[Any]] = [["Uraian", "Nilai", "Keterangan"]]
    for label, value, text in headline:
        rows.append([label, format_idr(value) if is_money(label) else _count(value), text])
    return [
        Paragraph(f"Laporan Program — {ev.name}", H1),
        Paragraph(f"{ev.venue}, {long_date(ev.starts_on)} – {long_date(ev.ends_on)}", BODY),
        Spacer(1, 0.3 * cm),
        Paragraph("Angka utama", H2),
        _table(rows, [8 * cm, 5 * cm, 11 * cm], font_size=9, right_to=1),
        Spacer(1, 0.2 * cm),
        Paragraph(data.check.sentence(ev.timezone), BODY),
        Paragraph("Setiap angka diambil dari total Redis yang sama yang dibandingkan dengan "
                  "ledger (topik penjualan); nilai uang dalam rupiah bulat.", SMALL),
    ]


def daily_section(rows: Sequence[tuple[date, int, int, int]]) -> list[Any]:
    d = Drawing(CHART_W, 5.6 * cm)
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = 2.4 * cm, 0.8 * cm, CHART_W - 3 * cm, 4.4 * cm
    first = rows[0][0] if rows else date.today()
    plot.data = [[((day - first).days, net) for day, net, _c, _r in rows] or [(0, 0)]]
    plot.lines[0].strokeColor = ACCENT
    plot.lines[0].strokeWidth = 1.4
    plot.xValueAxis.valueMin = 0
    plot.xValueAxis.valueMax = max(1, len(rows) - 1)
    step = max(1, len(rows) // 12)
    plot.xValueAxis.valueSteps = list(range(0, len(rows), step))
    plot.xValueAxis.labelTextFormat = lambda v: (rows[int(v)][0].strftime("%d/%m")
                                                 if 0 <= int(v) < len(rows) else "")
    plot.xValueAxis.labels.fontSize = 7
    plot.yValueAxis.valueMin = 0
    plot.yValueAxis.labelTextFormat = _axis_idr
    plot.yValueAxis.labels.fontSize = 7
    d.add(plot)
    best = max(rows, key=lambda r: r[1]) if rows else None
    note = (f"Hari tertinggi: {best[0]:%d/%m/%Y}, {format_idr(best[1])}. "
            f"Hari dengan penjualan: {sum(1 for r in rows if r[1] > 0)} dari {len(rows)}."
            if best else "Belum ada penjualan.")
    return [KeepTogether([Paragraph("Kurva penjualan bersih harian", H2), d,
                          Paragraph(note, BODY)])]


def channel_section(rows: Sequence[tuple[str, int, int, int]], total: int) -> list[Any]:
    d = Drawing(CHART_W, 5.5 * cm)
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 2.2 * cm, 0.8 * cm, 12 * cm, 4.2 * cm
    chart.data = [[net for _l, net, _c, _r in rows]]
    chart.categoryAxis.categoryNames = [label for label, *_ in rows]
    chart.categoryAxis.labels.fontSize = 8
    chart.valueAxis.valueMin = 0
    chart.valueAxis.labelTextFormat = _axis_idr
    chart.valueAxis.labels.fontSize = 7
    chart.bars[0].fillColor = ACCENT
    d.add(chart)
    table = [["Kanal", "Penjualan bersih", "Transaksi", "Refund", "Porsi"]]
    table += [[label, format_idr(net), _count(count), format_idr(refunds), _pct(net, total)]
              for label, net, count, refunds in rows]
    return [Paragraph("Kanal penjualan", H2), d,
            _table(table, [4.5 * cm, 4.5 * cm, 3 * cm, 4 * cm, 2.5 * cm], font_size=9)]


def refund_section(rows: Sequence[tuple[str, int, int, int]], totals: Totals) -> list[Any]:
    table: list[list[Any]] = [["IKM", "Refund", "Jumlah refund", "Tingkat refund"]]
    table += [[name, format_idr(r), _count(n), _pct(r, gross)] for name, r, n, gross in rows]
    table.append(["Total", format_idr(totals.refunds_idr), _count(totals.refund_count),
                  _pct(totals.refunds_idr, totals.gross_idr)])
    t = _table(table, [7 * cm, 4.5 * cm, 3 * cm, 3 * cm], font_size=8)
    t.setStyle(TableStyle([("FONT", (0, -1), (-1, -1), "Helvetica-Bold", 8)]))
    intro = (f"Refund mengurangi penjualan pada kanal dan hari penjualan asalnya: "
             f"{format_idr(totals.refunds_idr)} dari penjualan kotor "
             f"{format_idr(totals.gross_idr)} ({_pct(totals.refunds_idr, totals.gross_idr)}).")
    return [Paragraph("Refund", H2), Paragraph(intro, BODY), Spacer(1, 0.15 * cm), t]


def ikm_section(rows: Sequence[tuple[int, Any]], total: int) -> list[Any]:
    table: list[list[Any]] = [["#", "IKM", "Kota", "Penjualan bersih", "Kotor", "Refund",
                               "Transaksi", "Porsi"]]
    for rank, i in rows:
        t = i.totals
        table.append([str(rank), i.name, i.city, format_idr(t.amount_idr), format_idr(t.gross_idr),
                      format_idr(t.refunds_idr), _count(t.count), _pct(t.amount_idr, total)])
    widths = [1 * cm, 6 * cm, 4 * cm, 4 * cm, 4 * cm, 3 * cm, 2 * cm, 1.8 * cm]
    top = [(i.name, i.totals.amount_idr) for _r, i in rows[:10]]
    return [Paragraph("IKM", H2), _hbar(top, _axis_idr, "Penjualan bersih, 10 IKM teratas"),
            _table(table, widths, right_from=3, font_size=7.5)]


def shortlist_section(s: Shortlist, raw_text: Callable[[Any, float], str]) -> list[Any]:
    used = [c for c in CRITERIA if s.weights[c] > 0]
    head = ["#", "IKM", "Skor", *[f"{LABELS[c]}\n(bobot {_score(s.weights[c])[:-1]})" for c in used]]
    table: list[list[Any]] = [head]
    for row in s.rows:
        table.append([str(row.rank), row.raw.name, _score(row.score),
                      *[f"{raw_text(c, row.raw.values[c])} / {_score(row.scores[c])[:-1]}" for c in used]])
    (a0, a1), (b0, b1) = s.periods
    notes = [f"Skor = rata-rata berbobot skor kriteria (0–1, min-maks antar-IKM acara). Setiap sel: "
             f"nilai mentah / skor. Pertumbuhan = (B – A) / (A + B), periode A "
             f"{a0:%d/%m/%Y}–{a1:%d/%m/%Y}, periode B {b0:%d/%m/%Y}–{b1:%d/%m/%Y}."]
    notes += [f"{LABELS[c]} tidak dipakai: {why}." for c, why in s.left_out.items()]
    top = [(r.raw.name, r.score) for r in s.rows[:10]]
    return [Paragraph("Shortlist champion (kriteria penilaian)", H2),
            _hbar(top, lambda v: _score(v)[:-1], "Skor, 10 teratas", value_max=1.0),
            Paragraph(" ".join(notes), SMALL), Spacer(1, 0.15 * cm),
            _table(table, [0.8 * cm, 5 * cm, 1.4 * cm, *([(CHART_W - 7.2 * cm) / max(1, len(used))]
                                                          * len(used))],
                   right_from=2, font_size=7)]


def _hbar(pairs: Sequence[tuple[str, float]], fmt: Callable[[float], str], title: str,
          value_max: float | None = None) -> Drawing:
    height = 1.2 * cm + 0.45 * cm * max(1, len(pairs))
    d = Drawing(CHART_W, height)
    chart = HorizontalBarChart()
    chart.x, chart.y = 6 * cm, 0.6 * cm
    chart.width, chart.height = 12 * cm, height - 1.2 * cm
    # reportlab draws the first category at the bottom: reversed, the largest is on top
    chart.data = [[v for _n, v in reversed(pairs)] or [0]]
    chart.categoryAxis.categoryNames = [n for n, _v in reversed(pairs)] or [""]
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    if value_max is not None:
        chart.valueAxis.valueMax = value_max
    chart.valueAxis.labelTextFormat = fmt
    chart.valueAxis.labels.fontSize = 7
    chart.bars[0].fillColor = ACCENT
    d.add(chart)
    d.add(String(6 * cm, height - 0.4 * cm, title, fontName="Helvetica-Bold", fontSize=8))
    return d


def footer(data: ReportData) -> Callable[[Any, Any], None]:
    """Page footer: event, the time of the ledger check, page number."""
    local = data.check.at.astimezone(zone(data.figures.event.timezone))
    text = (f"rekap — {data.figures.event.name} — diperiksa terhadap ledger "
            f"{local:%d/%m/%Y %H.%M} {local.tzname()}")

    def draw(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(colors.grey)
        canvas.drawString(doc.leftMargin, 0.8 * cm, text)
        canvas.drawRightString(doc.pagesize[0] - doc.rightMargin, 0.8 * cm, f"Halaman {doc.page}")
        canvas.restoreState()

    return draw
