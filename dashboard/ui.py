"""Small Streamlit building blocks every page shares: live sections, empty states and chart defaults."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard.sources import SourceError

REFRESH_S = 2.0
CHART_HEIGHT_PX = 320
PLOT_CONFIG = {"displayModeBar": False}


def live(render: Callable[[], None]) -> Callable[[], None]:
    """Rerun ``render`` every REFRESH_S without reloading the page; a lost database shows as an error, not a trace."""

    @st.fragment(run_every=REFRESH_S)
    @functools.wraps(render)
    def section() -> None:
        guarded(render)

    return section


def guarded(render: Callable[[], None]) -> None:
    try:
        render()
    except SourceError as exc:
        st.error(str(exc), icon=":material/error:")


def empty(message: str) -> None:
    st.info(message, icon=":material/hourglass_empty:")


def color_map(values: Iterable[str]) -> dict[str, str]:
    """The same colour for the same name in every chart of a page, whatever order the data comes in."""
    palette = px.colors.qualitative.Plotly
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(values)))}


def plot(fig: go.Figure, height_px: int = CHART_HEIGHT_PX, key: str | None = None) -> None:
    fig.update_layout(height=height_px, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend_title_text="")
    st.plotly_chart(fig, width="stretch", config=PLOT_CONFIG, key=key)


def table(frame: Any, **kwargs: Any) -> None:
    st.dataframe(frame, width="stretch", hide_index=True, **kwargs)
