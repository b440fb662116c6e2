"""Pruning Lab's entry point: `streamlit run dashboard.py`. Routes to the pages and shows active jobs."""

import streamlit as st

from pages.shared import access, jobs, warmup, welcome
from pages.shared.text import plain

st.set_page_config(layout="wide", page_title="Pruning Lab")
PAGES = [
    st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:", default=True),
    st.Page("pages/compare.py", title="Compare", icon=":material/monitoring:"),
    st.Page("pages/layers.py", title="Layers", icon=":material/view_list:"),
    st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    st.Page("pages/present.py", title="Present", icon=":material/slideshow:"),
]
signed_in = access.signed_in()  # True without PRUNING_LAB_PASSWORD
presenting = st.query_params.get("present") == "1"  # presentation mode: no sidebar, no controls
page = st.navigation(PAGES, position="sidebar" if signed_in and not presenting else "hidden")
if not signed_in:
    access.sign_in_form()  # and nothing of any page: no page runs, no sidebar, no download
    st.stop()
if presenting:
    if page.url_path != "present":
        st.switch_page("pages/present.py", query_params=st.query_params.to_dict())
    page.run()
    warmup.start()
    st.stop()
with st.sidebar:
    if access.exposed_without_password():
        st.warning(
            "Served beyond this machine without a password: anyone who can reach it can run, cancel "
            "and delete jobs. Set PRUNING_LAB_PASSWORD (see the README)."
        )
    st.subheader("Jobs")
    st.caption(f"Store: {plain(jobs.store().root)}")
    jobs.jobs_panel()
    if st.toggle("Presentation mode", key="present_toggle", help="slides of the history, controls hidden"):
        st.switch_page("pages/present.py", query_params={"present": "1"})
welcome.first_visit(jobs.store())
page.run()
warmup.start()  # after the first page: the other sample models load while the visitor reads it
