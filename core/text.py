"""Producer-supplied text made inert for the places that render markdown (Linear, Discord, Streamlit).

Anything a producer chose (proposal ids, field names, decode details, a model name, a rationale)
may hold links, images, mentions, headings, HTML or code fences. CommonMark lets a backslash escape
any ASCII punctuation character, so escaping all of them leaves no construct that can open: the
text renders as the characters it holds. A one-line field also loses its line breaks, so it cannot
start a heading or a list. Code spans are not used for such text: a backslash does not escape there.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
_ESCAPED = re.compile(r"\\([" + re.escape(string.punctuation) + "])")


def markdown_literal(text: str, one_line: bool = True) -> str:
    """``text`` as markdown that renders exactly as ``text`` (line breaks folded to spaces if ``one_line``)."""
    if one_line:
        text = _LINE_BREAKS.sub(" ", text)
    return _PUNCTUATION.sub(r"\\\1", text)


def unescaped(markdown: str) -> str:
    """The inverse of ``markdown_literal`` for text that kept its line breaks."""
    return _ESCAPED.sub(r"\1", markdown)
