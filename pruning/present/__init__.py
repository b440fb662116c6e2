"""Presentation without Streamlit: tidy tables, Plotly figures, the HTML report."""
