"""Skipping the work of masked-out tokens on the dense path: linear layers that multiply only the token rows
holding a spike (what a ``structure="token"`` mask leaves empty costs nothing)."""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

__all__ = ["TokenSkipLinear", "skip_dropped_tokens"]


class TokenSkipLinear(nn.Linear):
    """An ``nn.Linear`` that computes only the rows (tokens) of its input holding a non-zero.

    ``[..., in] -> [..., out]``, the same numbers as ``nn.Linear`` (an all-zero row gives the bias), but a
    token dropped whole by a ``structure="token"`` mask (or silent) costs no multiply: gather the live
    rows, one smaller matmul, scatter back. Worth it only when many rows are empty (the gather, the
    host sync of ``nonzero`` and the scatter cost about a pass over the input and the output).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # [rows, in]
        live = flat.any(dim=1).nonzero().squeeze(1)
        if self.bias is None:
            out = flat.new_zeros(flat.shape[0], self.out_features)
        else:
            out = self.bias.expand(flat.shape[0], -1)
        out = out.index_copy(0, live, nn.functional.linear(flat.index_select(0, live), self.weight, self.bias))
        return out.view(*x.shape[:-1], self.out_features)


def skip_dropped_tokens(model: nn.Module, enable: bool = True, pattern: str = "*mlp.fc2") -> list[str]:
    """Make the ``nn.Linear`` layers whose path matches ``pattern`` skip empty token rows (:class:`TokenSkipLinear`),
    or undo it (``enable=False``); returns the paths changed. Parameters, hooks and checkpoints are untouched
    (the class of each module is swapped in place). Default: the MLPs' fc2, which reads ``mlp.hidden``."""
    changed = []
    for name, module in model.named_modules():
        if fnmatch.fnmatchcase(name, pattern) and isinstance(module, nn.Linear):
            module.__class__ = TokenSkipLinear if enable else nn.Linear
            changed.append(name)
    return changed
