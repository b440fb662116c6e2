"""The first visit: on an empty history, what pruning is, the four numbers, and one button that loads
the demo history (`python -m pruning demo`'s sweeps and analysis, in background workers).

Light at import (Streamlit and the store only): the engine is imported when the button is pressed.
"""

from __future__ import annotations

import streamlit as st

from pages.shared.text import plain
from pruning.errors import UserError
from pruning.runs.store import Store

EXPLANATION = """
**Pruning** removes the weights of a trained network that matter least, then fine-tunes what is left,
to make the model smaller and, when whole channels are removed, faster, for a small loss of accuracy.

Every run shows **four numbers** side by side:
1. **sparsity**: the share of the prunable weights that are zero or gone;
2. **parameters physically removed**: none when weights are only *masked* (zeros kept in place);
3. **bytes on disk**: the plain file, a sparse encoding and gzip;
4. **measured speedup** next to the FLOPs bound. A masked model is labelled *masked: not faster*.

**What to do first:** load the demo history below (sweeps of three methods at six sparsity levels on
two small models, fine-tuned, and one sensitivity analysis: one to a few minutes on two cores; its progress
shows in the sidebar). Then open
**Compare**, **Layers**, or **Present** for the story told in slides.
"""


def first_visit(history: Store) -> None:
    """The explanation and the demo button, drawn only while the history holds no job at all."""
    if history.runs(kind=None, limit=1):
        return
    with st.container(border=True):
        st.subheader("New here? Start with the demo")
        st.markdown(EXPLANATION)
        st.button("Load the demo history", key="load_demo", type="primary", on_click=_load, args=(history,))
        if "demo_error" in st.session_state:
            st.error(plain(st.session_state.pop("demo_error")))


def _load(history: Store) -> None:
    from pruning.runs import demo  # PyTorch and the engine: only once the button is pressed

    try:
        with st.spinner("Checking the sample models and queuing the demo…"):
            started = demo.launch(history)
    except UserError as exc:
        st.session_state["demo_error"] = f"The demo could not start: {exc}"
        return
    st.toast(f"Demo history started: {len(started.jobs)} jobs. Follow them under Jobs in the sidebar.")
