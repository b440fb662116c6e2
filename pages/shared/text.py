"""Text from outside (model paths and ids, labels, layer names, messages that quote them) shown as
written: Streamlit renders Markdown, with images and links, in st.markdown, captions, alerts, progress
texts and widget labels, so such text goes through `plain` first. Light (no engine import): the jobs
sidebar uses it before the pages load PyTorch."""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$=^&\"'])")


def plain(text: object) -> str:
    """`text` with every Markdown and HTML character escaped, so it shows as written: no image is
    fetched, and no link, emphasis, icon, colour, formula or HTML tag is drawn."""
    return _SPECIAL.sub(r"\\\1", str(text))
