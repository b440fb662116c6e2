"""Make every page load go through dashboard.py's st.navigation, deep links on a fresh server included.

Streamlit serves a folder named `pages/` the legacy way (each file a page of its own, without the main
script) until the first st.navigation call in the server process. A link such as /runs?runs=ID opened
first after a (re)start would then show the Runs page without dashboard.py: no wide layout, no jobs
sidebar. `through_dashboard()`, called first in each page, runs dashboard.py in its place in that case:
its st.navigation switches the process to explicit pages and runs this page (the page hashes of both
schemes derive from the file name), within the same script run, so no widget event is lost.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager  # internal, pinned: streamlit==1.67.0

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboard.py"


def through_dashboard() -> None:
    if PagesManager.uses_pages_directory:
        runpy.run_path(str(DASHBOARD), run_name="__main__")  # draws this page, via st.navigation
        st.stop()
