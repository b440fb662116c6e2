"""Destructive actions (delete runs, cancel jobs) ask once more before they act.

The first click only asks: the question, what exactly will happen, and two buttons. "Yes" acts on
what the question named; "Keep" forgets the question. Kept in session state, so it works inside the
jobs sidebar's fragments, which redraw every second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st


def confirmed_button(
    label: str,
    key: str,
    question: str,
    yes: str,
    action: Callable[..., object],
    args: Sequence[object] = (),
    *,
    disabled: bool = False,
) -> None:
    """A button `label` (key `key`) whose click asks `question`; `action(*args)` runs on "Yes" (key
    `{key}-yes`) only. `question` is Markdown: quote outside text through `text.plain`."""
    asking = f"{key}-asking"
    if disabled or not st.session_state.get(asking):
        st.session_state.pop(asking, None)
        st.button(label, key=key, disabled=disabled, on_click=_ask, args=(asking,))
        return
    st.warning(question)
    a, b = st.columns(2)
    a.button(yes, key=f"{key}-yes", type="primary", on_click=_act, args=(asking, action, tuple(args)))
    b.button("Keep", key=f"{key}-keep", on_click=_forget, args=(asking,))


def _ask(asking: str) -> None:
    st.session_state[asking] = True


def _forget(asking: str) -> None:
    st.session_state.pop(asking, None)


def _act(asking: str, action: Callable[..., object], args: tuple) -> None:
    st.session_state.pop(asking, None)
    action(*args)
