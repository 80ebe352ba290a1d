"""Text to HTML for the chat panel: Markdown with math, highlighted code, logs, file links.

Everything the model wrote is untrusted: raw HTML in answers is escaped, not passed through,
and link targets other than http(s), mailto and the panel's own file links are dropped.
Math is lifted out before Markdown runs (Markdown would eat the backslashes of ``\\[`` and
the underscores of ``x_1``) and put back verbatim for MathJax in the ``HTMLMath`` widget.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from dataclasses import dataclass
from typing import Iterable

import markdown as _markdown
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

#: Files larger than this are not embedded as download links (a data: URL lives in the page).
MAX_EMBED_BYTES = 8 * 1024 * 1024

_FENCE = re.compile(r"(^|\n)(```|~~~)[^\n]*\n.*?(\n\2[ \t]*(?=\n|$)|$)", re.S)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_DISPLAY_BRACKETS = re.compile(r"\\\[(.+?)\\\]", re.S)
_INLINE_PARENS = re.compile(r"\\\((.+?)\\\)", re.S)
_DISPLAY_DOLLARS = re.compile(r"\$\$(.+?)\$\$", re.S)
# $...$ only when it looks like math: no space just inside the dollars, no digit right after
# the closing one ("costs $5 and $10" stays text).
_INLINE_DOLLARS = re.compile(r"(?<![\\$])\$(?![\s$])([^$\n]+?)(?<![\s\\])\$(?!\d)")
_URL_ATTR = re.compile(r'\b(href|src)="([^"]*)"')
_SAFE_URL = re.compile(r"^(https?:|mailto:|#)", re.I)
_TOKEN = "\x00{}\x00"
_LINK_STYLE = "color:#0969da; text-decoration:underline"
_NOT_ATTACHED = "This file stayed in the sandbox: the server attached no copy of it to the answer."


def _split_code(text: str) -> list[tuple[bool, str]]:
    """Split Markdown into (is_code, chunk) so math handling never touches code."""
    chunks: list[tuple[bool, str]] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        chunks.extend(_split_inline_code(text[pos : fence.start()]))
        chunks.append((True, fence.group(0)))
        pos = fence.end()
    chunks.extend(_split_inline_code(text[pos:]))
    return chunks


def _split_inline_code(text: str) -> Iterable[tuple[bool, str]]:
    pos = 0
    for span in _INLINE_CODE.finditer(text):
        yield False, text[pos : span.start()]
        yield True, span.group(0)
        pos = span.end()
    yield False, text[pos:]


def convert_math_delimiters(text: str) -> str:
    """``\\[..\\]`` -> ``$$..$$`` and ``\\(..\\)`` -> ``$..$``, outside code.

    JupyterLab and Colab typeset dollar-delimited math only; models write the bracket forms.
    """
    out = []
    for is_code, chunk in _split_code(text):
        if not is_code:
            chunk = _DISPLAY_BRACKETS.sub(lambda m: f"$${m.group(1)}$$", chunk)
            chunk = _INLINE_PARENS.sub(lambda m: f"${m.group(1).strip()}$", chunk)
        out.append(chunk)
    return "".join(out)


def _protect_math(text: str) -> tuple[str, list[str]]:
    saved: list[str] = []

    def keep(match: re.Match) -> str:
        saved.append(match.group(0))
        return _TOKEN.format(len(saved) - 1)

    out = []
    for is_code, chunk in _split_code(text):
        if not is_code:
            chunk = _DISPLAY_DOLLARS.sub(keep, chunk)
            chunk = _INLINE_DOLLARS.sub(keep, chunk)
        out.append(chunk)
    return "".join(out), saved


def _new_markdown() -> _markdown.Markdown:
    md = _markdown.Markdown(
        extensions=["fenced_code", "tables", "sane_lists", "codehilite"],
        extension_configs={"codehilite": {"noclasses": True, "guess_lang": False}},
    )
    # Raw HTML from the model is shown as text, never interpreted.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md


@dataclass(frozen=True)
class FileLink:
    """A file the answer links to, resolved to bytes the browser can download."""

    filename: str
    data: bytes | None  # None: too large (or unavailable) to embed

    def url(self) -> str:
        if self.data is None:
            return "#"
        mime = mimetypes.guess_type(self.filename)[0] or "application/octet-stream"
        return f"data:{mime};base64,{base64.b64encode(self.data).decode()}"


def file_link_token(index: int) -> str:
    """The placeholder URL that stands for ``links[index]`` until rendering."""
    return f"tutornb-file-{index}"


def _sanitize_urls(body: str, links: list[FileLink]) -> str:
    def fix(match: re.Match) -> str:
        attr, url = match.groups()
        found = re.fullmatch(r"tutornb-file-(\d+)", url)
        if found and int(found.group(1)) < len(links):
            link = links[int(found.group(1))]
            title = "" if link.data is not None else ' title="too large to embed: fetch it with client.files.content"'
            return f'download="{html.escape(link.filename)}" style="{_LINK_STYLE}"{title} {attr}="{link.url()}"'
        if _SAFE_URL.match(html.unescape(url)):
            return match.group(0)
        if attr == "href" and url.startswith("sandbox:"):
            return f'title="{_NOT_ATTACHED}" style="color:#777; text-decoration:underline dotted"'
        return f'{attr}="#"'

    return _URL_ATTR.sub(fix, body)


def markdown_html(text: str, links: list[FileLink] | None = None) -> str:
    """Render an answer: Markdown, math kept for MathJax, HTML escaped, files as downloads."""
    links = links or []
    protected, saved = _protect_math(convert_math_delimiters(text))
    body = _new_markdown().convert(protected)
    body = _sanitize_urls(body, links)
    return re.sub("\x00(\\d+)\x00", lambda m: html.escape(saved[int(m.group(1))], quote=False), body)


_CODE_FORMATTER = HtmlFormatter(noclasses=True, nowrap=True, style="default")


def code_html(code: str) -> str:
    """Highlighted Python, as the model wrote it (so far)."""
    inner = highlight(code, PythonLexer(), _CODE_FORMATTER) if code else ""
    return f'<pre class="tnb-code" style="{_PRE_STYLE} background:#f7f7f9">{inner}</pre>'


def logs_html(logs: str) -> str:
    """What the code printed (stdout, stderr and the last expression's value)."""
    if not logs:
        return ""
    return f'<pre class="tnb-logs" style="{_PRE_STYLE} background:#fff; border-left:3px solid #9ab">{html.escape(logs)}</pre>'


_PRE_STYLE = "margin:2px 0; padding:6px 8px; white-space:pre-wrap; word-break:break-word; font-size:12px; line-height:1.35;"


def user_html(text: str) -> str:
    """What the learner typed, shown as typed (no Markdown)."""
    return f'<div class="tnb-user" style="white-space:pre-wrap">{html.escape(text)}</div>'


def error_html(message: str, details: str | None = None) -> str:
    """A problem in one line; ``details`` (the full error) folded away under it."""
    folded = ""
    if details:
        folded = (f'<details style="color:#555; font-size:12px"><summary>details</summary>'
                  f'<div style="white-space:pre-wrap">{html.escape(details)}</div></details>')
    return f'<div class="tnb-error" style="color:#a00; white-space:pre-wrap">⚠ {html.escape(message)}{folded}</div>'


def download_link(filename: str, url: str, title: str = "") -> str:
    """A link that downloads ``url`` as ``filename``, styled as a link in every front end."""
    extra = f' title="{html.escape(title)}"' if title else ""
    return f'<a download="{html.escape(filename)}" style="{_LINK_STYLE}"{extra} href="{html.escape(url)}">{html.escape(filename)}</a>'


def links_markdown(text: str, spans: list[tuple[int, int]]) -> str:
    """Replace each annotated span (``sandbox:/mnt/data/x.csv``) with its file placeholder.

    A span inside a Markdown link target keeps the link text; a bare span becomes a link.
    """
    out, pos = [], 0
    for index, (start, end) in sorted(enumerate(spans), key=lambda item: item[1][0]):
        if start < pos or end > len(text):
            continue
        out.append(text[pos:start])
        in_target = text[max(0, start - 2) : start] == "](" or text[start - 1 : start] == "("
        token = file_link_token(index)
        out.append(token if in_target else f"[{text[start:end].rsplit('/', 1)[-1]}]({token})")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def note_html(message: str) -> str:
    return f'<div class="tnb-note" style="color:#555; font-style:italic">{html.escape(message)}</div>'


def role_html(who: str) -> str:
    return f'<b class="tnb-role" style="font-size:12px; color:#456">{html.escape(who)}</b>'


def status_html(text: str, busy: bool) -> str:
    mark = '<span style="color:#d97706">●</span> ' if busy else ""
    return f'<span class="tnb-status" style="font-size:12px; color:#555">{mark}{html.escape(text)}</span>'


# -- plain text (a terminal) --------------------------------------------------------------

_LATEX_SYMBOLS = {
    "pm": "±", "mp": "∓", "times": "×", "cdot": "·", "div": "÷", "le": "≤", "leq": "≤", "ge": "≥",
    "geq": "≥", "ne": "≠", "neq": "≠", "approx": "≈", "infty": "∞", "to": "→", "rightarrow": "→",
    "Rightarrow": "⇒", "in": "∈", "sum": "Σ", "prod": "Π", "int": "∫", "sqrt": "√", "pi": "π",
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "Delta": "Δ", "theta": "θ", "lambda": "λ",
    "mu": "μ", "sigma": "σ", "Sigma": "Σ", "bar": "", "ldots": "…", "dots": "…", "cdots": "⋯",
    "quad": "  ", "qquad": "    ", ",": " ", ";": " ", "!": "", "left": "", "right": "", "displaystyle": "",
}
_SUPERSCRIPT = str.maketrans("0123456789+-()n", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁽⁾ⁿ")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\s*\{([^{}]*)\}")
_TEXT = re.compile(r"\\(?:text|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_POWER = re.compile(r"\^\{([0-9+\-n()]+)\}|\^([0-9n])")
_COMMAND = re.compile(r"\\([A-Za-z]+|[,;!])")


def _group(text: str) -> str:
    return text if re.fullmatch(r"[0-9.]+|[A-Za-z]", text) else f"({text})"


def math_text(latex: str) -> str:
    """LaTeX as readable plain text: ``\\frac{-b \\pm 1}{2}`` -> ``(-b ± 1)/2``, ``x^2`` -> ``x²``."""
    text = latex
    for _ in range(3):  # nested fractions and roots, innermost first
        text = _FRAC.sub(lambda m: f"{_group(m.group(1).strip())}/{_group(m.group(2).strip())}", text)
        text = _SQRT.sub(lambda m: f"√{_group(m.group(1).strip())}", text)
    text = _TEXT.sub(lambda m: m.group(1), text)
    text = _POWER.sub(lambda m: (m.group(1) or m.group(2)).translate(_SUPERSCRIPT), text)
    text = _COMMAND.sub(lambda m: _LATEX_SYMBOLS.get(m.group(1), m.group(1)), text)
    text = text.replace("{", "").replace("}", "").replace("\\\\", "\n")
    return re.sub(r"[ \t]+", " ", text).strip()


def plain_text(text: str) -> str:
    """An answer for a terminal: Markdown left as written, math turned into plain text."""
    out = []
    for is_code, chunk in _split_code(convert_math_delimiters(text)):
        if not is_code:
            chunk = _DISPLAY_DOLLARS.sub(lambda m: "\n    " + math_text(m.group(1)) + "\n", chunk)
            chunk = _INLINE_DOLLARS.sub(lambda m: math_text(m.group(1)), chunk)
        out.append(chunk)
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()


def image_kind(data: bytes) -> str:
    """``png``, ``jpeg`` or ``gif``, from the bytes (code interpreter images are PNG)."""
    return "jpeg" if data[:3] == b"\xff\xd8\xff" else "gif" if data[:4] == b"GIF8" else "png"


def image_url(data: bytes) -> str:
    return f"data:image/{image_kind(data)};base64,{base64.b64encode(data).decode()}"


def image_html(data: bytes) -> str:
    """An image inline, as a data URL."""
    return f'<img style="max-width:min(100%, 480px)" src="{image_url(data)}">'
