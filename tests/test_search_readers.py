"""Reading files for file search: every supported kind, and every way a file can be refused."""

from __future__ import annotations

import io
import zipfile

import pytest

from tutor_nb.runtime.search import UnreadableFile, read_text
from tests.documents import make_docx, make_pdf, make_pptx


def refused(name: str, data: bytes) -> UnreadableFile:
    with pytest.raises(UnreadableFile) as info:
        read_text(name, data)
    return info.value


@pytest.mark.parametrize("name, body", [
    ("notes.md", "# Recursion\n\nA function that calls itself."),
    ("data.csv", "name,score\nalice,90\n"),
    ("config.json", '{"learning_rate": 0.01}'),
    ("fib.py", "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"),
    ("README", "no suffix at all, but text"),
    ("한국어.txt", "피보나치수열의 첫 항은 0이다."),
])
def test_text_files_are_read_as_they_are(name: str, body: str) -> None:
    assert read_text(name, body.encode()) == body


def test_utf16_with_a_byte_order_mark() -> None:
    assert read_text("win.txt", "피보나치".encode("utf-16")) == "피보나치"


def test_html_keeps_text_and_drops_markup_scripts_and_styles() -> None:
    page = (b"<html><head><title>Course</title><style>p{color:red}</style></head><body>"
            b"<h1>Fibonacci</h1><p>Each term is the sum&nbsp;of the two before.</p>"
            b"<script>alert('x')</script></body></html>")
    text = read_text("page.html", page)
    assert text.splitlines()[:3] == ["Course", "Fibonacci", "Each term is the sum of the two before."]
    assert "alert" not in text and "color" not in text and "<" not in text


def test_pdf_pages_are_read() -> None:
    text = read_text("lecture.pdf", make_pdf(["Page one: the Euclidean algorithm.", "Page two: gcd(a, b)."]))
    assert "Euclidean algorithm" in text and "gcd(a, b)" in text


def test_a_pdf_is_read_by_its_bytes_whatever_its_name() -> None:
    assert "modular arithmetic" in read_text("notes.txt", make_pdf(["modular arithmetic"]))


def test_docx_paragraphs_and_tables_in_order() -> None:
    data = make_docx(["Binary search halves the range.", "It needs sorted input."],
                     table=[["case", "cost"], ["worst", "log n"]])
    text = read_text("week3.docx", data)
    assert text.index("halves") < text.index("sorted") < text.index("worst | log n")


def test_pptx_slides_and_their_text() -> None:
    text = read_text("deck.pptx", make_pptx([("Graphs", "Vertices and edges"), ("BFS", "A queue of frontier nodes")]))
    assert "Slide 1" in text and "Vertices and edges" in text and "queue of frontier" in text


def test_password_protected_pdf_is_invalid_and_says_so() -> None:
    error = refused("secret.pdf", make_pdf(["hidden"], password="pw"))
    assert error.code == "invalid_file" and "password" in error.message


def test_damaged_pdf_is_invalid() -> None:
    data = make_pdf(["a page"])
    error = refused("broken.pdf", data[: len(data) // 3])
    assert error.code == "invalid_file" and "broken.pdf" in error.message


def test_scanned_pdf_without_text_says_to_ocr() -> None:
    error = refused("scan.pdf", make_pdf([""]))
    assert error.code == "invalid_file" and "OCR" in error.message


def test_images_are_unsupported_and_the_message_says_what_is() -> None:
    error = refused("plot.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert error.code == "unsupported_file"
    assert "PNG image" in error.message and ".pdf" in error.message and "code_interpreter" in error.message


def test_a_spreadsheet_is_unsupported_with_advice() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    error = refused("grades.xlsx", buffer.getvalue())
    assert error.code == "unsupported_file" and "CSV" in error.message


def test_a_renamed_file_is_invalid() -> None:
    error = refused("report.docx", b"just some text")
    assert error.code == "invalid_file" and ".docx" in error.message


def test_text_that_is_not_utf8_is_invalid_and_says_where() -> None:
    error = refused("latin.txt", "café".encode("latin-1"))
    assert error.code == "invalid_file" and "UTF-8" in error.message and "offset 3" in error.message


def test_binary_with_an_unknown_name_is_unsupported() -> None:
    assert refused("blob.bin", b"\x00\x01\x02\xff" * 10).code == "unsupported_file"


def test_empty_text_is_invalid() -> None:
    assert refused("empty.md", b"  \n\n").code == "invalid_file"


def test_a_zip_bomb_is_refused_before_it_unpacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from tutor_nb.runtime.search import readers

    monkeypatch.setattr(readers, "MAX_UNPACKED_BYTES", 1000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "0" * 100_000)
    error = refused("bomb.docx", buffer.getvalue())
    assert error.code == "invalid_file" and "zip bomb" in error.message


def test_a_damaged_docx_is_invalid() -> None:
    data = make_docx(["fine"])
    error = refused("torn.docx", data[:200])
    assert error.code == "invalid_file"
