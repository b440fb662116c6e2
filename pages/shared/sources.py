"""What the Prune page prunes (and the Layers page analyses): the model picker (sample and lab
models), the weights and data pickers, and uploads of weights and datasets, which the engine checks
and keeps in the store (`runs.uploads`).

Code is never accepted here: a model file is a program, so models come from the lab file, which the
operator writes on the server. Text that came from outside (file names, paths, lab labels, messages
that quote them) is never rendered as Markdown: it goes through `plain`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st

from pages.shared.jobs import store
from pages.shared.text import plain
from pruning.core import lab, models
from pruning.errors import UserError
from pruning.runs import uploads

WEIGHTS, DATA = "weights", "data"  # upload kinds; their pickers' keys are pick_weights, pick_data


def model_picker(key: str = "model") -> str:
    """Sample models, then the lab file's (shown by label); the id is what the URL carries, under
    `key` (one key per page that has a picker, so that pages do not overwrite each other's choice)."""
    try:
        own = lab.active().models
    except UserError as exc:
        st.error(plain(str(exc)))
        own = {}
    ids = [*models.SAMPLE_MODELS, *own]
    title = lambda i: own[i].title if i in own else i
    # Synced with the URL by hand: a bound selectbox puts the label it shows in the URL, not the id.
    # The URL wins when it changed since this script last wrote it (a pasted link), not otherwise.
    linked, written = st.query_params.get(key), f"{key}_in_url"
    if linked in ids and linked != st.session_state.get(written):
        st.session_state[key] = linked
    model = st.selectbox("Model", ids, key=key, format_func=title)
    st.session_state[written] = model
    if model == ids[0]:  # the default stays out of the URL, as for the bound widgets
        st.query_params.pop(key, None)
    elif linked != model:
        st.query_params[key] = model
    if model in own:
        st.caption(plain(f"From the lab file: {own[model].source}"))
    else:
        st.caption(models.SAMPLE_MODELS[model].description)
    return model


def choice_title(model: str, kind: str, path: str | None) -> str:
    """A weights or data choice as its picker names it: the model's own for None, an upload by its
    title, another path as it is (text from outside: show it through `plain`)."""
    if path is None:
        return _own(model, kind)
    titles = {str(u.path): u.title for u in uploads.listing(store().root)}
    return titles.get(str(path), str(path))


def _own(model: str, kind: str) -> str:
    if kind == WEIGHTS:
        return "the model's own"
    own_data = models.default_dataset(model)
    return f"the model's own ({Path(own_data).name})" if own_data else "none"


def weights_and_data(model: str) -> tuple[str | None, str | None]:
    """The weights and data to use (None: the model's own), chosen among the uploads kept in the
    store, with the upload section below the pickers."""
    root = store().root
    pickers = st.container()  # drawn after the uploads are handled, so a new upload is listed at once
    with st.expander("Upload weights or data"):
        limit = st.get_option("server.maxUploadSize")
        st.caption(
            f"Up to {limit} MB per file. Files are checked as the command line checks them, then kept "
            "in the store. Weights: .safetensors, or a .pt/.pth state_dict (read with "
            "weights_only=True: objects and code are refused). Data: an .npz with x_train, y_train, "
            "x_test, y_test, or a CSV (one label column, numeric inputs; 20% of rows become the test "
            "split). Model code is never uploaded: add your models to the lab file (see the README)."
        )
        file = st.file_uploader("Weights for the selected model", ["safetensors", "pt", "pth"], key="up_w")
        if file is not None:
            _once(
                (file.file_id, model),
                WEIGHTS,
                lambda: uploads.keep_weights(root, file.name, file.getvalue(), model),
            )
        _data_upload(root)
    titles = {str(u.path): (u.kind, u.title) for u in uploads.listing(root)}
    with pickers:
        a, b = st.columns(2)
        weights = _picker(a, WEIGHTS, titles, _own(model, WEIGHTS))
        data = _picker(b, DATA, titles, _own(model, DATA))
    return weights, data


def _picker(column, kind: str, titles: dict[str, tuple[str, str]], default: str) -> str | None:
    options = [None, *(path for path, (k, _) in titles.items() if k == kind)]
    title = lambda path: default if path is None else titles[path][1]
    return column.selectbox(kind.title(), options, key=f"pick_{kind}", format_func=title)


def _data_upload(root: Path) -> None:
    file = st.file_uploader("Dataset", ["npz", "csv"], key="up_d")
    if file is None:
        return
    if not file.name.lower().endswith(".csv"):
        _once((file.file_id,), DATA, lambda: uploads.keep_data(root, file.name, file.getvalue()))
        return
    try:
        columns = uploads.csv_columns(file.getvalue(), file.name)
    except UserError as exc:
        st.error(plain(f"Refused: {exc}"))
        return
    label = st.selectbox("Label column", columns, len(columns) - 1, key="up_label")
    if st.button("Keep the CSV as a dataset", key="up_csv") or (file.file_id, label) in _outcomes():
        _once((file.file_id, label), DATA, lambda: uploads.keep_data(root, file.name, file.getvalue(), label))


def _outcomes() -> dict:
    return st.session_state.setdefault("upload_outcomes", {})


def _once(key: tuple, kind: str, keep: Callable[[], uploads.Upload]) -> None:
    """Check and keep an upload once (not on every rerun); its outcome stays shown while the file is in
    the uploader. A kept file becomes the current choice of its picker."""
    outcomes = _outcomes()
    if key not in outcomes:
        try:
            kept = keep()
        except UserError as exc:
            outcomes[key] = ("error", f"Refused: {exc}")
        else:
            outcomes[key] = ("success", f"Kept {kept.title} in the store; selected under {kind.title()}.")
            st.session_state[f"pick_{kind}"] = str(kept.path)
    level, text = outcomes[key]
    getattr(st, level)(plain(text))
