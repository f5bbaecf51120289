"""Zip-level surgery on .xlsx packages: the fast path of the local backend.

openpyxl holds every cell and picture as a Python object, which makes a 10,000-row sheet
with 10,000 thumbnails slow to load and to save (about a minute on a busy 2-core machine).
So the local backend lets openpyxl handle everything *around* the big data sheet (styles,
validation, other sheets) and uses this module to

* hide the old data sheet from openpyxl when loading (:meth:`Package.without_sheet`),
* stream the data sheet's rows as XML text (:func:`replace_sheet_data`),
* add the thumbnails as one DrawingML part (:meth:`Package.add_pictures`),
* append one row to the scores sheet without touching anything else (:func:`append_row`).

Only the parts named here are changed; every other part is copied byte for byte.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

from ..errors import PackageError

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
NS_XDR = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"
NS_A = "http://schemas.openxmlformats.org/drawingml/2006/main"
REL_DRAWING = NS_R + "/drawing"
REL_IMAGE = NS_R + "/image"
REL_HYPERLINK = NS_R + "/hyperlink"
REL_OFFICE_DOC = NS_R + "/officeDocument"
DRAWING_CT = "application/vnd.openxmlformats-officedocument.drawing+xml"
EMU_PER_PIXEL = 9525

EMPTY_SHEET = (
    f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{NS_MAIN}">'
    "<sheetData/></worksheet>"
).encode()

# Elements that must come after <drawing> in a worksheet (ECMA-376 CT_Worksheet order).
_AFTER_DRAWING = (
    "<legacyDrawing",
    "<legacyDrawingHF",
    "<drawingHF",
    "<picture",
    "<oleObjects",
    "<controls",
    "<webPublishItems",
    "<tableParts",
    "<extLst",
    "</worksheet>",
)


@dataclass(frozen=True)
class Picture:
    """A PNG shown inside cell (row, col) (both 1-based) at width x height pixels."""

    row: int
    col: int
    png: bytes
    width: int
    height: int
    padding: int
    description: str = ""  # alt text: the image's path
    name: str = ""  # the shape's name: what the thumbnail was made from, to reuse it
    link: str = ""  # opened on a click on the picture (the full image's URL)
    offset_x: int | None = None  # pixels from the cell's left edge (default: padding)
    offset_y: int | None = None


class Package:
    """The parts of an .xlsx zip, by name, in their original order."""

    def __init__(self, parts: dict[str, bytes]):
        self.parts = parts

    @classmethod
    def read(cls, source: Path | bytes) -> Package:
        data = io.BytesIO(source) if isinstance(source, bytes) else source
        try:
            with zipfile.ZipFile(data) as zf:
                return cls({info.filename: zf.read(info) for info in zf.infolist()})
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise PackageError(str(e)) from None

    def write(self, fh: io.BufferedIOBase | io.BytesIO) -> None:
        with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for name, data in self.parts.items():
                # PNGs are compressed already; deflating them again only costs time.
                method = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
                zf.writestr(name, data, compress_type=method)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        self.write(buf)
        return buf.getvalue()

    # -- relationships ---------------------------------------------------------------------

    def rels(self, part: str) -> list[tuple[str, str, str]]:
        """(id, type, absolute target) of the part's internal relationships."""
        folder, name = posixpath.split(part)
        rels_name = posixpath.join(folder, "_rels", name + ".rels")
        if rels_name not in self.parts:
            return []
        root = _xml(self.parts[rels_name], rels_name)
        out = []
        for rel in root.iter(f"{{{NS_PKG}}}Relationship"):
            if rel.get("TargetMode") == "External":
                continue
            target = rel.get("Target", "")
            if target.startswith("/"):
                resolved = target.lstrip("/")
            else:
                resolved = posixpath.normpath(posixpath.join(folder, target))
            out.append((rel.get("Id", ""), rel.get("Type", ""), resolved))
        return out

    def workbook_part(self) -> str:
        for _, kind, target in self.rels(""):
            if kind == REL_OFFICE_DOC:
                return target
        raise PackageError("no workbook part (is this an .xlsx file?)")

    def sheet_part(self, sheet_name: str) -> str | None:
        """The part name of the worksheet called ``sheet_name``, None if there is none."""
        book = self.workbook_part()
        targets = {rid: target for rid, _, target in self.rels(book)}
        root = _xml(self.parts[book], book)
        for sheet in root.iter(f"{{{NS_MAIN}}}sheet"):
            if sheet.get("name") == sheet_name:
                return targets.get(sheet.get(f"{{{NS_R}}}id", ""))
        return None

    def _owned(self, part: str) -> set[str]:
        """Parts reachable only through ``part`` (its drawing, pictures, comments...)."""
        reach: set[str] = set()
        todo = [part]
        while todo:
            for _, _, target in self.rels(todo.pop()):
                if target not in reach and target in self.parts:
                    reach.add(target)
                    todo.append(target)
        elsewhere: set[str] = set()
        for name in self.parts:
            if "/_rels/" not in "/" + name:
                continue
            folder, rels_file = posixpath.split(name)
            source = posixpath.join(posixpath.dirname(folder), rels_file[: -len(".rels")])
            if source == part or source in reach:
                continue
            elsewhere.update(target for _, _, target in self.rels(source))
        return reach - elsewhere

    def pictures(self, sheet_part: str) -> list[tuple[str, str, bytes]]:
        """(description, name, image bytes) of every picture drawn on the sheet."""
        out = []
        for _, kind, drawing in self.rels(sheet_part):
            if kind != REL_DRAWING or drawing not in self.parts:
                continue
            media = {rid: target for rid, _, target in self.rels(drawing)}
            for pic in _xml(self.parts[drawing], drawing).iter(f"{{{NS_XDR}}}pic"):
                props = pic.find(f"{{{NS_XDR}}}nvPicPr/{{{NS_XDR}}}cNvPr")
                blip = pic.find(f"{{{NS_XDR}}}blipFill/{{{NS_A}}}blip")
                if props is None or blip is None:
                    continue
                target = media.get(blip.get(f"{{{NS_R}}}embed", ""))
                if target in self.parts:
                    out.append((props.get("descr", ""), props.get("name", ""), self.parts[target]))
        return out

    # -- edits -----------------------------------------------------------------------------

    def without_sheet(self, sheet_name: str) -> Package:
        """A copy in which sheet ``sheet_name`` is empty and owns nothing (quick to load)."""
        part = self.sheet_part(sheet_name)
        if part is None:
            return self
        drop = self._owned(part) | {_rels_name(part)}
        parts = {k: v for k, v in self.parts.items() if k not in drop}
        parts[part] = EMPTY_SHEET
        copy = Package(parts)
        copy._drop_overrides(drop)
        return copy

    def _drop_overrides(self, names: set[str]) -> None:
        ct = self.parts["[Content_Types].xml"].decode("utf-8")
        ct = re.sub(
            r'<Override\b[^>]*PartName="/([^"]*)"[^>]*/>',
            lambda m: "" if m.group(1) in names else m.group(0),
            ct,
        )
        self.parts["[Content_Types].xml"] = ct.encode("utf-8")

    def add_pictures(self, sheet_part: str, pictures: Sequence[Picture]) -> None:
        """Embed ``pictures`` in the sheet as one drawing; identical PNGs are stored once."""
        if not pictures:
            return
        drawing = _free_name(self.parts, "xl/drawings/drawing{}.xml")
        media: dict[bytes, str] = {}
        anchors = []
        for n, pic in enumerate(pictures, start=1):
            rid = media.get(pic.png)
            if rid is None:
                rid = f"rId{len(media) + 1}"
                media[pic.png] = rid
            link_rid = f"rIdLink{n}" if pic.link else ""
            anchors.append(_anchor_xml(pic, n + 1, rid, link_rid))
        rels = [
            f'<Relationship Id="rIdLink{n}" Type="{REL_HYPERLINK}" '
            f'Target="{escape_attr(pic.link)}" TargetMode="External"/>'
            for n, pic in enumerate(pictures, start=1)
            if pic.link
        ]
        number = 0
        for png, rid in media.items():
            number += 1
            while f"xl/media/sheetsync_thumb{number}.png" in self.parts:
                number += 1
            name = f"xl/media/sheetsync_thumb{number}.png"
            self.parts[name] = png
            rels.append(
                f'<Relationship Id="{rid}" Type="{REL_IMAGE}" Target="../media/{posixpath.basename(name)}"/>'
            )
        self.parts[drawing] = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<xdr:wsDr xmlns:xdr="{NS_XDR}" xmlns:a="{NS_A}" xmlns:r="{NS_R}">'
            + "".join(anchors)
            + "</xdr:wsDr>"
        ).encode("utf-8")
        self.parts[_rels_name(drawing)] = _rels_xml(rels)
        rid = self._add_rel(sheet_part, REL_DRAWING, "/" + drawing)
        sheet = self.parts[sheet_part].decode("utf-8")
        at = min(i for i in (sheet.find(tag) for tag in _AFTER_DRAWING) if i >= 0)
        sheet = sheet[:at] + f'<drawing xmlns:r="{NS_R}" r:id="{rid}"/>' + sheet[at:]
        self.parts[sheet_part] = sheet.encode("utf-8")
        ct = self.parts["[Content_Types].xml"].decode("utf-8")
        if not re.search(r'<Default\b[^>]*Extension="png"', ct, re.IGNORECASE):
            ct = ct.replace(
                "</Types>", '<Default Extension="png" ContentType="image/png"/></Types>'
            )
        ct = ct.replace(
            "</Types>", f'<Override PartName="/{drawing}" ContentType="{DRAWING_CT}"/></Types>'
        )
        self.parts["[Content_Types].xml"] = ct.encode("utf-8")

    def _add_rel(self, part: str, kind: str, target: str) -> str:
        name = _rels_name(part)
        existing = self.parts.get(name)
        if existing is None:
            self.parts[name] = _rels_xml([])
            existing = self.parts[name]
        text = existing.decode("utf-8")
        used = set(re.findall(r'\bId="([^"]*)"', text))
        rid = next(f"rIdPic{i}" for i in range(1, len(used) + 2) if f"rIdPic{i}" not in used)
        rel = f'<Relationship Id="{rid}" Type="{kind}" Target="{target}"/>'
        self.parts[name] = text.replace("</Relationships>", rel + "</Relationships>").encode(
            "utf-8"
        )
        return rid


