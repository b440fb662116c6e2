"""Uploads: checked with the command line's loaders before anything is kept, kept in the store under
their content's digest, never at a path the browser chose, never unpickled."""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest
import torch
from safetensors.torch import save

from pruning.core import data, models
from pruning.errors import UserError
from pruning.runs import uploads
from tests.lab_folder import blobs
from tests.unit.test_models import Payload


def state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    return save({k: v.contiguous() for k, v in state.items()})


def pt_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, kept",
    [
        ("weights.safetensors", "weights.safetensors"),
        ("../../etc/x.pt", "x.pt"),
        ("C:\\Users\\me\\w.PTH", "w.pth"),
        ("my weights (v2).safetensors", "my_weights__v2_.safetensors"),
        ("..pt", "upload.pt"),
        ("<b>x<b>.pt", "_b_x_b_.pt"),
    ],
)
def test_names_are_cut_to_safe_characters(name: str, kept: str) -> None:
    assert uploads.safe_name(name, uploads.WEIGHT_SUFFIXES) == kept


def test_weights_are_kept_by_content_and_load(tmp_path: pathlib.Path) -> None:
    state = models.build("mlp-digits").state_dict()
    content = state_bytes(state)
    kept = uploads.keep_weights(tmp_path, "../mine.safetensors", content, "mlp-digits")
    assert kept.path.parent.parent == tmp_path / "uploads" and kept.path.name == "mine.safetensors"
    assert kept.path.read_bytes() == content
    loaded = models.load("mlp-digits", kept.path)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    assert uploads.keep_weights(tmp_path, "mine.safetensors", content, "mlp-digits") == kept  # one copy
    assert uploads.listing(tmp_path) == [kept]
    pt = uploads.keep_weights(tmp_path, "mine.pt", pt_bytes(state), "mlp-digits")
    assert uploads.listing(tmp_path) == [pt, kept] and pt.kind == "weights"


def test_pickled_code_is_refused_and_never_runs(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    content = pt_bytes({"fc1.weight": Payload(marker)})
    with pytest.raises(UserError) as caught:
        uploads.keep_weights(tmp_path / "store", "evil.pt", content, "mlp-digits")
    message = str(caught.value)
    assert message.startswith("'evil.pt' holds objects or code that a weights-only load refuses (GLOBAL ")
    assert message.endswith("); save a plain state_dict, ideally as .safetensors")
    assert not marker.exists()
    assert uploads.listing(tmp_path / "store") == []
    assert list((tmp_path / "store" / "uploads").rglob("*.pt")) == []  # not even in the incoming folder


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("w.bin", b"x", "'w.bin' must be a .safetensors, .pt, .pth file"),
        ("w.safetensors", b"\0" * 64, "'w.safetensors' is not a valid safetensors file"),
        (
            "w.safetensors",
            state_bytes({"fc1.weight": torch.zeros(2, 2)}),
            "weights in 'w.safetensors' do not match",
        ),
    ],
)
def test_bad_weights_are_refused(tmp_path: pathlib.Path, name: str, content: bytes, fragment: str) -> None:
    with pytest.raises(UserError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        uploads.keep_weights(tmp_path, name, content, "mlp-digits")
    assert uploads.listing(tmp_path) == []


def test_npz_is_kept_as_it_is(tmp_path: pathlib.Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **blobs())
    kept = uploads.keep_data(tmp_path, "blobs.npz", buffer.getvalue())
    assert kept.kind == "data" and data.load(str(kept.path)).num_classes == 3


def test_npz_with_objects_or_missing_arrays_is_refused(tmp_path: pathlib.Path) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x_train=np.array([Payload(tmp_path / "pwned")], dtype=object))
    with pytest.raises(
        UserError, match="'evil.npz' must be an .npz with arrays x_train, y_train, x_test, y_test"
    ):
        uploads.keep_data(tmp_path, "evil.npz", buffer.getvalue())
    assert not (tmp_path / "pwned").exists() and uploads.listing(tmp_path) == []


CSV = b"a,b,kind\n" + b"".join(f"{i},{i % 7 / 2},{'cat' if i % 2 else 'dog'}\n".encode() for i in range(20))


def test_csv_becomes_an_npz_with_a_seeded_split(tmp_path: pathlib.Path) -> None:
    assert uploads.csv_columns(CSV) == ["a", "b", "kind"]
    kept = uploads.keep_data(tmp_path, "pets.csv", CSV, label="kind")
    assert kept.path.name == "pets.npz"
    loaded = data.load(str(kept.path))
    assert (len(loaded.train), len(loaded.test), loaded.num_classes) == (16, 4, 2)
    assert loaded.train.x.shape[1] == 2  # the label column is not an input
    rows = torch.cat([loaded.train.x, loaded.test.x])
    labels = torch.cat([loaded.train.y, loaded.test.y])
    assert {(int(a), int(y)) for (a, _), y in zip(rows.tolist(), labels)} == {
        (i, 1 - i % 2) for i in range(20)
    }
    numbers = b"a,b,c\n" + b"".join(f"{i},{i % 3},{i % 2}\n".encode() for i in range(10))
    by_b, by_c = (uploads.keep_data(tmp_path, "n.csv", numbers, label=column) for column in "bc")
    assert by_b.path != by_c.path  # another label column is another dataset
    assert data.load(str(by_b.path)).num_classes == 3


@pytest.mark.parametrize(
    "content, label, fragment",
    [
        (CSV, None, "'pets.csv' is a CSV: choose its label column"),
        (CSV, "nosuch", "'pets.csv' has no column 'nosuch'; choose one of a, b, kind"),
        (CSV, "a", "non-numeric input columns kind"),
        (b"a,b\n1,\n2,3\n", "b", "has empty cells or fewer than 2 rows"),
        (b"", "a", "could not be read as CSV"),
    ],
)
def test_bad_csv_is_refused(tmp_path: pathlib.Path, content: bytes, label: str | None, fragment: str) -> None:
    with pytest.raises(UserError) as caught:
        uploads.keep_data(tmp_path, "pets.csv", content, label=label)
    assert fragment in str(caught.value)
    assert uploads.listing(tmp_path) == []
