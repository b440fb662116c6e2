"""In chromium: the first click on "Launch sweep" launches it, even with the methods' list still open;
and a copied URL carries the whole Prune view (model, method, its options, scope, sparsity, overrides)
into a new browser context."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from pruning.runs.store import Store
from tests.e2e.conftest import WAIT_MS, Server, shot

pytestmark = pytest.mark.e2e


def test_first_click_on_launch_sweep_launches(page: Page, dashboard: Server) -> None:
    page.set_viewport_size({"width": 1500, "height": 1500})  # tall: the open list drops downwards
    page.goto(f"{dashboard.url}/?model=mlp-digits")
    expect(page.get_by_text("50.0% (target 50.0%)")).to_be_visible()
    epochs = page.get_by_label("Fine-tune epochs")
    epochs.fill("0")
    epochs.press("Enter")
    page.get_by_role("tab", name="Sweep").click()
    levels = page.get_by_label("Sparsity levels")
    levels.fill("0.5, 0.9")
    levels.press("Enter")
    expect(levels).to_have_value("0.5, 0.9")
    methods = page.get_by_test_id("stMultiSelect").filter(has_text="Methods")
    methods.locator("input").click()
    page.get_by_role("option", name="random", exact=True).click()
    expect(methods).to_contain_text("random")
    assert page.get_by_role("option").count() > 0  # the list is still open, as a user leaves it
    # one real mouse click where the button is (a locator click would wait for the list to go away)
    button = page.locator("button", has_text="Launch sweep").bounding_box()
    page.mouse.click(button["x"] + button["width"] / 2, button["y"] + button["height"] / 2)
    expect(page.get_by_test_id("stAlertContentSuccess")).to_contain_text(
        "Queued a sweep of 4 runs (magnitude, random at 2 levels) on mlp-digits"
    )
    shot(page, "sweep-first-click")
    with Store(dashboard.home) as store:
        assert sorted((r.method, r.config["sparsity"]) for r in store.runs()) == [
            ("magnitude", 0.5),
            ("magnitude", 0.9),
            ("random", 0.5),
            ("random", 0.9),
        ]


def view(page: Page) -> dict:
    """What the Prune page shows: its choices and its preview's numbers."""
    return {
        "model": page.get_by_test_id("stSelectbox").filter(has_text="Model").first.inner_text(),
        "method": page.get_by_test_id("stSelectbox").filter(has_text="Method").first.inner_text(),
        "batches": page.get_by_role("spinbutton", name="batches").input_value(),
        "layer scope": page.get_by_role("radio", name="layer").is_checked(),
        "sparsity": page.get_by_role("slider").get_attribute("aria-valuenow"),
        "achieved": page.get_by_text("(target 70.0%)").inner_text(),
        "accuracy": page.get_by_test_id("stMetric").filter(has_text="accuracy (pruned)").inner_text(),
    }


def test_a_copied_url_reproduces_the_view(browser, dashboard: Server) -> None:
    first = browser.new_context(viewport={"width": 1500, "height": 1100})
    first.set_default_timeout(WAIT_MS)
    page = first.new_page()
    page.goto(f"{dashboard.url}/?model=cnn-digits&overrides=classifier:0.3")  # the override, as pasted
    expect(page.get_by_text("(target 50.0%)")).to_be_visible()
    page.get_by_test_id("stSelectbox").filter(has_text="Method").click()
    page.get_by_role("option", name="snip", exact=True).click()
    batches = page.get_by_role("spinbutton", name="batches")
    batches.fill("2")
    batches.press("Enter")
    page.get_by_test_id("stRadio").filter(has_text="Scope").get_by_text("layer", exact=True).click()
    slider = page.get_by_role("slider")
    slider.focus()
    for _ in range(20):
        slider.press("ArrowRight")
    expect(page.get_by_text("(target 70.0%)")).to_be_visible()
    expect(page.get_by_text("(with the overrides)").first).to_be_visible()  # the live curve's slider point
    before = view(page)
    url = page.url
    for field in ("model=cnn-digits", "method=snip", "option-snip-batches=2", "scope=layer", "sparsity=0.7"):
        assert field in url, url
    assert "overrides=classifier" in url, url
    shot(page, "url-state-original")
    first.close()

    second = browser.new_context(viewport={"width": 1500, "height": 1100})  # nothing shared but the URL
    second.set_default_timeout(WAIT_MS)
    page = second.new_page()
    page.goto(url)
    expect(page.get_by_text("(target 70.0%)")).to_be_visible()
    expect(page.get_by_text("(with the overrides)").first).to_be_visible()
    assert view(page) == before
    shot(page, "url-state-reopened")
    second.close()
