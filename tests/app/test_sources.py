"""The Prune page's sources (pages/shared/sources.py): lab models in the picker, uploaded weights and
datasets kept in the store and used, and uploads that are refused, never run."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save

from pages.shared.sources import plain
from pruning.core import models
from tests.app.helpers import array, figures, shown, texts, wait_done
from tests.lab_folder import blobs, write_lab
from tests.unit.test_cli import Payload


def dense_accuracy(at) -> str:
    (accuracy,) = (m for m in at.metric if m.label == "accuracy (pruned)")
    return re.search(r"vs dense ([\d.]+%)", accuracy.proto.delta).group(1)


def test_picker_lists_lab_models_by_label_and_previews_them(app, empty) -> None:
    write_lab(empty.root)  # lab.toml in the store folder
    at = app(model="tiny")
    picker = at.selectbox(key="model")
    assert picker.value == "tiny" and at.query_params["model"] == "tiny"  # the id in the URL
    assert picker.options[: len(models.SAMPLE_MODELS)] == list(models.SAMPLE_MODELS)
    assert picker.options[-2:] == ["Tiny *net* (v1)", "bare"]  # labels as written, not as Markdown
    assert not at.error, [e.value for e in at.error]
    source = f"From the lab file: {empty.root / 'models' / 'net.py'}:build"
    assert plain(source) in [c.value for c in at.caption]
    assert at.selectbox(key="pick_data").options[0] == "the model's own (blobs)"
    assert array(figures(at)[0]["data"][0]["x"]) == ["0", "2"]  # the lab model's two Linear layers
    assert float(dense_accuracy(at).rstrip("%")) > 80  # its own weights and data

    at.checkbox(key="latency").uncheck()
    next(b for b in at.button if b.label == "Launch run").click().run()
    (record,) = empty.runs()
    assert (record.model, record.config["weights"], record.config["data"]) == ("tiny", None, None)
    (done,) = wait_done(empty, [record.id])  # a detached worker finds the same lab file
    assert done.status == "succeeded", done.error
    assert f"{done.result['dense']['accuracy']:.1%}" == dense_accuracy(at)


def test_the_url_follows_the_picker(app, empty) -> None:
    write_lab(empty.root)
    at = app(model="tiny")
    at.selectbox(key="model").set_value("bare").run()
    assert at.query_params["model"] == "bare"
    at.run()  # an unrelated rerun keeps the choice
    assert at.selectbox(key="model").value == "bare"
    at.selectbox(key="model").set_value("mlp-digits").run()
    assert "model" not in at.query_params  # the default, as the bound widgets leave it out


def test_a_broken_lab_file_is_reported_and_samples_still_work(app, empty) -> None:
    (empty.root / "lab.toml").write_text("[models.tiny\n")
    at = app()
    (error,) = at.error
    assert "is not valid TOML" in shown(error.value)
    assert at.selectbox(key="model").options == list(models.SAMPLE_MODELS)
    assert figures(at)  # the default sample model still previews


def test_uploaded_weights_are_kept_in_the_store_and_used(app, empty) -> None:
    at = app()
    own = dense_accuracy(at)
    torch.manual_seed(0)
    untrained = {k: v.contiguous() for k, v in models.build("mlp-digits").state_dict().items()}
    at.file_uploader(key="up_w").set_value(
        ("my weights.safetensors", save(untrained), "application/octet-stream")
    )
    at.run()
    assert not at.error, [e.value for e in at.error]
    (kept,) = (empty.root / "uploads").glob("*/*")
    assert kept.name == "my_weights.safetensors" and re.fullmatch(r"[0-9a-f]{16}", kept.parent.name)
    assert shown(at.success[0].value).startswith(f"Kept my_weights.safetensors ({kept.parent.name[:8]})")
    assert at.selectbox(key="pick_weights").value == str(kept)
    assert dense_accuracy(at) != own  # the preview uses the upload

    at.number_input(key="epochs").set_value(0)
    at.checkbox(key="latency").uncheck()
    next(b for b in at.button if b.label == "Launch run").click().run()
    (record,) = empty.runs()
    assert record.config["weights"] == str(kept)
    (done,) = wait_done(empty, [record.id])
    assert done.status == "succeeded", done.error
    assert f"{done.result['dense']['accuracy']:.1%}" == dense_accuracy(at)


def test_a_pickle_payload_uploaded_as_pt_never_runs(app, empty, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"fc1.weight": Payload(marker)}, buffer)  # unpickling it would create `marker`
    at = app()
    at.file_uploader(key="up_w").set_value(("evil.pt", buffer.getvalue(), "application/octet-stream"))
    at.run()
    assert not at.exception
    (error,) = at.error
    message = shown(error.value)
    assert "\n" not in message
    assert message.startswith("Refused: 'evil.pt' holds objects or code that a weights-only load refuses")
    assert not marker.exists()
    assert not list((empty.root / "uploads").rglob("*.pt"))
    assert at.selectbox(key="pick_weights").options == ["the model's own"]


def test_a_csv_becomes_a_dataset_for_a_lab_model(app, empty) -> None:
    write_lab(empty.root)
    arrays = blobs(seed=1)
    rows = np.column_stack(
        [np.vstack([arrays["x_train"], arrays["x_test"]]), np.hstack([arrays["y_train"], arrays["y_test"]])]
    )
    csv = "f1,f2,f3,f4,species\n" + "\n".join(
        ",".join(f"{v:g}" for v in row[:4]) + f",{int(row[4])}" for row in rows
    )
    at = app(model="tiny")
    at.file_uploader(key="up_d").set_value(("blobs 2.csv", csv.encode(), "text/csv"))
    at.run()
    assert at.selectbox(key="up_label").value == "species"  # the last column by default
    at.button(key="up_csv").click().run()
    assert not at.error, [e.value for e in at.error]
    (kept,) = (empty.root / "uploads").glob("*/*")
    assert kept.name == "blobs_2.npz"
    assert at.selectbox(key="pick_data").value == str(kept)
    assert float(dense_accuracy(at).rstrip("%")) > 80  # the lab model on the uploaded data
    assert "Kept blobs_2.npz" in shown(texts(at))


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("bad.npz", b"not a zip", "Refused: 'bad.npz' must be an .npz with arrays x_train"),
        ("empty.csv", b"", "Refused: 'empty.csv' could not be read as CSV"),
    ],
)
def test_bad_datasets_are_refused(app, empty, name: str, content: bytes, fragment: str) -> None:
    at = app()
    at.file_uploader(key="up_d").set_value((name, content, "application/octet-stream"))
    at.run()
    (error,) = at.error
    assert shown(error.value).startswith(fragment)
    assert not (empty.root / "uploads").exists() or not list((empty.root / "uploads").glob("*/*"))


def test_a_hugging_face_language_model_previews_its_perplexity(app, empty) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(config).save_pretrained(empty.root / "gpt2")
    ids = np.random.default_rng(0).integers(0, 64, size=(48, 17))
    np.savez(empty.root / "tokens.npz", x_train=ids[:32, :-1], y_train=ids[:32, 1:], x_test=ids[32:, :-1],
             y_test=ids[32:, 1:])  # fmt: skip
    (empty.root / "lab.toml").write_text(
        '[models.gpt]\nsource = "hf:gpt2"\ndata = "tokens.npz"\nlabel = "GPT-2 (tiny)"\n'
    )
    at = app(model="gpt")
    assert not at.error, [e.value for e in at.error]
    (metric,) = [m for m in at.metric if m.label == "perplexity (pruned)"]
    assert float(metric.value) > 1.0 and "vs dense" in metric.delta  # lower is better: shown as such
    layers = array(figures(at)[0]["data"][0]["x"])
    assert "transformer.h.0.attn.c_attn" in layers and "lm_head" in layers  # Conv1D and the tied head