def replace_sheet_data(sheet_xml: bytes, rows_xml: Iterable[str], dimension: str) -> bytes:
    """The worksheet with its <sheetData> content replaced by ``rows_xml``."""
    text = sheet_xml.decode("utf-8")
    match = re.search(r"<sheetData\s*/>|<sheetData\b[^>]*>.*?</sheetData>", text, re.DOTALL)
    if match is None:
        raise PackageError("worksheet without <sheetData>")
    body = "<sheetData>" + "".join(rows_xml) + "</sheetData>"
    text = text[: match.start()] + body + text[match.end() :]
    text = re.sub(r"<dimension\b[^>]*/>", f'<dimension ref="{dimension}"/>', text, count=1)
    return text.encode("utf-8")


def sheet_rows(sheet_xml: bytes) -> dict[int, dict[str, ET.Element]]:
    """The cells of each row of a (small) worksheet: {row: {column letters: <c>}}."""
    root = _xml(sheet_xml, "worksheet")
    out: dict[int, dict[str, ET.Element]] = {}
    for row in root.iter(f"{{{NS_MAIN}}}row"):
        cells = {}
        for c in row.iter(f"{{{NS_MAIN}}}c"):
            ref = c.get("r", "")
            cells[ref.rstrip("0123456789")] = c
        out[int(row.get("r", "0"))] = cells
    return out


