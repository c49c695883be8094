"""The look of billing PDFs: fonts, styles, the page frame with "Page X of N" (reportlab).

Why DejaVu Sans: reportlab's built-in Helvetica only has the Windows-1252 characters, and
customer names, addresses and destinations are not all Western European ("Česko", "Ελλάδα").
DejaVu (Debian's fonts-dejavu-core) covers them; without it reportlab's bundled Vera is used.
Fonts are embedded (subset), so the PDF looks the same wherever it is opened.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import reportlab
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

PAGE = A4
MARGIN = 18 * mm
WIDTH = PAGE[0] - 2 * MARGIN
GREY = colors.HexColor("#5f6368")
RULE = colors.HexColor("#c8ccd0")
SHADE = colors.HexColor("#f1f3f4")
_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
_VERA = Path(reportlab.__file__).parent / "fonts"


@cache
def fonts() -> tuple[str, str]:
    """(regular, bold) font names, registered once per process."""
    for regular, bold in ((_DEJAVU / "DejaVuSans.ttf", _DEJAVU / "DejaVuSans-Bold.ttf"),
                          (_VERA / "Vera.ttf", _VERA / "VeraBd.ttf")):
        if regular.exists() and bold.exists():
            pdfmetrics.registerFont(TTFont("Invoice", str(regular)))
            pdfmetrics.registerFont(TTFont("Invoice-Bold", str(bold)))
            return "Invoice", "Invoice-Bold"
    return "Helvetica", "Helvetica-Bold"


@cache
def styles() -> dict[str, ParagraphStyle]:
    regular, bold = fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=9, leading=11.5)  # tables use 8.5 pt
    return {
        "base": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5, textColor=GREY),
        "cell": ParagraphStyle("cell", parent=base, fontSize=8.5, leading=10.5),
        "label": ParagraphStyle("label", parent=base, fontSize=7.5, leading=9.5, textColor=GREY),
        "seller": ParagraphStyle("seller", parent=base, fontName=bold, fontSize=13, leading=16),
        "title": ParagraphStyle("title", parent=base, fontName=bold, fontSize=20, leading=24, alignment=TA_RIGHT),
        "h2": ParagraphStyle("h2", parent=base, fontName=bold, fontSize=10.5, leading=14, spaceBefore=8,
                             spaceAfter=3),
        "bold": ParagraphStyle("bold", parent=base, fontName=bold),
        "right": ParagraphStyle("right", parent=base, alignment=TA_RIGHT),
        "void": ParagraphStyle("void", parent=base, fontName=bold, fontSize=11, leading=14,
                               textColor=colors.HexColor("#b3261e")),
    }


def table_style(header: bool = True, numeric_from: int = 1) -> list[tuple[Any, ...]]:
    """Lines tables: a shaded header row repeated on each page, thin rules, numbers right-aligned."""
    regular, bold = fonts()
    out: list[tuple[Any, ...]] = [
        ("FONT", (0, 0), (-1, -1), regular, 8.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        out += [("FONT", (0, 0), (-1, 0), bold, 8), ("BACKGROUND", (0, 0), (-1, 0), SHADE),
                ("TEXTCOLOR", (0, 0), (-1, 0), GREY), ("LINEBELOW", (0, 0), (-1, 0), 0.6, GREY)]
    return out


def numbered_canvas(footer_left: str) -> type[canvas.Canvas]:
    """A canvas class that writes ``footer_left`` and "Page X of N" on every page once N is known."""

    class NumberedCanvas(canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()  # type: ignore[attr-defined]  # what Canvas.showPage does after emitting

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._footer(total)
                super().showPage()
            super().save()

        def _footer(self, total: int) -> None:
            self.setFont(fonts()[0], 7.5)
            self.setFillColor(GREY)
            self.setStrokeColor(RULE)
            self.line(MARGIN, 13 * mm, PAGE[0] - MARGIN, 13 * mm)
            self.drawString(MARGIN, 9 * mm, footer_left)
            self.drawRightString(PAGE[0] - MARGIN, 9 * mm, f"Page {self.getPageNumber()} of {total}")

    return NumberedCanvas
