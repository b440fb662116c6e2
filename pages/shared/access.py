"""Who may use the dashboard: an optional shared-secret login, and a warning when it is served beyond
this machine without one.

With `PRUNING_LAB_PASSWORD` set on the server, dashboard.py asks `signed_in()` before any page runs:
until a browser session has typed the password, it sees `sign_in_form()` and nothing else (no page,
no jobs sidebar, no download is produced). The secret is compared with `hmac.compare_digest`; a
session stays signed in until the tab is closed or reloaded (Streamlit keeps no login cookie).
"""

from __future__ import annotations

import hmac
import logging
import os

import streamlit as st

PASSWORD_ENV = "PRUNING_LAB_PASSWORD"
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")
_SIGNED_IN = "_signed_in"
_LOG = logging.getLogger("pruning_lab.access")


def password() -> str | None:
    """The shared secret the operator set, or None when the dashboard needs no login."""
    return os.environ.get(PASSWORD_ENV) or None


def signed_in() -> bool:
    """True when no password is set or this browser session gave it."""
    return password() is None or bool(st.session_state.get(_SIGNED_IN))


def sign_in_form() -> None:
    """The password form; the right password signs this session in and reruns the page asked for."""
    secret = password() or ""
    st.title("Pruning Lab")
    with st.form("sign_in", clear_on_submit=True):
        typed = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if hmac.compare_digest(typed.encode(), secret.encode()):
            st.session_state[_SIGNED_IN] = True
            st.rerun()
        _LOG.warning("Pruning Lab: a wrong password was typed")
        st.error("Wrong password. Ask whoever runs this dashboard for it.")
    st.caption("This dashboard is protected by a password (set with PRUNING_LAB_PASSWORD on the server).")


def exposed_without_password() -> bool:
    """True when the server listens beyond this machine and no password is set."""
    address = (st.get_option("server.address") or "").strip()
    return password() is None and address not in LOCAL_ADDRESSES
