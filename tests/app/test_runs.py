"""The Runs page: history table, selection in the URL, config diff, cancel, delete and downloads."""

from __future__ import annotations

from tests.app.helpers import texts


def test_empty_store_explains_what_to_do(app, empty) -> None:
    at = app("runs")
    assert "Launch run" in at.info[0].value
    assert not at.dataframe


def test_history_lists_every_run_with_its_honest_numbers(app, seeded) -> None:
    at = app("runs")
    table = at.dataframe[0].value
    assert len(table) == len(seeded.runs()) == 5
    assert sorted(table["status"]) == ["failed"] + ["succeeded"] * 4
    assert set(table["note"].dropna()) == {"masked: not faster"}
    assert {
        "target sparsity",
        "achieved sparsity",
        "accuracy before fine-tune",
        "accuracy after fine-tune",
    } <= set(table.columns)
    assert [b.label for b in at.get("download_button")] == ["Download CSV"]


def test_selected_runs_show_their_numbers_and_config_diff(app, seeded) -> None:
    a, b = [r.id for r in seeded.runs(status="succeeded")][:2]
    at = app("runs")
    at.multiselect(key="runs").set_value([a, b]).run()
    assert a in texts(at) and b in texts(at)
    full = at.dataframe[1].value
    at.toggle(key="only_differing").set_value(True).run()
    differing = at.dataframe[1].value
    assert list(differing.columns) == [a, b]
    assert 0 < len(differing) < len(full)
    assert all(len(set(row)) > 1 for row in differing.itertuples(index=False))
    labels = [b.label for b in at.get("download_button")]
    assert "Download HTML report" in labels


def test_link_reproduces_the_selection(app, seeded) -> None:
    exported = next(r for r in seeded.runs(status="succeeded") if r.config.get("export"))
    at = app()
    at.query_params["runs"] = exported.id
    at.switch_page("pages/runs.py").run()
    assert at.multiselect(key="runs").value == [exported.id]
    assert "Download pruned model (safetensors)" in [b.label for b in at.get("download_button")]


def test_delete_removes_the_runs(app, seeded) -> None:
    victim = seeded.runs(status="failed")[0].id
    at = app("runs")
    at.multiselect(key="runs").set_value([victim]).run()
    at.button(key="delete_selected").click().run()
    assert victim in [r.id for r in seeded.runs()]  # the first click only asks
    at.button(key="delete_selected-yes").click().run()
    assert victim not in [r.id for r in seeded.runs()]
    assert at.multiselect(key="runs").value == []


def test_cancel_stops_an_active_run(app, seeded) -> None:
    queued = seeded.create_run({"model": "mlp-digits", "method": "magnitude", "sparsity": 0.3})
    at = app("runs")
    at.multiselect(key="runs").set_value([queued]).run()
    at.button(key="cancel_selected").click().run()
    assert seeded.get(queued).status == "queued"  # the first click only asks
    at.button(key="cancel_selected-yes").click().run()
    assert seeded.get(queued).status == "cancelled"
