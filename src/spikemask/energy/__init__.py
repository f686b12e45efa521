"""Energy accounting that counts events exactly and shows its work (../shared/spec/energy.md)."""

from .config import EnergyConfig
from .counter import EnergyCounter
from .measure import dense_energy, measure_energy, saving_pct
from .report import PJ_PER_MJ, build_report, combine_reports, energy_by_group, group_of

__all__ = [
    "EnergyConfig",
    "EnergyCounter",
    "PJ_PER_MJ",
    "build_report",
    "combine_reports",
    "dense_energy",
    "energy_by_group",
    "group_of",
    "measure_energy",
    "saving_pct",
]
