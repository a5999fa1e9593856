"""PatchNCE: the patchwise contrastive loss of CUT (Park, Efros, Zhang, Zhu, ECCV 2020, Eqn. 3-5).

Each output patch should be recognisable as the input patch at the same place, among the
other patches of the same input. For layer l of the generator's encoder E:

    z_l = H_l(E_l(x))[s],  z^_l = H_l(E_l(G(x)))[s]     s: S sampled locations, shared
    l(v, v+, v-) = -log exp(v.v+ / tau) / (exp(v.v+ / tau) + sum_n exp(v.v-_n / tau))
    L_PatchNCE = mean over l and s of l(z^_l[s], z_l[s], z_l[other locations])

H_l is a 2-layer MLP with L2-normalised output; tau = 0.07. The key z (input side) is
detached, so E learns only through the output's features. Names as in the authors' code
(taesungp/contrastive-unpaired-translation): ``PatchSampleF`` -> :class:`PatchHeads`,
``PatchNCELoss`` -> :func:`patch_nce_loss`, ``num_patches`` -> ``patches``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PatchHeads(nn.Module):
    """One MLP head per feature layer: Linear(C_l, nc) - ReLU - Linear(nc, nc), built up front from
    the layers' channel counts (the authors build theirs on the first batch)."""

    def __init__(self, channels: Sequence[int], *, nc: int = 256) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) for c in channels)

    def forward(self, feats: Sequence[torch.Tensor], ids: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per layer, (N, C_l, H_l, W_l) features at locations ``ids`` (P_l indices into H_l * W_l,
        the same for every image) -> (N * P_l, nc) unit vectors, image-major."""
        out = []
        for feat, idx, mlp in zip(feats, ids, self.mlps):
            x = mlp(_gather(feat, idx))  # (N * P, nc)
            # x / (||x|| + 1e-7) as published; vector_norm's gradient at a zero row is 0 where the
            # published x.pow(2).sum().pow(0.5) gives NaN (a head whose ReLUs are all off for a patch).
            out.append(x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + 1e-7))
        return out


def _gather(feat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) at the P locations ``idx`` of H * W -> (N * P, C), image-major, read in ``feat``'s
    own memory layout so that the gradient comes back in that layout too.

    PyTorch's CPU instance/batch norm backward (seen with 2.14) returns a wrong gradient for one
    image when the incoming gradient is channels-last and the input is not: gathering an NCHW map
    through a channels-last view (``permute(0, 2, 3, 1)``) sends exactly that to the instance norm
    ending each residual block, and the PatchNCE gradient of those layers came out wrong whenever
    G encoded one NCHW image at a time on the CPU (FastCUT at batch 1, for one).
    """
    if feat.is_contiguous(memory_format=torch.channels_last) and not feat.is_contiguous():
        x = feat.permute(0, 2, 3, 1).flatten(1, 2)[:, idx, :]  # channels-last: a view, (N, P, C)
    else:
        x = feat.flatten(2)[:, :, idx].transpose(1, 2)  # NCHW: (N, C, P) -> (N, P, C)
    return x.flatten(0, 1)


def sample_locations(feats: Sequence[torch.Tensor], patches: int, rng: torch.Generator | None = None) -> list[torch.Tensor]:
    """For each layer, ``patches`` distinct random locations of its H * W (all of them, shuffled,
    when there are fewer): drawn on the features' device from torch's RNG (no host sync), or on
    the CPU from ``rng``."""
    out = []
    for feat in feats:
        n = feat.shape[2] * feat.shape[3]
        if rng is None:
            out.append(torch.randperm(n, device=feat.device)[: min(patches, n)])
        else:
            out.append(torch.randperm(n, generator=rng)[: min(patches, n)].to(feat.device))
    return out


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, *, batch: int, temperature: float = 0.07) -> torch.Tensor:
    """Per-patch InfoNCE loss (N * P,) of queries (output side) against keys (input side), both
    (N * P, C) unit vectors, image-major. The positive of query i is key i; its negatives are the
    other P - 1 keys of the same image (the authors' default; their option to draw negatives
    from the whole batch is for single-image training)."""
    key = key.detach()
    n_patches, dim = query.shape
    l_pos = torch.bmm(query.view(n_patches, 1, dim), key.view(n_patches, dim, 1)).view(n_patches, 1)
    q, k = query.view(batch, -1, dim), key.view(batch, -1, dim)  # (N, P, C)
    p = q.shape[1]
    l_neg = torch.bmm(q, k.transpose(2, 1))  # (N, P, P): query i against every key of its image
    # The diagonal is the positive pair again: out of the negatives (exp(-10 / tau) is 0 in fp32).
    l_neg = l_neg.masked_fill(torch.eye(p, device=q.device, dtype=torch.bool)[None], -10.0).view(-1, p)
    logits = torch.cat([l_pos, l_neg], dim=1) / temperature  # (N * P, 1 + P): the positive is class 0
    return F.cross_entropy(logits, torch.zeros(n_patches, dtype=torch.long, device=q.device), reduction="none")
