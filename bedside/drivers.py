"""Which arm driver the bedside runs, chosen by `bedside.arm_driver`.

A real robot's driver is added here under a new name, and the name to the key's choices in base/config.py
(tests/test_arm_driver.py checks the two lists agree); it must meet docs/architecture.md, "The arm driver
contract (real robots)". An unknown name is refused by the configuration before anything starts, and again
here for a config built by hand: no arm is ever built, let alone moved, by a driver nobody chose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from base.config import BedsideConfig, ConfigError
from bedside.arm import ArmModel, SimulatedArm
from bedside.arm_driver import ArmDriver, ServiceBound
from safety.limits import SetpointLimits
from safety.tissue import Tissue, tissue_from_config

ARM_DRIVERS: dict[str, Callable[[ArmModel, SetpointLimits, ServiceBound | None, Tissue], ArmDriver]] = {
    "simulated": SimulatedArm,
}
"""name -> factory(arm model: name and nominal geometry, the bedside's limits, its own watchdog, the simulated
tissue: a real robot's driver ignores it and reports its own measured_cf) -> driver of that arm."""


def build_arms(cfg: BedsideConfig, models: Sequence[ArmModel], limits: SetpointLimits,
               clock: Callable[[], int] | None = None) -> list[ArmDriver]:
    """One driver per arm model, of the kind `cfg.arm_driver` names; ConfigError (naming the key) if none. With
    `clock` (the bedside's: `time.monotonic_ns`) each driver watches its own service within
    `bedside.driver_watchdog_ms`; without, it has no watchdog (unit tests that invent the time)."""
    factory = ARM_DRIVERS.get(cfg.arm_driver)
    if factory is None:
        raise ConfigError(f"bedside.arm_driver: {cfg.arm_driver!r} is not one of {', '.join(ARM_DRIVERS)}")
    service = None if clock is None else ServiceBound(int(cfg.driver_watchdog_ms * 1e6), clock)
    tissue = tissue_from_config(cfg)
    return [factory(m, limits, service, tissue) for m in models]
