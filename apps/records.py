"""Shared by the Records (台账) and Services (无感服务) pages: the live twin, who is acting, and their scope.

The live twin (:class:`twin.live.state.LiveTwin`) is made once per server process over the default twin and the
app's store; changes committed anywhere (the service, the CLI, another page) are read on every use. Thin: the rules
are :mod:`twin.live.scoped` and :mod:`twin.access`'s.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

import twin
from apps import state
from twin.access.roles import Role, make_role
from twin.live.state import LiveTwin

__all__ = ["Acting", "live_twin", "communities", "acting"]


@st.cache_resource(show_spinner="Opening the live twin …")
def live_twin(url: str) -> LiveTwin:
    """One live twin per store URL and server process (the default twin + the store's committed changes)."""
    t = state.get_twin()
    return LiveTwin(t, state.app_store(url))


@st.cache_data(show_spinner=False)
def communities(_t: twin.Twin, key: str) -> pd.DataFrame:
    """``community_code``, ``short_name`` and ``town_name`` of every community, by town then code (pickers)."""
    c = pd.DataFrame(_t.communities[["community_code", "short_name", "town_code"]]).astype(str)
    towns = _t.towns.set_index(_t.towns["town_code"].astype(str))["town_name"].astype(str)
    c["town_name"] = c["town_code"].map(towns).fillna("")
    return c.sort_values(["town_code", "community_code"]).reset_index(drop=True)


@dataclass(frozen=True)
class Acting:
    """Who acts: the named person, their role (scope) and the community the page works on."""

    user: str
    role: Role
    community: str
    label: str


def acting(t: twin.Twin) -> Acting | None:
    """Sidebar: the acting person (操作人, shared with the Incidents page), the role — a community user of one
    community, or the district — and the community to work on (a community user gets only their own). ``None``
    (with a message) for the analyst, who never sees records."""
    sb = st.sidebar
    ss = st.session_state
    user = sb.text_input("Acting as 操作人", value=ss.get("actor", "wang.community"), key="records_actor").strip()
    ss["actor"] = user
    kind = sb.radio("Role 角色", ["community 村居", "district 区级", "analyst 分析员"], key="records_role",
                    help="A community user sees and changes only their own community's records (分权分域).")
    com = communities(t, state.twin_key(t))
    labels = {r.community_code: f"{r.town_name} {r.short_name} · {r.community_code}" for r in com.itertuples()}
    codes = list(labels)
    if kind.startswith("analyst"):
        st.info("Analysts see aggregates only (suppressed below k): no individual records, no work lists. "
                "Pick the community or district role in the sidebar.")
        return None
    if not user:
        st.warning("Type who is acting (操作人): every change is logged to a named person.")
        return None
    if kind.startswith("community"):
        own = sb.selectbox("Your community 本村居", codes, format_func=labels.get, key="records_own")
        role = make_role("community", [own], user=user)
        return Acting(user, role, own, f"community user {user} · {labels[own]}")
    pick = sb.selectbox("Community 村居", codes, format_func=labels.get, key="records_pick")
    return Acting(user, make_role("district", user=user), pick, f"district user {user} · {labels[pick]}")
