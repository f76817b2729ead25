"""The largest noise level a score model needs: the largest distance between two training images.

Song & Ermon (2020, "Improved techniques", technique 1) set sigma_max to the
largest pairwise Euclidean distance of the training set, so that noise at the
top level can carry any training image to any other and annealing starts from
a single blob. Computed exactly without comparing all N^2 pairs in full: split
each centred image into its part in the top principal directions (p_i) and the
norm of the rest (q_i); then |x_i - x_j|^2 <= |p_i - p_j|^2 + (q_i + q_j)^2,
a cheap bound in a few dimensions. Once some pair is known to be L apart (a
double sweep from the image farthest from the mean), only the pairs whose
bound reaches L can be farther, and only those are measured in full.
"""

from __future__ import annotations

import torch

#: Principal directions of the bound.
DIRECTIONS = 32
#: Rows compared at once (bounds the memory of a distance block).
CHUNK = 1024


def _farthest_from(x: torch.Tensor, i: int) -> tuple[float, int]:
    d = (x - x[i]).norm(dim=1)
    j = int(d.argmax())
    return float(d[j]), j


def _lower_bound(x: torch.Tensor, radius: torch.Tensor) -> float:
    """A pair's distance, found by a double sweep from the image farthest from the mean."""
    first, j = _farthest_from(x, int(radius.argmax()))
    second, _ = _farthest_from(x, j)
    return max(first, second)


def largest_pairwise_distance(items: torch.Tensor) -> float:
    """max_{i,j} |x_i - x_j| over the items (N, ...), exact (float64); 0 for fewer than two items."""
    x = items.reshape(len(items), -1).double()
    if len(x) < 2:
        return 0.0
    x = x - x.mean(dim=0, keepdim=True)
    best = _lower_bound(x, x.norm(dim=1))
    k = min(DIRECTIONS, *x.shape)
    basis = torch.linalg.svd(x[:: max(1, len(x) // 4096)], full_matrices=False).Vh[:k].T  # (D, k)
    p = x @ basis
    q = (x - p @ basis.T).norm(dim=1)
    # bound_ij = |x_i|^2 + |x_j|^2 - 2 (p_i . p_j - q_i q_j): one matrix product per block, in float32
    a = torch.cat([p, q[:, None]], dim=1).float()
    b = torch.cat([p, -q[:, None]], dim=1).float()
    norms = x.pow(2).sum(dim=1).float()
    margin = 1e-3 * best * best + 1e-6  # float32 round-off; the answer is measured in float64
    for start in range(0, len(x), CHUNK):
        stop = min(start + CHUNK, len(x))
        bound = torch.addmm(norms[None, start:], a[start:stop], b[start:].T, alpha=-2)
        bound += norms[start:stop, None]
        rows, cols = torch.nonzero(bound >= best * best - margin, as_tuple=True)
        if len(rows):
            best = max(best, float((x[start + rows] - x[start + cols]).norm(dim=1).max()))
    return best
