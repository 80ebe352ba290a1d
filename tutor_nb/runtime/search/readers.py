"""From a file's bytes to the text file search indexes.

Plain text of any kind (Markdown, CSV, JSON, source code...) is decoded as UTF-8 (or UTF-16/32
with a byte-order mark); HTML loses its tags, scripts and styles; PDF, DOCX and PPTX are read by
``pypdf``, ``python-docx`` and ``python-pptx``. What is sniffed from the bytes decides before the
name does, so a PDF called ``notes.txt`` is read as a PDF. A file that cannot be read raises
:class:`UnreadableFile` with OpenAI's error code and a message that says what to do.
"""

from __future__ import annotations

import io
import zipfile
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import Callable, Literal

#: what a zip-based document may unpack to: past this, it is refused rather than expanded
MAX_UNPACKED_BYTES = 256 * 1024 * 1024

TEXT_SUFFIXES = frozenset(
    "txt text md markdown mdx rst adoc tex bib csv tsv json jsonl ndjson ipynb yaml yml toml ini cfg conf env "
    "xml svg log py pyi pyx c h cc cpp cxx hpp hh cs java kt kts scala go rs rb php pl pm lua r jl m mm swift "
    "dart js mjs cjs jsx ts tsx vue svelte css scss sass less sh bash zsh fish ps1 bat sql graphql proto "
    "makefile dockerfile gradle properties".split()
)
HTML_SUFFIXES = frozenset({"html", "htm", "xhtml"})
SUPPORTED = "text (.txt, .md, .csv, .json, source code), .html, .pdf, .docx and .pptx"

#: magic numbers of formats that hold no text to search, and what to say about them
_BINARY: list[tuple[bytes, str]] = [
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF (WAV/AVI/WebP) file"), (b"ID3", "an MP3 file"), (b"OggS", "an Ogg file"),
    (b"fLaC", "a FLAC file"), (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ", "an xz archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "a program"), (b"MZ", "a Windows program"), (b"SQLite format 3\x00", "an SQLite database"),
    (b"PAR1", "a Parquet file"), (b"\x93NUMPY", "a NumPy array"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.doc, .xls or .ppt)"), (b"ftyp", "an MP4 or HEIC file"),
]


