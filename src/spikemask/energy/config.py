"""The energy model: unit costs and the counting conventions, stated in every report.

Compute-only 45 nm CMOS estimates (Horowitz, ISSCC 2014), as every paper in ../shared/papers/
uses: E_MAC = 4.6 pJ (fp32 multiply + add), E_AC = 0.9 pJ (fp32 add). They say nothing about
memory traffic, data movement, or the real cost on any chip: they are a common yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import bounded, check_bounds

__all__ = ["EnergyConfig"]


@dataclass(kw_only=True)
class EnergyConfig:
    """Unit costs (pJ) and conventions of the energy report.

    e_mac_pj: one multiply-accumulate (fp32, 45 nm).
    e_ac_pj: one accumulate (fp32 add, 45 nm).
    integer_inputs: how a layer fed whole numbers that are not just 0/1 (event counts, the
        integer residual stream of Spikformer) is charged: ``"ac_weighted"`` — an input n costs n
        ACs, as n coincident spikes would (default); ``"mac_nonzero"`` — one MAC per weight use of
        a non-zero input; ``"mac_dense"`` — every MAC, as an ANN.
    real_inputs: a layer fed real values: ``"mac_dense"`` (default) or ``"mac_nonzero"``.
    first_layer: ``"mac_dense"`` charges the first layer every MAC at every step, as the papers do
        (E_MAC · FL_1); ``"as_input"`` applies the rules above to its actual input.
    pooling: ``"mac"`` charges pooling (max and average) one MAC per window element, as the spec
        says; ``"exclude"`` leaves it out. (Token aggregation, SASA's average over tokens and SDSA's
        token sum, is charged one AC per non-zero input: an addition, whatever the value.)
    gates: a Hadamard product with a spike operand (SDSA's ``Q ⊙ ...``, SASA's ``A ⊙ K``) only lets a
        value through where a spike is: ``"free"`` (default; an AND gate costs femtojoules) or ``"ac"``
        (one AC per pair of non-zero operands, an upper bound).
    e_lif_update_pj / e_if_update_pj: one neuron update (LIF: leak multiply-add + threshold add;
        IF: integrate add + threshold add). Reported separately, never in the compute total.
    e_sram_pj: one 32-bit SRAM access (8 KB bank, 45 nm: 10 pJ per 64 bits). The memory column
        counts one weight read per synaptic op and a membrane read + write per neuron update: a
        crude lower bound (no DRAM, perfect activation reuse), reported separately.
    e_rng_pj: one random number drawn by a mask, compared with its threshold. An assumption, not
        a measurement: a 32-bit xorshift step (three shift-XORs, the shifts being wiring) and one
        32-bit comparison, each costed like a 32-bit integer add at 45 nm (0.1 pJ, Horowitz
        2014): 0.4 pJ. It leaves out the generator's state register and clocking (and a GPU's
        Philox costs far more). Reported separately, never in the compute total.
    """

    e_mac_pj: float = bounded(4.6, ge=0)
    e_ac_pj: float = bounded(0.9, ge=0)
    integer_inputs: Literal["ac_weighted", "mac_nonzero", "mac_dense"] = "ac_weighted"
    real_inputs: Literal["mac_dense", "mac_nonzero"] = "mac_dense"
    first_layer: Literal["mac_dense", "as_input"] = "mac_dense"
    pooling: Literal["mac", "exclude"] = "mac"
    gates: Literal["free", "ac"] = "free"
    e_lif_update_pj: float = bounded(5.5, ge=0)
    e_if_update_pj: float = bounded(1.8, ge=0)
    e_sram_pj: float = bounded(5.0, ge=0)
    e_rng_pj: float = bounded(0.4, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self, "energy")
