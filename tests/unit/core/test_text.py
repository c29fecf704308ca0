"""Producer text in markdown: every construct is inert, and nothing is lost but line breaks."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from core.text import markdown_literal, unescaped

HOSTILE = "![img](http://evil/x.png) [click](javascript:alert(1)) @everyone <b>hi</b> # head `code` ```fence"


@given(st.text(max_size=300))
def test_escaping_loses_nothing_but_line_breaks(text: str) -> None:
    assert unescaped(markdown_literal(text, one_line=False)) == text


@given(st.text(max_size=300))
def test_no_punctuation_survives_unescaped_and_one_line_stays_one_line(text: str) -> None:
    escaped = markdown_literal(text)
    assert "\n" not in escaped and "\r" not in escaped
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            assert escaped[i + 1] in string.punctuation
            i += 2
            continue
        assert escaped[i] not in string.punctuation, escaped
        i += 1


def test_links_images_mentions_and_html_are_inert() -> None:
    escaped = markdown_literal(HOSTILE)
    for opener in ("![", "](", "<b>", "```", "`code`"):
        assert opener not in escaped
    assert "\\@everyone" in escaped and "\\# head" in escaped