class UnreadableFile(Exception):
    """A file file search cannot index; ``code`` is OpenAI's ``last_error.code``."""

    def __init__(self, code: Literal["unsupported_file", "invalid_file"], message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def read_text(filename: str, data: bytes) -> str:
    """The searchable text of a file, or :class:`UnreadableFile` saying why there is none."""
    name = PurePosixPath(filename or "file").name
    suffix = name.rsplit(".", 1)[-1].lower() if "." in name else name.lower()
    reader = _reader_for(name, suffix, data)
    text = reader(name, data)
    if not text.strip():
        raise UnreadableFile("invalid_file", f"{name} has no text to search"
                             + (" (a scanned PDF? run OCR on it first)." if reader is _pdf else "."))
    return text


def _reader_for(name: str, suffix: str, data: bytes) -> Callable[[str, bytes], str]:
    head = data[:16]
    if head.startswith(b"%PDF-"):
        return _pdf
    if head.startswith(b"PK\x03\x04"):
        return _office_reader(name, data)
    if suffix in ("pdf", "docx", "pptx"):
        raise UnreadableFile("invalid_file", f"{name} is named .{suffix} but is not a {suffix.upper()} file "
                             "(it may be damaged or only renamed); export it again.")
    if suffix in HTML_SUFFIXES:
        return _html
    if suffix in TEXT_SUFFIXES:
        return _plain
    for magic, what in _BINARY:
        if (head[4:8] == magic) if magic == b"ftyp" else head.startswith(magic):
            raise UnreadableFile("unsupported_file", f"{name} is {what}, which file_search cannot read. It reads "
                                 f"{SUPPORTED}; give data files to code_interpreter instead.")
    return _unknown


def _office_reader(name: str, data: bytes) -> Callable[[str, bytes], str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {info.filename: info for info in archive.infolist()}
    except zipfile.BadZipFile as exc:
        raise UnreadableFile("invalid_file", f"{name} is a damaged zip-based file ({exc}); export it again.") from None
    if sum(info.file_size for info in members.values()) > MAX_UNPACKED_BYTES:
        raise UnreadableFile("invalid_file", f"{name} would unpack to more than "
                             f"{MAX_UNPACKED_BYTES // 2**20} MB; it is refused as a possible zip bomb.")
    if "word/document.xml" in members:
        return _docx
    if "ppt/presentation.xml" in members:
        return _pptx
    what = "an Excel workbook" if "xl/workbook.xml" in members else "a zip archive"
    raise UnreadableFile("unsupported_file", f"{name} is {what}, which file_search cannot read. It reads "
                         f"{SUPPORTED}; export sheets to CSV, or give the file to code_interpreter.")


def _plain(name: str, data: bytes) -> str:
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                       (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as exc:
                raise UnreadableFile("invalid_file", f"{name} starts like {codec} text but is not ({exc.reason} "
                                     f"at byte {exc.start}); save it as UTF-8.") from None
    if b"\x00" in data[:8192]:
        raise UnreadableFile("unsupported_file", f"{name} is binary, which file_search cannot read. It reads "
                             f"{SUPPORTED}.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFile("invalid_file", f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                             f"{exc.start}); save it as UTF-8 and upload it again.") from None


def _unknown(name: str, data: bytes) -> str:
    """A name file search does not know: read as text if it is text, else refused as unsupported."""
    try:
        return _plain(name, data)
    except UnreadableFile as exc:
        raise UnreadableFile("unsupported_file", f"{name} is not text, PDF, DOCX or PPTX, so file_search "
                             f"cannot read it. It reads {SUPPORTED}.") from exc


class _HTMLText(HTMLParser):
    """Text of an HTML page: blocks on their own lines, no scripts, styles or templates."""

    SKIP = frozenset({"script", "style", "noscript", "template"})
    BLOCKS = frozenset("p div br li ul ol tr table h1 h2 h3 h4 h5 h6 pre blockquote section article header "
                       "footer nav dt dd figcaption hr title".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).splitlines())
        return "\n".join(line for line in lines if line)


def _html(name: str, data: bytes) -> str:
    parser = _HTMLText()
    parser.feed(_plain(name, data))
    parser.close()
    return parser.text()


def _pdf(name: str, data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("invalid_file", f"{name} is protected by a password; save a copy without "
                                 "one and upload that.")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableFile:
        raise
    except DependencyError as exc:
        raise UnreadableFile("invalid_file", f"{name} is encrypted in a way that needs more software to "
                             f"open ({exc}); save a copy without encryption.") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise UnreadableFile("invalid_file", f"{name} could not be read as a PDF ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); it may be damaged. Export it again.") from None
    return "\n\n".join(page.strip() for page in pages if page.strip())


def _docx(name: str, data: bytes) -> str:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks.extend(" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows)
            else:
                blocks.append(block.text)
    except Exception as exc:  # python-docx raises whatever lxml and zipfile raise on a bad part
        raise UnreadableFile("invalid_file", f"{name} could not be read as a Word document "
                             f"({type(exc).__name__}: {str(exc)[:200]}); open it in Word and save it again.") from None
    return "\n".join(blocks)


def _pptx(name: str, data: bytes) -> str:
    import pptx

    try:
        deck = pptx.Presentation(io.BytesIO(data))
        slides = []
        for number, slide in enumerate(deck.slides, 1):
            lines = [f"Slide {number}"]
            for shape in slide.shapes:
                if shape.has_text_frame:
                    lines.append(shape.text_frame.text)
                elif getattr(shape, "has_table", False) and shape.has_table:
                    lines.extend(" | ".join(c.text for c in row.cells) for row in shape.table.rows)
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                lines.append(slide.notes_slide.notes_text_frame.text)
            slides.append("\n".join(line for line in lines if line.strip()))
    except Exception as exc:  # as for DOCX
        raise UnreadableFile("invalid_file", f"{name} could not be read as a PowerPoint file "
                             f"({type(exc).__name__}: {str(exc)[:200]}); save it again as .pptx.") from None
    text = "\n\n".join(slides)
    return text if any(len(s.splitlines()) > 1 for s in slides) else ""
