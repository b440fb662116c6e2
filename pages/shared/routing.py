"""Make every page load go through dashboard.py's st.navigation, deep links on a fresh server included.

Streamlit serves a folder named `pages/` the legacy way (each file a page of its own, without the main
script) until the first st.navigation call in the server process. A link such as /runs?runs=ID opened
first after a (re)start would then show the Runs page without dashboard.py: no wide layout, no jobs
sidebar. Calling `through_dashboard()` first in a page switches the process to st.navigation and reruns:
the same URL (the page hashes of both schemes derive from the file name) then runs via dashboard.py.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager  # internal, pinned: streamlit==1.67.0


def through_dashboard() -> None:
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation itself does on its first call
        st.rerun()
