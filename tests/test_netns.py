"""A real cable cut between two network namespaces (root only; CI runs as root)."""

from __future__ import annotations

import time

import pytest
from crossproc import Session

from rehearsal.netns import NetnsPair, netns_available

ok, why = netns_available()
pytestmark = [pytest.mark.netns, pytest.mark.fault, pytest.mark.skipif(not ok, reason=why)]


def test_cut_link_freezes_bedside_and_console_shows_lost(tmp_path):
    with NetnsPair(prefix="tlt", subnet="10.231.78") as ns:
        s = Session(tmp_path, bed_prefix=ns.exec_prefix(ns.bed), con_prefix=ns.exec_prefix(ns.con),
                    bed_extra=[f"link.bind_host={ns.bed_ip}"],
                    con_extra=[f"link.bedside_host={ns.bed_ip}", "console.engage_at_s=0.3"])
        try:
            s.start_bedside()
            s.start_console()
            s.wait_engaged()
            time.sleep(0.3)
            ns.cut()
            freeze = s.wait_event(lambda r: r.get("type") == "freeze", 5.0)
            assert freeze is not None, s.diagnostics()
            assert freeze["reason"] == "LINK_LOST"
            time.sleep(0.4)
            ns.restore()
            time.sleep(2.0)  # TCP retransmits what was queued during the cut
            con = s.console_summary()
            bed = s.bedside_summary()
            assert any(e["source"] == "link" and e["name"] == "LOST" for e in con["events"])
            assert bed["counters"].get("backlog_executed", 0) == 0
            assert len(bed["freezes"]) == 1
        finally:
            s.close()
