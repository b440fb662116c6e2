"""The Prune page's per-layer overrides: 'Allocate from sensitivity', the table, its errors beside it,
and the overrides in the URL (`?overrides=fc1:0.3,fc2:0.8`), so that a copied link reproduces them.

Buttons sit below the table (the table's hover toolbar covered them when they sat above) and act in
callbacks, before the table is drawn. A refused cell is shown under the table; the preview leaves that
cell out instead of disappearing, and launching stays disabled until it is fixed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from pages.shared import ui
from pages.shared.text import plain
from pruning.core import methods
from pruning.errors import UserError
from pruning.present import views
from pruning.runs import sensitivity
from pruning.runs.config import RunConfig

PARAM = "overrides"


def from_url(text: str | None) -> dict[str, float]:
    """`fc1:0.3,fc2:0.8` -> {fc1: 0.3, fc2: 0.8}; malformed pairs are left out."""
    values = {}
    for pair in (text or "").split(","):
        name, _, value = pair.rpartition(":")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return {n: v for n, v in values.items() if n}


def to_url(values: Mapping[str, float]) -> str:
    return ",".join(f"{name}:{value:g}" for name, value in values.items())


def _allocate(model: str, table: sensitivity.Sensitivity) -> None:
    try:
        st.session_state[f"allocated-{model}"] = sensitivity.allocate(
            table, st.session_state.get("sparsity", 0.5)
        )
        st.session_state.pop(f"overrides-{model}", None)  # the editor's own edits would hide the new values
        st.session_state.pop("allocate_error", None)
    except UserError as exc:
        st.session_state["allocate_error"] = str(exc)


def _allocate_owl(model: str, weights: str | None, data: str | None) -> None:
    """OWL: one calibration pass of the dense model (its Wanda scores' outliers), no analysis job."""
    try:
        config = RunConfig(model, "magnitude", 0.0, weights=weights, data=data, latency=False)
        target = st.session_state.get("sparsity", 0.5)
        st.session_state[f"allocated-{model}"] = sensitivity.owl(config, target)
        st.session_state.pop(f"overrides-{model}", None)
        st.session_state.pop("allocate_error", None)
    except UserError as exc:
        st.session_state["allocate_error"] = str(exc)


def _clear(model: str) -> None:
    st.session_state[f"allocated-{model}"] = {}
    st.session_state.pop(f"overrides-{model}", None)


def table(
    model: str,
    method: methods.Method,
    layers: Mapping[str, Any],
    weights: str | None,
    data: str | None,
    options: dict,
) -> tuple[dict[str, float], bool]:
    """Draw the overrides section; returns (the valid overrides, whether any cell was refused)."""
    allocated, editor = f"allocated-{model}", f"overrides-{model}"
    linked, written = st.query_params.get(PARAM), f"{PARAM}_in_url"
    if linked is not None and linked != st.session_state.get(written):  # a pasted link wins
        st.session_state[allocated] = from_url(linked)
        st.session_state.pop(editor, None)
    found = None
    if method.elementwise:
        found = ui.sensitivity(model, method.id, "prune_analyse", weights=weights, data=data, options=options)
        target = st.session_state.get("sparsity", 0.5)
        st.caption(
            f"Allocate: per-layer sparsities that prune {target:.0%} (the Sparsity slider) of all prunable "
            f"weights, more where {method.id}'s measured accuracy drop is smaller."
        )
    else:
        st.caption(
            f"Allocation from sensitivity prunes each layer alone, weight by weight, so it needs an "
            f"unstructured method; {method.id} is {method.granularity}. Type overrides below instead."
        )
    edited = st.data_editor(
        views.override_rows(layers, st.session_state.get(allocated, {})),
        key=editor, hide_index=True, disabled=["layer", "type", "weights"],
        column_config={"override": st.column_config.TextColumn(
            "sparsity override", help="blank: follow the slider and scope; else a number in [0, 1)"
        )},
    )  # fmt: skip
    valid, refused = {}, []
    for name, cell in zip(edited["layer"], edited["override"]):
        try:
            valid.update(views.parse_overrides({name: cell}))
        except UserError as exc:
            refused.append(str(exc))
    for message in refused:  # quotes the layer names typed into the table
        st.error(plain(f"Refused: {message}. The preview leaves this cell out; launching waits for a fix."))
    if "allocate_error" in st.session_state:
        st.error(plain(st.session_state.pop("allocate_error")))
    a, c, b = st.columns(3)
    try:
        pattern = method.fixed_sparsity(method.options(options))  # N:M takes no per-layer levels
    except UserError:
        pattern = None
    if pattern is None:
        c.button(
            "Allocate with OWL",
            key="allocate_owl",
            help="Outlier-weighed layerwise sparsity (Yin et al., 2024): more sparsity where a layer's Wanda "
            "scores have fewer outliers, within 0.08 of the slider, landing on it (one calibration pass)",
            on_click=_allocate_owl,
            args=(model, weights, data),
        )
    if method.elementwise:
        a.button(
            "Allocate from sensitivity",
            key="allocate",
            disabled=found is None,
            on_click=_allocate,
            args=(model, found),
        )
    b.button("Clear overrides", key="clear_overrides", on_click=_clear, args=(model,))
    # Written only when it changed: each write sends the whole query string as this run knows it
    st.session_state[written] = to_url(valid) if valid else None
    if st.session_state[written] != linked:
        if valid:
            st.query_params[PARAM] = st.session_state[written]
        else:
            st.query_params.pop(PARAM, None)
    return valid, bool(refused)
