"""Render ``docs/workbook.png``: the pushed workbook as LibreOffice Calc shows it at 100%, and
``docs/report.png``: the top of the ``sheetsync report`` page as headless Chromium draws it.

Usage::

    python docs/screenshot.py [--epochs 8] [--out docs/workbook.png]   # or: make screenshot

It runs the real loop on the demo's synthetic dataset (``sheetsync.demo.make_dataset``, so no
competition image ends up in the repository): init, train, push. Then, in a copy of the
workbook, the print area is set to what a 1600 px wide Calc window shows at 100% zoom
(columns from A while they fit in ``--screen-width`` pixels, the first ``--rows`` rows) and
printed at 100% scale with LibreOffice headless; ``pdftoppm`` turns the page into a PNG at
96 dpi, where one point is 4/3 of a screen pixel as in Calc at 100%. The report of the same
project is opened in the Debian Chromium (``/usr/bin/chromium``) through Playwright, network
blocked, once its charts are drawn, and its first screen is saved (``--report-out``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCREEN_WIDTH = 1600  # px of a Calc window, of which about 60 go to row numbers and scroll bar
CHROME = 60


def screen_copy(book: Path, out: Path, rows: int) -> None:
    """A copy of ``book`` whose first printed page is the sheet at 100%, from cell A1."""
    from openpyxl import load_workbook
    from openpyxl.utils import get_column_letter

    wb = load_workbook(book)
    ws = wb["data"]
    cols = ws.max_column
    for other in wb.worksheets:
        if other is not ws:
            other.sheet_state = "hidden"
    ws.print_area = f"A1:{get_column_letter(cols)}{rows + 2}"  # info line, header, rows
    ws.print_title_rows = None
    ws.sheet_properties.pageSetUpPr.fitToPage = False
    ws.page_setup.scale = 100
    ws.page_setup.orientation = "portrait"
    ws.page_setup.paperSize = 66  # A2: 1587 x 2245 px at 96 dpi, as wide as the screen
    ws.print_options.gridLines = True
    ws.page_margins.left = ws.page_margins.right = ws.page_margins.top = 0.2
    ws.page_margins.bottom = ws.page_margins.header = ws.page_margins.footer = 0.1
    wb.save(out)


def render_png(book: Path, out: Path, work: Path, screen: int, rows: int) -> None:
    """First page of ``book`` as LibreOffice prints it at 96 dpi, cut to what a window
    ``screen`` px wide shows (less its row numbers and scroll bar) and to ``rows`` rows."""
    from PIL import Image, ImageChops

    subprocess.run(["soffice", f"-env:UserInstallation=file://{work / 'profile'}", "--headless",
                    "--convert-to", "pdf", "--outdir", str(work), str(book)],
                   check=True, capture_output=True, timeout=300)
    pdf = work / (book.stem + ".pdf")
    subprocess.run(["pdftoppm", "-r", "96", "-png", "-f", "1", "-l", "1", "-singlefile",
                    str(pdf), str(work / "page")], check=True, timeout=120)
    page = Image.open(work / "page.png").convert("RGB")
    box = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    if box is None:
        raise SystemExit(f"{pdf}: LibreOffice drew nothing")
    left, top, right, bottom = box
    page.crop((left, top, min(right, left + screen - CHROME), bottom)).save(out, optimize=True)


CHROMIUM = "/usr/bin/chromium"


def render_report(page_path: Path, out: Path, width: int = 1300, height: int = 1000) -> None:
    """The first screen of the report page, once its charts are drawn, as a PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            # Offline: the page is self-contained; anything but the file itself is refused.
            context.route("**/*", lambda route: route.continue_()
                          if route.request.url.startswith("file:") else route.abort())
            page = context.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_function("window.sheetsyncReport && window.sheetsyncReport.ready",
                                   timeout=60_000)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--screen-width", type=int, default=SCREEN_WIDTH)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("workbook.png"))
    parser.add_argument("--report-out", type=Path, default=Path(__file__).with_name("report.png"))
    parser.add_argument("--keep", type=Path, help="also copy the pushed workbook here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from sheetsync._words import describe
    from sheetsync.demo import make_dataset
    from sheetsync.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_dataset(work / "data", per_class={"train": 30, "val": 8})
        project, _ = Project.init(work / "data", work)
        if args.epochs:
            project.train(epochs=args.epochs)
        print("\n".join(describe(project.push())))
        book = project.config.resolve(project.config.local.path)
        if args.keep:
            shutil.copy2(book, args.keep)
        screen_copy(book, work / "screen.xlsx", args.rows)
        render_png(work / "screen.xlsx", args.out, work, args.screen_width, args.rows)
        print(f"wrote {args.out}: {args.rows} rows, {args.screen_width - CHROME} px wide")
        if not args.epochs:
            print("no report: it maps a trained model's embeddings (--epochs 0)")
            return 0
        report = project.report(out=work / "report.html")
        render_report(report.path, args.report_out)
        print(f"wrote {args.report_out}: the first screen of the report ({report.n_images} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