def row_xml(
    row: int, cells: Iterable[tuple[str, str | None, object]], height: float | None = None
) -> str:
    """One <row>: cells as (column letters, style id or None, value). Text goes inline."""
    head = f'<row r="{row}" ht="{height}" customHeight="1">' if height else f'<row r="{row}">'
    return head + cells_xml(row, cells) + "</row>"


def cells_xml(row: int, cells: Iterable[tuple[str, str | None, object]]) -> str:
    """The <c> elements of one row; empty unstyled cells are left out."""
    out = []
    for letter, style, value in cells:
        s = f' s="{style}"' if style else ""
        ref = f"{letter}{row}"
        if value is None:
            if style:
                out.append(f'<c r="{ref}"{s}/>')
        elif isinstance(value, str):
            out.append(
                f'<c r="{ref}"{s} t="inlineStr"><is><t xml:space="preserve">{escape_text(value)}</t></is></c>'
            )
        elif isinstance(value, bool):
            out.append(f'<c r="{ref}"{s} t="b"><v>{int(value)}</v></c>')
        elif isinstance(value, int):
            out.append(f'<c r="{ref}"{s}><v>{value}</v></c>')
        elif isinstance(value, float):
            out.append(f'<c r="{ref}"{s}><v>{value!r}</v></c>')
        else:
            raise TypeError(f"cannot store {value!r} in cell {ref}")
    return "".join(out)


