"""Pruning Lab's entry point: `streamlit run dashboard.py`. Routes to the pages and shows active jobs."""

import streamlit as st

from pages.shared import jobs

st.set_page_config(layout="wide", page_title="Pruning Lab")
page = st.navigation(
    [
        st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:", default=True),
        st.Page("pages/compare.py", title="Compare", icon=":material/monitoring:"),
        st.Page("pages/layers.py", title="Layers", icon=":material/view_list:"),
        st.Page("pages/runs.py", title="Runs", icon=":material/history:"),
    ]
)
with st.sidebar:
    st.subheader("Jobs")
    st.caption(f"Store: `{jobs.store().root}`")
    jobs.jobs_panel()
page.run()
