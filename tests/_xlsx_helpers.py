"""Shared pieces for the local-workbook tests and benchmark: a layout like the real one,
tiny real PNG datasets, and a LibreOffice runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from sheetsync.sheets.base import Column, SheetLayout

CLASSES = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x")
SPLITS = ("train", "val")


def make_layout(
    classes: tuple[str, ...] = CLASSES, splits: tuple[str, ...] = SPLITS
) -> SheetLayout:
    """The data sheet's columns as the shared data model describes them."""
    return SheetLayout(
        columns=(
            Column("id", "text", note="stable id of the image"),
            Column("image", "image"),
            Column("path", "text", note="file, relative to the dataset root"),
            Column("url", "text"),
            Column("split", "choice", editable=True, choices=splits),
            Column(
                "label", "choice", editable=True, choices=classes, note="the class; fix it here"
            ),
            Column("action", "choice", editable=True, choices=("keep", "drop")),
            Column("note", "text", editable=True),
            Column("predicted", "text"),
            Column("confidence", "number"),
            Column("margin", "number"),
            Column("loss", "number"),
            Column("issue_score", "number"),
            Column("suspected", "text"),
            Column("why", "text"),
        )
    )


COLUMNS = [c.name for c in make_layout().columns]


def make_png(path: Path, seed: int, size: tuple[int, int] = (120, 90)) -> None:
    """A small grayscale PNG that differs per seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("L", size, 255)
    draw = ImageDraw.Draw(im)
    w, h = size
    x = 10 + (seed * 7) % max(1, w - 20)
    draw.line([(x, 5), (x, h - 5)], fill=0, width=3)
    draw.line([(5, (seed * 13) % h), (w - 5, (seed * 5) % h)], fill=64, width=2)
    im.save(path)


def make_table(
    root: Path, n: int, *, images: bool = True, unique_images: int | None = None
) -> pd.DataFrame:
    """``n`` rows in the layout's columns; with ``images``, real PNGs under ``root``.

    ``unique_images`` caps how many distinct files are drawn (the rest reuse them), which
    keeps big benchmarks quick to set up.
    """
    rows = []
    for i in range(n):
        split = SPLITS[i % 2]
        label = CLASSES[i % len(CLASSES)]
        source = i if unique_images is None else i % unique_images
        rel = f"{split}/{label}/img{i:05d}.png"
        if images:
            target = root / rel
            if unique_images is not None and source != i:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root / _first_path(source), target)
            else:
                make_png(target, i)
        rows.append(
            {
                "id": f"{i:010x}",
                "image": "",
                "path": rel,
                "url": "",
                "split": split,
                "label": label,
                "action": "keep",
                "note": "",
                "predicted": CLASSES[(i * 3) % len(CLASSES)],
                "confidence": round(0.5 + (i % 50) / 100, 4),
                "margin": round(-0.2 + (i % 40) / 100, 4),
                "loss": round(1.0 + i / 1000, 6),
                "issue_score": round((i % 97) / 97, 6),
                "suspected": "",
                "why": "low confidence" if i % 3 == 0 else "",
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _first_path(i: int) -> str:
    return f"{SPLITS[i % 2]}/{CLASSES[i % len(CLASSES)]}/img{i:05d}.png"


def soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


def libreoffice_resave(src: Path, out_dir: Path, profile: Path, *, timeout: float = 180) -> Path:
    """Have LibreOffice open ``src`` and save it again as .xlsx into ``out_dir``."""
    exe = soffice()
    assert exe is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _soffice_env(profile)
    cmd = [
        exe,
        f"-env:UserInstallation={profile.as_uri()}",
        "--headless",
        "--norestore",
        "--convert-to",
        "xlsx:Calc MS Excel 2007 XML",
        "--outdir",
        str(out_dir),
        str(src),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    result = out_dir / (src.stem + ".xlsx")
    if done.returncode != 0 or not result.exists():
        raise AssertionError(
            f"LibreOffice failed ({done.returncode}): {done.stdout}\n{done.stderr}"
        )
    return result


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def zip_text(path: Path, name: str) -> str:
    with zipfile.ZipFile(path) as zf:
        return zf.read(name).decode("utf-8")


def _soffice_env(profile: Path) -> dict[str, str]:
    return dict(os.environ, HOME=str(profile))  # keep LibreOffice away from the real profile


def libreoffice_macro(doc: Path, profile: Path, body: str, *, timeout: float = 180) -> None:
    """Run StarBasic ``body`` in headless LibreOffice, as a person editing ``doc`` would.

    ``body`` sees ``doc`` (the loaded spreadsheet) and must not store or close it: the
    wrapper saves it in place (same .xlsx format) and closes it. A private profile keeps
    parallel runs apart; the module goes into that profile's "My Macros", which
    LibreOffice trusts without asking.
    """
    exe = soffice()
    assert exe is not None
    env = _soffice_env(profile)
    base = [exe, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore"]
    module = profile / "user" / "basic" / "Standard" / "Module1.xba"
    if not module.exists():  # first start creates the profile and its Standard library
        subprocess.run(
            [*base, "--terminate_after_init"], capture_output=True, timeout=timeout, env=env
        )
    code = (
        "Sub Run(url As String)\n"
        "  Dim args(0) As New com.sun.star.beans.PropertyValue\n"
        '  args(0).Name = "Hidden"\n'
        "  args(0).Value = True\n"
        '  doc = StarDesktop.loadComponentFromURL(url, "_blank", 0, args())\n'
        f"{body}\n"
        "  doc.store()\n"
        "  doc.close(True)\n"
        "End Sub\n"
    )
    escaped = (
        code.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
    module.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE script:module PUBLIC "-//OpenOffice.org//DTD OfficeDocument 1.0//EN" "module.dtd">\n'
        '<script:module xmlns:script="http://openoffice.org/2000/script" script:name="Module1" '
        f'script:language="StarBasic">{escaped}</script:module>\n',
        encoding="utf-8",
    )
    before = doc.stat().st_mtime_ns
    done = subprocess.run(
        [*base, f'macro:///Standard.Module1.Run("{doc.resolve().as_uri()}")'],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if done.returncode != 0 or doc.stat().st_mtime_ns == before:
        raise AssertionError(
            f"LibreOffice macro did not save {doc} ({done.returncode}): {done.stderr}"
        )


_CT = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>
<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>
<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>
<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>
</Types>"""
_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>
</Relationships>"""
_WORKBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">
<sheets><sheet name="data" sheetId="1" r:id="rId1"/></sheets></workbook>"""
_WORKBOOK_RELS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>
<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>
<Relationship Id="rId3" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
</Relationships>"""
_STYLES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">
<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>
<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>
<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>
</styleSheet>"""


def write_excel_like_workbook(
    path: Path, sheet_data: str, shared_strings: list[str], dimension: str
) -> None:
    """A workbook shaped like Excel's own files (shared strings, rich text, cached values).

    ``shared_strings`` items are raw ``<si>`` contents, so rich-text runs can be given.
    """
    sst = "".join(f"<si>{s}</si>" for s in shared_strings)
    sheet = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        f'<dimension ref="{dimension}"/><sheetData>{sheet_data}</sheetData></worksheet>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", _CT)
        zf.writestr("_rels/.rels", _RELS)
        zf.writestr("xl/workbook.xml", _WORKBOOK)
        zf.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        zf.writestr("xl/styles.xml", _STYLES)
        zf.writestr(
            "xl/sharedStrings.xml",
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            f'count="{len(shared_strings)}" uniqueCount="{len(shared_strings)}">{sst}</sst>',
        )
        zf.writestr("xl/worksheets/sheet1.xml", sheet)