def escape_text(text: str) -> str:
    # \r would be folded into \n by every XML parser: keep it as a character reference.
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def escape_attr(text: str) -> str:
    return escape_text(text).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def append_row(sheet_xml: bytes, row: int, cells: str, header_cells: str = "") -> bytes:
    """Add ``cells`` (XML) as row ``row`` of a worksheet, and ``header_cells`` to row 1.

    Rows before ``row`` are left exactly as they were; a row element already numbered
    ``row`` (formatting only: the caller checked it holds no value) is replaced.
    """
    text = sheet_xml.decode("utf-8")
    if re.search(r"<sheetData\s*/>", text):
        text = re.sub(r"<sheetData\s*/>", "<sheetData></sheetData>", text, count=1)
    spans = _row_spans(text)
    if header_cells:
        if 1 in spans:
            start, end = spans[1]
            element = text[start:end]
            if element.endswith("/>"):
                element = element[:-2] + ">" + header_cells + "</row>"
            else:
                element = element[: -len("</row>")] + header_cells + "</row>"
            text = text[:start] + element + text[end:]
        else:
            text = text.replace("<sheetData>", f'<sheetData><row r="1">{header_cells}</row>', 1)
        spans = _row_spans(text)
    new = f'<row r="{row}">{cells}</row>'
    if row in spans:
        start, end = spans[row]
        return (text[:start] + new + text[end:]).encode("utf-8")
    later = [start for r, (start, _) in spans.items() if r > row]
    at = min(later) if later else text.index("</sheetData>")
    return (text[:at] + new + text[at:]).encode("utf-8")


def _row_spans(text: str) -> dict[int, tuple[int, int]]:
    spans = {}
    for m in re.finditer(r"<row\b([^>]*?)(/?)>", text):
        number = re.search(r'\br="(\d+)"', m.group(1))
        if number is None:
            raise PackageError("a row without its number")
        end = m.end() if m.group(2) else text.index("</row>", m.end()) + len("</row>")
        spans[int(number.group(1))] = (m.start(), end)
    return spans


def _anchor_xml(pic: Picture, shape_id: int, rid: str, link_rid: str = "") -> str:
    col, row = pic.col - 1, pic.row - 1
    x0 = (pic.padding if pic.offset_x is None else pic.offset_x) * EMU_PER_PIXEL
    y0 = (pic.padding if pic.offset_y is None else pic.offset_y) * EMU_PER_PIXEL
    link = f'<a:hlinkClick r:id="{link_rid}"/>' if link_rid else ""
    cx, cy = pic.width * EMU_PER_PIXEL, pic.height * EMU_PER_PIXEL
    # "Move and size with cells": sorting carries the picture along, filtering hides it.
    return (
        '<xdr:twoCellAnchor editAs="twoCell">'
        f"<xdr:from><xdr:col>{col}</xdr:col><xdr:colOff>{x0}</xdr:colOff>"
        f"<xdr:row>{row}</xdr:row><xdr:rowOff>{y0}</xdr:rowOff></xdr:from>"
        f"<xdr:to><xdr:col>{col}</xdr:col><xdr:colOff>{x0 + cx}</xdr:colOff>"
        f"<xdr:row>{row}</xdr:row><xdr:rowOff>{y0 + cy}</xdr:rowOff></xdr:to>"
        f'<xdr:pic><xdr:nvPicPr><xdr:cNvPr id="{shape_id}" '
        f'name="{escape_attr(pic.name or f"Picture {shape_id}")}" descr="{escape_attr(pic.description)}">{link}</xdr:cNvPr>'
        '<xdr:cNvPicPr><a:picLocks noChangeAspect="1"/></xdr:cNvPicPr></xdr:nvPicPr>'
        f'<xdr:blipFill><a:blip r:embed="{rid}"/><a:stretch><a:fillRect/></a:stretch></xdr:blipFill>'
        f'<xdr:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="{cx}" cy="{cy}"/></a:xfrm>'
        '<a:prstGeom prst="rect"><a:avLst/></a:prstGeom></xdr:spPr></xdr:pic>'
        "<xdr:clientData/></xdr:twoCellAnchor>"
    )


def _rels_name(part: str) -> str:
    folder, name = posixpath.split(part)
    return posixpath.join(folder, "_rels", name + ".rels")


def _rels_xml(rels: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<Relationships xmlns="{NS_PKG}">' + "".join(rels) + "</Relationships>"
    ).encode("utf-8")


def _free_name(parts: dict[str, bytes], pattern: str) -> str:
    n = 1
    while pattern.format(n) in parts:
        n += 1
    return pattern.format(n)


def _xml(data: bytes, where: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as e:
        raise PackageError(f"{where}: {e}") from None
