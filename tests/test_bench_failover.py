"""`teleop bench failover`'s paths, without running the bench: the scenario as netem, the choice of `--net`, its
one-line errors, and that the namespaces go whatever ends the run (the bench itself is a figure, not a test)."""

from __future__ import annotations

import argparse
import math
import subprocess

import pytest

from base.errors import UserError
from rehearsal import netns
from rehearsal.linkemu import PATH_SCENARIOS, LinkProfile, Outage
from rehearsal.netns import netem_args, netns_available
from teleop.bench import failover

root_ok, root_why = netns_available()


def test_the_scenario_maps_to_netem_with_the_emulators_mean_and_spread():
    # the emulator: base delay + a half-normal extra of scale σ; netem: a normal spread around its delay
    plan = failover.netem_plan(PATH_SCENARIOS["fibre+5g-edge"])
    assert plan == {"path0": "delay 12.239ms 0.181ms distribution normal",
                    "path1": "delay 20.197ms 0.904ms distribution normal"}
    assert netem_args(LinkProfile(delay_ms=0.1)) == ["delay", "0.100ms"]  # no jitter: no spread, no distribution
    assert netem_args(LinkProfile(delay_ms=315, jitter_ms=5, rate_mbps=3.5))[-2:] == ["rate", "3.5mbit"]
    sigma = 2.0
    mean, sd = netns.HALF_NORMAL_MEAN * sigma, netns.HALF_NORMAL_SD * sigma
    assert math.isclose(mean**2 + sd**2, sigma**2)  # a half-normal's second moment is σ²


@pytest.mark.parametrize("profile", [LinkProfile(delay_ms=10, ramp_to_ms=50, ramp_s=5),
                                     LinkProfile(outages=(Outage(1, 1, "stall"),))])
def test_what_netem_cannot_do_is_refused(profile):
    with pytest.raises(ValueError, match="--net proxy"):
        netem_args(profile)


def test_net_netns_without_namespaces_is_a_one_line_user_error_and_the_default_falls_back(monkeypatch):
    monkeypatch.setattr(failover, "netns_available", lambda: (False, "network namespaces need root"))
    with pytest.raises(UserError) as err:
        failover.choose_net("netns")
    assert "\n" not in str(err.value) and "--net proxy" in str(err.value)
    assert failover.choose_net(None) == ("proxy", "--net proxy: network namespaces need root")
    assert failover.choose_net("proxy") == ("proxy", "")
    monkeypatch.setattr(failover, "netns_available", lambda: (True, ""))
    assert failover.choose_net(None) == ("netns", "")


def test_a_cut_longer_than_its_period_is_a_user_error(tmp_path):
    args = argparse.Namespace(minutes=1.0, cut_every=5.0, cut_for=6.0, scenario="fibre+5g-edge", overrides=[])
    with pytest.raises(UserError, match="--cut-for 6 must be above 0 and below --cut-every 5"):
        failover.failover(args, tmp_path, "proxy")


@pytest.mark.netns
@pytest.mark.skipif(not root_ok, reason=root_why)
def test_the_namespaces_go_on_an_error_on_ctrl_c_and_when_half_built(monkeypatch):
    paths = failover.KernelPaths(PATH_SCENARIOS["fibre+fibre+5g-edge"])
    ns = paths.ns
    with pytest.raises(KeyboardInterrupt), paths.up([]):
        assert ns.exists() and len(ns.subnets) == 3
        paths.cut(1, 60.0)
        raise KeyboardInterrupt
    assert not ns.exists()
    real = netns._ip
    calls = []

    def failing(*args: str) -> None:  # the fourth `ip` call fails: two namespaces made, then nothing
        calls.append(args)
        if len(calls) == 4:
            raise subprocess.CalledProcessError(2, ["ip", *args], "", "RTNETLINK answers: File exists")
        real(*args)

    monkeypatch.setattr(netns, "_ip", failing)
    with pytest.raises(subprocess.CalledProcessError), ns:
        pass
    assert not ns.exists()
