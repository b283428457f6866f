"""A document a council officer reads, written twice: HTML and Markdown.

Every string in a report may come from a user (names, labels, units, paths), so a
document is built from plain-text spans: the HTML is rendered by a jinja2 template with
autoescape on and the Markdown escapes its metacharacters. The reports of a plan, a run
(nudgesim.report) and a sweep (nudgesim.sweep_report) are all built from this one `Doc`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

# ---------------------------------------------------------------------------------------
# Text: plain-text spans, escaped by whoever writes them
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """A run of text with an optional style ("em" or "strong").

    Text is always plain text (often from a scenario, menu or results folder, so not to be
    trusted): the HTML writer escapes it and the Markdown writer backslash-escapes it. Only
    the style adds markup, and that markup is written by the writers themselves.
    """

    text: str
    style: str = ""


Inline = str | Span | Sequence[str | Span]


def em(text: Any) -> Span:
    return Span(str(text), "em")


def strong(text: Any) -> Span:
    return Span(str(text), "strong")


def _spans(x: Inline | Any) -> tuple[Span, ...]:
    """Flatten text, spans and (nested) sequences of them; anything else by its str()."""
    if isinstance(x, Span):
        return (x,)
    if isinstance(x, str):
        return (Span(x),)
    if isinstance(x, Sequence):
        return tuple(s for part in x for s in _spans(part))
    return (Span(str(x)),)


# ---------------------------------------------------------------------------------------
# Numbers in words
# ---------------------------------------------------------------------------------------


def money(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"£{x:,.0f}"


def unit_money(x: float | None) -> str:
    """£ per household: pence matter below £100."""
    if x is None or not np.isfinite(x):
        return "–"
    return f"£{x:,.2f}" if abs(x) < 100 else f"£{x:,.0f}"


def num(x: float | None, digits: int = 0) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}%"


# ---------------------------------------------------------------------------------------


@dataclass
class Doc:
    title: Inline
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def h(self, text: Inline) -> None:
        self.blocks.append({"kind": "h", "text": _spans(text)})

    def p(self, *parts: Inline) -> None:
        self.blocks.append({"kind": "p", "text": _spans(parts)})

    def note(self, *parts: Inline) -> None:
        self.blocks.append({"kind": "note", "text": _spans(parts)})

    def table(self, header: Sequence[Inline], rows: Sequence[Sequence[Inline]],
              highlight: set[int] | None = None) -> None:
        self.blocks.append({"kind": "table", "header": [_spans(c) for c in header],
                            "rows": [[_spans(c) for c in r] for r in rows],
                            "highlight": set(highlight or ())})

    def img(self, path: Path, alt: str) -> None:
        self.blocks.append({"kind": "img", "path": Path(path), "alt": alt})

    def bullets(self, items: list[Inline]) -> None:
        self.blocks.append({"kind": "ul", "items": [_spans(i) for i in items]})

    def html(self) -> str:
        """The page from templates/report.html (autoescaped; images inlined as base64)."""
        blocks = [b | {"data": base64.b64encode(b["path"].read_bytes()).decode("ascii")}
                  if b["kind"] == "img" else b for b in self.blocks]
        title = _spans(self.title)
        return _html_env().get_template("report.html").render(
            title=title, title_text="".join(s.text for s in title), blocks=blocks)

    def markdown(self) -> str:
        out = [f"# {md_inline(self.title, block=True, heading=True)}", ""]
        for b in self.blocks:
            kind = b["kind"]
            if kind == "h":
                out += [f"## {md_inline(b['text'], block=True, heading=True)}", ""]
            elif kind in ("p", "note"):
                out += [("> " if kind == "note" else "") + md_inline(b["text"], block=True), ""]
            elif kind == "ul":
                out += [f"- {md_inline(i, block=True)}" for i in b["items"]] + [""]
            elif kind == "img":
                alt = md_inline(b["alt"])
                out += [f"![{alt}]({b['path'].name})", "", f"*{alt}*", ""]
            else:
                out.append("| " + " | ".join(md_inline(c) for c in b["header"]) + " |")
                out.append("|" + "---|" * len(b["header"]))
                out += ["| " + " | ".join(md_inline(c) for c in r) + " |" for r in b["rows"]]
                out.append("")
        return "\n".join(out)


@cache
def _html_env() -> jinja2.Environment:
    """Templates shipped in the package; autoescape on for every one of them, so a value
    becomes markup only if marked safe (nothing in this module does that)."""
    return jinja2.Environment(loader=jinja2.PackageLoader("nudgesim", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


# Characters with a meaning inside a line in CommonMark, GFM or common extensions (math `$`,
# superscript `^`, attributes `{}`): escaped with a backslash they are literal everywhere,
# including `|` inside table cells. `<` and `&` escaped means raw HTML and entities are inert;
# `[` escaped means no link or image can open (so `!` needs nothing).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&{}$^])")
# GFM links bare URLs, www. names and e-mail addresses: break the patterns it looks for.
_MD_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(?<=\bwww)(\.)|(@)")
# At the start of a line these begin a list, a heading, a heading underline or a rule.
_MD_LINE_START = re.compile(r"^(\d{1,9})([.)])|^([-+=#])")


def md_escape(text: str, heading: bool = False) -> str:
    """User text as literal Markdown: every metacharacter backslash-escaped, and runs of
    whitespace (newlines included) made one space, since a newline could start a heading,
    a list or a new table row. In a heading `#` is escaped too (a trailing run would be
    taken as the heading's closing sequence)."""
    text = re.sub(r"\s+", " ", text)
    text = _MD_SPECIAL.sub(r"\\\1", text)
    if heading:
        text = text.replace("#", r"\#")
    return _MD_AUTOLINK.sub(lambda m: "\\" + m.group(0), text)


def md_inline(x: Inline, block: bool = False, heading: bool = False) -> str:
    """Spans as Markdown: text escaped, styles as `*…*` / `**…**`. `block=True` when the
    result starts a line, where `1.`, `-` or `#` would otherwise begin a block."""
    out = []
    for s in _spans(x):
        text = md_escape(s.text, heading)
        if s.style and text.strip():
            mark = "**" if s.style == "strong" else "*"
            # emphasis only opens and closes next to non-space characters
            found = re.match(r"^(\s*)(.*?)(\s*)$", text)
            assert found is not None  # every string matches: each group may be empty
            lead, core, trail = found.groups()
            text = f"{lead}{mark}{core}{mark}{trail}"
        out.append(text)
    md = "".join(out)
    if block:
        md = _MD_LINE_START.sub(lambda m: (f"{m.group(1)}\\{m.group(2)}" if m.group(1)
                                           else f"\\{m.group(3)}"), md.lstrip())
    return md
