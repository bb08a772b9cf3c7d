"""A sum-tree over non-negative weights: O(log n) updates and proportional sampling, batched."""

from __future__ import annotations

import numpy as np


class SumTree:
    """Weights of ``capacity`` leaves in a complete binary tree of partial sums (float64)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self.capacity = capacity
        self.leaves = 1 << max(0, (capacity - 1).bit_length())
        self.depth = self.leaves.bit_length() - 1
        self.tree = np.zeros(2 * self.leaves)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf weights at ``indices``."""
        return self.tree[self.leaves + np.asarray(indices)]

    def set(self, indices: np.ndarray, weights: np.ndarray) -> None:
        """Set leaf weights (≥ 0) and update their ancestors."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size == 0:
            return
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), idx.shape)
        if idx.size == 1:
            self.set_range(int(idx[0]), w.reshape(1))
            return
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("sum-tree weights must be finite and >= 0")
        nodes = self.leaves + idx
        self.tree[nodes] = w
        nodes = np.sort(nodes)
        for _ in range(self.depth):
            nodes >>= 1
            if nodes.size > 1:  # sorted: duplicates are neighbours
                nodes = nodes[np.concatenate(([True], nodes[1:] != nodes[:-1]))]
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def set_range(self, start: int, weights: np.ndarray) -> None:
        """Set the weights of the contiguous leaves ``start … start + len(weights) − 1``; the
        ancestors are contiguous ranges too, so every level is one slice operation."""
        w = np.asarray(weights, dtype=np.float64)
        n = w.shape[0]
        if n == 0:
            return
        if start < 0 or start + n > self.capacity:
            raise IndexError(f"leaves {start}…{start + n - 1} outside [0, {self.capacity})")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("sum-tree weights must be finite and >= 0")
        lo = self.leaves + start
        hi = lo + n - 1
        self.tree[lo : hi + 1] = w
        tree = self.tree
        for _ in range(self.depth):
            lo >>= 1
            hi >>= 1
            tree[lo : hi + 1] = tree[2 * lo : 2 * hi + 2 : 2] + tree[2 * lo + 1 : 2 * hi + 2 : 2]

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` leaf indices drawn with probability weight / total (total must be > 0)."""
        total = self.total
        if total <= 0:
            raise ValueError("cannot sample from an empty sum-tree")
        u = rng.uniform(0.0, total, count)
        node = np.ones(count, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.tree[left]
            right = u >= left_sum
            u = np.where(right, u - left_sum, u)
            node = left + right
        leaf = node - self.leaves
        # Rounding can land on a zero-weight neighbour at the edges: redraw those.
        bad = self.tree[node] <= 0
        if bad.any():
            leaf[bad] = self.sample(rng, int(bad.sum()))
        return leaf

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"weights": self.tree[self.leaves : self.leaves + self.capacity].copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        weights = np.asarray(state["weights"], dtype=np.float64)
        if weights.shape != (self.capacity,):
            raise ValueError(f"sum-tree state has {weights.shape[0]} leaves, expected {self.capacity}")
        self.tree[:] = 0.0
        self.tree[self.leaves : self.leaves + self.capacity] = weights
        for level in range(self.depth - 1, -1, -1):
            lo, hi = 1 << level, 1 << (level + 1)
            self.tree[lo:hi] = self.tree[2 * lo : 2 * hi : 2] + self.tree[2 * lo + 1 : 2 * hi : 2]
