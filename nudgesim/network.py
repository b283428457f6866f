"""The social graph: one symmetric CSR adjacency shared by the whole simulation.

Why CSR and not networkx: the simulation touches every tie of up to ~10^6 residents at
every step, so the graph lives in three flat numpy arrays (``indptr``, ``indices``,
``weights``).  networkx is only used at the edges of the package: converting user
graphs, reading files and running algorithms that are only affordable on small graphs.

All random generators here are vectorised numpy re-implementations of the networkx
generators (same random-graph model, different random stream); see each builder's
docstring for what, if anything, differs from networkx.
"""

from __future__ import annotations

import math
import numbers
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, PrivateAttr, field_validator, model_validator

from . import memory
from .errors import UserError
from .registry import GRAPHS, kind_of
from .spec import WEIGHT_RANGE, Distribution, NonNegative, Probability, Spec, check_support

if TYPE_CHECKING:  # imported where a path needs them: `import nudgesim` stays light
    import networkx as nx
    import scipy.sparse as sp

__all__ = [
    "Network",
    "NetworkError",
    "RowProduct",
    "WardKernel",
    "from_edges",
    "from_networkx",
    "read_graph_file",
    "build_network",
    "read_network_file",
]

#: Largest n for which the complete graph is built: a run on its n(n-1) tie ends peaks at
#: ~12 bytes each (limits.py), 0.3 GB at n = 5,000 and ~5 GB at 20,000, and every step
#: reads all of them. The complete graph is the mean-field case; large towns want a
#: sparse graph.
MAX_COMPLETE_N = 5_000
#: Safety cap on redraw rounds when resolving rewiring / preferential-attachment
#: collisions; real graphs need a handful, the cap only guards degenerate tiny graphs.
MAX_REDRAW_ROUNDS = 200
#: Redraw rounds for BA duplicate targets: each round costs microseconds, and for m
#: close to n the first steps (m distinct of m+1 nodes) need many rejections, as in networkx.
MAX_BA_REDRAW_ROUNDS = 100_000
#: Full pointer re-resolutions after BA duplicate redraws (0.2 s each at n = 1e6).  A
#: later slot that copied a redrawn slot sees the new value only after a full pass; the
#: few copies of redraws made in the last pass keep the rejected value (see
#: _barabasi_albert), which is why this is a constant and not "until converged".
BA_EXACT_PASSES = 2
#: Below this many target slots full passes are cheap, so BA iterates them to convergence
#: (exactly the networkx model); 5 * 200,000 slots resolve in ~40 ms.
BA_CONVERGE_SLOTS = 1_000_000

_EDGELIST_EXTS = {".csv", ".txt", ".edges", ".edgelist", ".tsv"}
_GRAPHML_EXTS = {".graphml"}
_ALLOWED_FORMATS = (
    "edgelist (.csv/.txt/.edges/.edgelist/.tsv: 'u v [weight]' per line) or graphml (.graphml)"
)
_INT_RE = re.compile(r"[+-]?[0-9]+")  # ASCII digits, as the pyarrow path


class NetworkError(UserError):
    """A graph could not be read, converted or built; the message says why and how to fix it."""


# --------------------------------------------------------------------------------------
# The data structure
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Network:
    """Undirected social graph as a symmetric CSR matrix: row i lists resident i's ties.

    Invariants (established by `from_edges`, checked by `validate`):
    ``indices`` sorted ascending within each row, no self loops, no duplicates,
    ``weights`` symmetric (w_ij == w_ji).  ``eq=False`` because numpy arrays have no
    single truth value; compare networks array by array.
    """

    indptr: np.ndarray  # int64, length n+1
    indices: np.ndarray  # int32 neighbour ids
    weights: np.ndarray | None  # float64 tie weights like indices; None = every tie weighs 1
    node_ids: list | None = None  # original ids (networkx / file); None means 0..n-1

    def __post_init__(self) -> None:
        # Coerce dtypes once here so every consumer can rely on them (no copy if already right).
        object.__setattr__(self, "indptr", np.ascontiguousarray(self.indptr, dtype=np.int64))
        idx_dtype = np.int32 if self.indptr.size <= 1 or self.indptr.size - 1 <= np.iinfo(
            np.int32
        ).max else np.int64
        object.__setattr__(self, "indices", np.ascontiguousarray(self.indices, dtype=idx_dtype))
        if self.weights is not None:
            object.__setattr__(
                self, "weights", np.ascontiguousarray(self.weights, dtype=np.float64)
            )
        if self.indptr.ndim != 1 or self.indptr.size < 1:
            raise NetworkError("Network.indptr must be a 1-D array of length n+1 >= 1")
        if self.indices.ndim != 1 or (
            self.weights is not None and self.weights.shape != self.indices.shape
        ):  # not via tie_weights(): a unit graph's ones would be 8 bytes per tie end
            raise NetworkError("Network.indices and Network.weights must be 1-D and equally long")
        if self.indptr[0] != 0 or self.indptr[-1] != self.indices.size:
            raise NetworkError("Network.indptr must start at 0 and end at len(indices)")
        if self.node_ids is not None and len(self.node_ids) != self.n:
            raise NetworkError(f"Network.node_ids has {len(self.node_ids)} ids for {self.n} nodes")

    @property
    def n(self) -> int:
        """Number of residents (nodes)."""
        return int(self.indptr.size - 1)

    @property
    def n_ties(self) -> int:
        """Number of undirected ties (each is stored twice, once per end)."""
        return int(self.indices.size // 2)

    @property
    def unit(self) -> bool:
        """True when every tie weighs 1 and no weight array is stored (4 bytes per tie end
        instead of 12: at a million residents that is 80 MB of the engine's state)."""
        return self.weights is None

    def tie_weights(self) -> np.ndarray:
        """The weight of every stored tie end; made on demand for unit-weight graphs."""
        return np.ones(self.indices.size) if self.weights is None else self.weights

    @cached_property
    def degree(self) -> np.ndarray:
        """Number of ties per resident (int64, unweighted)."""
        return np.diff(self.indptr)

    @cached_property
    def _indptr_for_scipy(self) -> np.ndarray:
        # scipy needs indptr and indices of one dtype; casting the small indptr (n+1)
        # instead of the large indices keeps matrix() copy-free where it matters.
        if self.indices.dtype == np.int32 and self.indptr[-1] > np.iinfo(np.int32).max:
            return self.indptr  # >2^31 tie-ends: scipy will upcast indices (a copy)
        return self.indptr.astype(self.indices.dtype, copy=False)

    def matrix(self) -> sp.csr_array:
        """The adjacency as a float64 scipy CSR array sharing ``indices`` and ``weights``.

        Only ``indptr`` (n+1 entries) may be cast to int32 because scipy requires both
        index arrays to have the same dtype; a unit-weight graph gets a fresh array of ones.
        """
        import scipy.sparse as sp

        A = sp.csr_array(
            (self.tie_weights(), self.indices, self._indptr_for_scipy),
            shape=(self.n, self.n),
            copy=False,
        )
        A.has_sorted_indices = True
        return A

    def to_networkx(self) -> nx.Graph:
        """networkx copy with nodes 0..n-1, edge attribute ``weight`` (and ``node_id`` if known)."""
        import networkx as nx

        G = nx.Graph()
        if self.node_ids is None:
            G.add_nodes_from(range(self.n))
        else:
            G.add_nodes_from((i, {"node_id": nid}) for i, nid in enumerate(self.node_ids))
        rows = np.repeat(np.arange(self.n, dtype=np.int64), self.degree)
        upper = rows < self.indices
        G.add_weighted_edges_from(
            zip(rows[upper].tolist(), self.indices[upper].tolist(), self.tie_weights()[upper].tolist())
        )
        return G

    def validate(self) -> None:
        """Check all CSR invariants (O(ties)); raise NetworkError on the first violation."""
        n = self.n
        if np.any(self.degree < 0):
            raise NetworkError("indptr is not non-decreasing")
        if self.indices.size == 0:
            return
        if self.indices.min() < 0 or self.indices.max() >= n:
            raise NetworkError("indices out of range 0..n-1")
        rows = np.repeat(np.arange(n, dtype=np.int64), self.degree)
        if np.any(rows == self.indices):
            raise NetworkError("self loop present")
        same_row = rows[1:] == rows[:-1]
        if np.any(same_row & (self.indices[1:] <= self.indices[:-1])):
            raise NetworkError("indices not strictly ascending within a row (unsorted or duplicate)")
        A = self.matrix()
        diff = A - A.T
        if diff.nnz and np.any(diff.data != 0):
            raise NetworkError("adjacency or weights not symmetric")
        w = self.tie_weights()
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise NetworkError("weights must be finite and >= 0")

    @cached_property
    def row_product(self) -> RowProduct:
        """This adjacency's product without scipy (`RowProduct`), made once per network:
        a run and its no-campaign twin share it."""
        return RowProduct.of(self)

    def within(self, group: np.ndarray) -> Network:
        """The ties whose two ends share a group (e.g. a ward), rows still in sorted order:
        the kept ties' own arrays, no re-sort of every tie."""
        keep = np.repeat(group, self.degree) == group[self.indices]
        starts = np.concatenate(([0], np.cumsum(keep)))[self.indptr]
        weights = None if self.weights is None else self.weights[keep]
        return Network(starts, self.indices[keep], weights)


@dataclass(frozen=True, eq=False)
class RowProduct:
    """A network's adjacency times a vector with numpy alone: each resident's sum of
    weight * x over its ties, added in stored order from 0.0 as scipy's ``csr_matvec``
    adds them, so the same bits (tested against scipy).

    Why: a short run on a small graph (the borough's 2 x 10^5 tie ends) spends less here
    than importing scipy.sparse takes (0.15-0.2 s); see `SMALL_TIE_ENDS` for where.

    How: the k-th ties of all rows lie together ("position-major"), the rows ordered by
    their number of ties, most first, so that the rows with a k-th tie are a prefix. The
    sums then grow by one vectorised addition per position, each row's terms in order."""

    order: np.ndarray  # the rows, most ties first (stable)
    counts: np.ndarray  # counts[k]: how many rows have more than k ties
    bounds: np.ndarray  # the k-th ties are cols[bounds[k]:bounds[k + 1]]
    cols: np.ndarray  # the tie ends' columns, position-major
    weights: np.ndarray | None  # their weights (None: every tie weighs 1)

    @classmethod
    def of(cls, net: Network) -> RowProduct:
        degree = net.degree
        order = np.argsort(-degree, kind="stable")
        counts = np.cumsum(np.bincount(degree)[::-1])[::-1][1:]
        bounds = np.concatenate(([0], np.cumsum(counts)))
        rank = np.empty(net.n, dtype=np.int64)
        rank[order] = np.arange(net.n)
        rows = np.repeat(np.arange(net.n), degree)
        position = np.arange(net.indices.size) - net.indptr[rows]
        slot = bounds[position] + rank[rows]
        cols = np.empty(net.indices.size, dtype=np.intp)  # numpy indexes with intp: no cast
        cols[slot] = net.indices
        weights = None
        if net.weights is not None:
            weights = np.empty_like(net.weights)
            weights[slot] = net.weights
        return cls(order, counts, bounds, cols, weights)

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        # a weight of 1 times x is x, bit for bit, so unit ties skip the multiplication
        terms = x[self.cols] if self.weights is None else self.weights * x[self.cols]
        sums = np.zeros(self.order.size)
        for start, rows in self._slices:
            sums[:rows] += terms[start:start + rows]
        return sums[self._unorder]

    @cached_property
    def _slices(self) -> list[tuple[int, int]]:
        return list(zip(self.bounds[:-1].tolist(), self.counts.tolist()))

    @cached_property
    def _unorder(self) -> np.ndarray:
        unorder = np.empty_like(self.order)
        unorder[self.order] = np.arange(self.order.size)
        return unorder


#: Where the numpy engine multiplies with `RowProduct` rather than scipy (Engine.product):
#: up to SMALL_TIE_ENDS tie ends and MAX_ROW_TIES ties a resident. Measured on graphs of
#: local ties (medians, one run, AVX2): at 2 x 10^5 tie ends a product took 0.57 ms
#: against scipy's 0.34 ms, so a borough run with its twin (~160 products) pays 0.04 s to
#: save the 0.19 s import; at 5 x 10^5 it took 2.55 against 0.86 ms, and the import is no
#: longer worth avoiding. Each position is one vectorised addition: a hub of 325 ties
#: made a product take 1.14 ms.
SMALL_TIE_ENDS = 250_000
MAX_ROW_TIES = 64


# --------------------------------------------------------------------------------------
# Construction from edge arrays / networkx / files
# --------------------------------------------------------------------------------------


def _check_weights(w: Any, m: int, what: str) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64).ravel()
    if w.size != m:
        raise NetworkError(f"{what}: got {w.size} weights for {m} edges")
    bad = ~np.isfinite(w) | (w < 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise NetworkError(f"{what}: weight #{i} is {w[i]!r}; weights must be finite and >= 0")
    return w


def from_edges(
    n: int, u: np.ndarray, v: np.ndarray, w: np.ndarray | None = None
) -> Network:
    """Build a Network from undirected edge arrays ``u[i] -- v[i]`` (optional weight ``w[i]``).

    Edges are symmetrised, self loops dropped and indices sorted.  A tie listed more
    than once (in either direction) is kept once with the weight of its *first*
    listing, so the result does not depend on the sort algorithm and stays symmetric.
    """
    return _from_edges(n, [u, v], w, assume_unique=False)


#: Ties handled per vectorised pass while a CSR is built: bounds every temporary (a few
#: int64 buffers of this length, 8 MB each, allocated once per pass over the ties and
#: reused: fresh arrays would cost a page fault per 4 kB, more than the arithmetic).
_CSR_CHUNK = 1 << 20


def _chunk(m: int) -> int:
    """Items per pass over ``m``: _CSR_CHUNK, or a sixteenth of a small graph, so the
    chunk buffers (a few int64 each) never outweigh the graph itself."""
    return max(1, min(_CSR_CHUNK, -(-m // 16)))


def _index_dtype(n: int) -> type[np.signedinteger]:
    """int32 node ids while they fit (half the memory of int64), else int64."""
    return np.int32 if n <= np.iinfo(np.int32).max else np.int64


def _from_edges(
    n: int, edges: list, w: Any, *, assume_unique: bool, node_ids: list | None = None,
    consume: bool = False, arrays: tuple | None = None,
) -> Network:
    """`from_edges` on ``edges = [u, v]``; ``assume_unique`` skips the de-duplication.

    The list is emptied: when the caller holds no other reference to ``u`` and ``v`` they
    are freed as soon as their pair keys exist, so a generated graph never holds its edge
    arrays, its keys and its CSR at once (see _csr_from_keys for the peak). ``consume``
    (build_network, whose builders' arrays nobody else sees) lets the keys be written
    over an _EdgeBuffer's ties.

    With unique ties and unit weights, the CSR's arrays may come from the builder
    (``arrays``, from _csr_arrays for at least as many ties: _EdgeBuffer)."""
    n = int(n)
    if n < 0:
        raise NetworkError(f"from_edges: n must be >= 0, got {n}")
    u = np.asarray(edges[0])
    v = np.asarray(edges[1])
    edges.clear()
    if u.shape != v.shape or u.ndim != 1:
        raise NetworkError(f"from_edges: u and v must be 1-D of equal length, got {u.shape}, {v.shape}")
    if u.size and not (np.issubdtype(u.dtype, np.integer) and np.issubdtype(v.dtype, np.integer)):
        raise NetworkError(f"from_edges: node ids must be integers, got {u.dtype} and {v.dtype}")
    if w is not None:
        w = _check_weights(w, u.size, "from_edges")
    if u.size and (min(u.min(), v.min()) < 0 or max(u.max(), v.max()) >= n):
        raise NetworkError(f"from_edges: node ids must lie in 0..{n - 1}")
    keep = u != v
    if not keep.all():
        u, v = u[keep], v[keep]
        w = None if w is None else w[keep]
    del keep
    keys = _pair_keys(n, u, v, _keys_over(u, v) if consume else None)
    del u, v
    if w is None and assume_unique:
        if arrays is None or arrays[0].size < 2 * keys.size:  # (the builder's buffer grew)
            arrays = _csr_arrays(n, keys.size, False)  # then backed while the keys sort
        keys.sort()  # in place; numpy's vectorised sort beats any per-row sort here
        return _csr_from_keys(n, keys, None, node_ids, arrays)
    del arrays
    if w is None:  # (listed ties may repeat: unique ones took the branch above)
        keys.sort()
        keys = _drop_repeats(keys)
    else:
        order = np.argsort(keys, kind="stable")  # stable: first listing wins
        keys, w = keys[order], w[order]
        del order
        if not assume_unique and keys.size:
            first = np.empty(keys.size, dtype=bool)
            first[0] = True
            np.not_equal(keys[1:], keys[:-1], out=first[1:])
            keys, w = keys[first], w[first]
    return _csr_from_keys(n, keys, w, node_ids)


def _pair_keys(n: int, u: np.ndarray, v: np.ndarray, out: np.ndarray | None = None
               ) -> np.ndarray:
    """``min * n + max`` of every tie (int64): one number per tie that sorts like the
    pair (lower end, higher end); made chunk by chunk, so no int64 copy of all ends.
    Written to ``out`` when given, which may be the ties' own memory (_keys_over): each
    chunk of ends is read before its keys are written."""
    m = u.size
    keys = memory.zeros(m, np.int64) if out is None else out
    step = _chunk(m)
    a = np.empty(min(m, step), dtype=np.int64)
    b = np.empty_like(a)
    for s in range(0, m, step):
        out = keys[s : s + step]
        k = out.size
        a[:k] = u[s : s + k]
        b[:k] = v[s : s + k]
        np.minimum(a[:k], b[:k], out=out)
        np.maximum(a[:k], b[:k], out=b[:k])
        out *= n
        out += b[:k]
    return keys


def _keys_over(u: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """An int64 array over the memory of ties whose int32 ends u and v are the two
    columns of one C-ordered (m, 2) array (an _EdgeBuffer's): key i then lies exactly
    where tie i's two ends do. None for any other layout."""
    base = u.base
    if not (u.dtype == v.dtype == np.int32 and u.strides == v.strides == (8,)
            and isinstance(base, np.ndarray) and v.base is base and base.flags.c_contiguous
            and v.ctypes.data == u.ctypes.data + 4):
        return None
    offset = u.ctypes.data - base.ctypes.data
    if u.size == 0 or offset % 8 or offset + 8 * u.size > base.nbytes:
        return None
    return np.ndarray((u.size,), dtype=np.int64, buffer=base, offset=offset)


def _drop_repeats(keys: np.ndarray) -> np.ndarray:
    """The sorted ``keys`` without repeats, compacted in place chunk by chunk (a view of
    the same buffer: no second full-length array)."""
    out = 0
    prev = None
    step = _chunk(keys.size)
    for s in range(0, keys.size, step):
        chunk = keys[s : s + step]
        fresh = np.empty(chunk.size, dtype=bool)
        fresh[0] = prev is None or chunk[0] != prev
        np.not_equal(chunk[1:], chunk[:-1], out=fresh[1:])
        prev = chunk[-1]
        kept = chunk[fresh]  # a copy: safe to write at out <= s
        keys[out : out + kept.size] = kept
        out += kept.size
    return keys[:out]


class _KeyChunks:
    """Chunks of sorted keys ``row * n + col`` split into (start, row, col), with the
    row counts added to ``counts`` (rows ascend, so counting is by runs, not a random
    bincount over every resident); row and col live in two buffers reused chunk to
    chunk, so each is valid until the next chunk."""

    def __init__(self, keys: np.ndarray, n: int, counts: np.ndarray | None = None) -> None:
        self.keys, self.n, self.counts = keys, n, counts
        self.step = _chunk(keys.size)
        size = min(keys.size, self.step)
        self.row = np.empty(size, dtype=np.int64)
        self.col = np.empty(size, dtype=np.int64)

    def __iter__(self) -> Any:
        for s in range(0, self.keys.size, self.step):
            chunk = self.keys[s : s + self.step]
            row, col = self.row[: chunk.size], self.col[: chunk.size]
            np.floor_divide(chunk, self.n, out=row)
            np.multiply(row, self.n, out=col)
            np.subtract(chunk, col, out=col)
            if self.counts is not None:
                first = np.flatnonzero(row[1:] != row[:-1]) + 1
                runs = np.diff(first, prepend=0, append=row.size)
                self.counts[row[np.concatenate(([0], first))]] += runs
            yield s, row, col


def _csr_arrays(n: int, m: int, weighted: bool, before: tuple = ()) -> tuple:
    """_csr_from_keys's output and row-count arrays for m ties, zeroed, and when large
    backed on another thread (memory.back_soon) in the order the build first writes
    them, after the arrays `before` (an _EdgeBuffer being filled)."""
    indices = np.zeros(2 * m, dtype=_index_dtype(n))
    data = np.zeros(2 * m) if weighted else None
    up, down = np.zeros(n + 1, dtype=np.int64), np.zeros(n + 1, dtype=np.int64)
    mine = [a for a in (up, indices, data, down) if a is not None]
    if sum(a.nbytes for a in (*before, *mine)) >= memory.TOUCH_MIN_BYTES:
        memory.back_soon(*before, *mine)
    return indices, data, up, down


def _csr_from_keys(
    n: int, keys: np.ndarray, w: np.ndarray | None, node_ids: list | None = None,
    arrays: tuple | None = None,
) -> Network:
    """The symmetric CSR of the ties with sorted, unique keys ``lo * n + hi`` (lo < hi)
    and weights ``w`` aligned with them (None: unit weights). ``keys`` is reused.

    Row i holds its lower neighbours (ties (j, i), j < i) and then its upper ones (ties
    (i, j), j > i), each ascending. The upper parts are the keys in their order: they are
    parked in the second half of the output while the row counts are not yet known. The
    lower parts are the same keys re-keyed ``hi * n + lo`` in place and sorted again;
    counting that order gives the lower counts, hence the row pointers; the upper parts
    then move forward to their rows (never past a part still parked) and the lower parts
    fill the gaps. So the build holds one int64 per tie (the keys) and one int32 per tie
    end (the output), 8 bytes per tie end plus two int64 per resident, where scipy's
    COO->CSR conversion held ~40 (row, column and float64 data arrays for both directions,
    its output and the copies made on the way); numpy's vectorised sort of one int64 per
    tie is also faster than that conversion's row-by-row sorts."""
    m = keys.size
    # per resident, counts of ties to higher / lower ids at [1:], then their cumsums;
    # the output may come for more ties (_EdgeBuffer's capacity): its first 2m entries
    indices, data, up, down = arrays or _csr_arrays(n, m, w is not None)
    indices = indices[: 2 * m]
    for s, _, col in _KeyChunks(keys, n, up[1:]):  # park the upper parts at [m, 2m)
        indices[m + s : m + s + col.size] = col
        if data is not None and w is not None:
            data[m + s : m + s + col.size] = w[s : s + col.size]
    for s, row, col in _KeyChunks(keys, n):  # re-key (lo, hi) -> (hi, lo) in place
        np.multiply(col, n, out=col)
        np.add(col, row, out=keys[s : s + col.size])
    if w is None:
        keys.sort()
        w_down = None
    else:
        order = np.argsort(keys)  # keys are unique: any sort gives this order
        keys, w_down = keys[order], w[order]
        del order
    for _ in _KeyChunks(keys, n, down[1:]):
        pass
    np.cumsum(up, out=up)  # up[i]: upper entries of rows < i; up[i + 1]: of rows <= i
    np.cumsum(down, out=down)
    # Upper entry j of row i goes to indptr[i] + down_i + (j - up[i]) = j + down[i + 1]
    # (indptr[i] = up[i] + down[i]), which is <= its parked place m + j.
    _unpark_upper(indices, data, m, up[1:], down[1:])
    # Lower entry j of row i goes to indptr[i] + (j - down[i]) = j + up[i].
    for s, row, col in _KeyChunks(keys, n):
        dest = up[row]
        dest += np.arange(s, s + dest.size, dtype=np.int64)
        indices[dest] = col
        if data is not None and w_down is not None:
            data[dest] = w_down[s : s + dest.size]
    indptr = up
    indptr += down
    del down
    return Network(indptr, indices, data, node_ids)


def _unpark_upper(
    indices: np.ndarray, data: np.ndarray | None, m: int, up_end: np.ndarray, shift: np.ndarray
) -> None:
    """Move parked upper entry j (at m + j, rows in order, row i's ending at up_end[i])
    to j + shift[i]. Chunks go front to back and every entry moves forward or stays, so
    no entry is overwritten before it has moved."""
    r0 = 0
    step = _chunk(m)
    for s in range(0, m, step):
        e = min(m, s + step)
        r1 = int(np.searchsorted(up_end, e - 1, side="right")) + 1  # rows r0..r1-1
        ends = np.minimum(up_end[r0:r1], e)
        starts = np.maximum(np.concatenate(([up_end[r0 - 1] if r0 else 0], up_end[r0 : r1 - 1])), s)
        rows = np.repeat(np.arange(r0, r1, dtype=np.int64), np.maximum(ends - starts, 0))
        dest = shift[rows]
        dest += np.arange(s, e, dtype=np.int64)
        indices[dest] = indices[m + s : m + e].copy()
        if data is not None:
            data[dest] = data[m + s : m + e].copy()
        r0 = r1 - 1


def _as_weight(value: Any, edge: tuple, attr: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NetworkError(
            f"edge {edge!r} has {attr}={value!r}; tie weights must be non-negative numbers"
        )
    x = float(value)
    if not math.isfinite(x) or x < 0:
        raise NetworkError(
            f"edge {edge!r} has {attr}={value!r}; tie weights must be finite and >= 0"
        )
    return x


def from_networkx(G: nx.Graph, weight: str = "weight") -> Network:
    """Convert a networkx graph; node order is ``list(G.nodes)`` and ``node_ids`` keeps it.

    Directed graphs become undirected (u->v and v->u merge; the first one in
    ``G.edges`` order gives the weight), multigraph parallel edges merge the same way,
    self loops are dropped, a missing weight attribute counts as 1.0.
    """
    nodes = list(G.nodes)
    index = {node: i for i, node in enumerate(nodes)}
    m = G.number_of_edges()
    u = np.empty(m, dtype=np.int64)
    v = np.empty(m, dtype=np.int64)
    w = np.empty(m, dtype=np.float64)
    for e, (a, b, d) in enumerate(G.edges(data=True)):
        u[e] = index[a]
        v[e] = index[b]
        w[e] = _as_weight(d.get(weight, 1.0), (a, b), weight)
    unit = not (w != 1.0).any()  # store no weights when every tie weighs 1
    return _from_edges(len(nodes), [u, v], None if unit else w, assume_unique=False,
                       node_ids=nodes)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _graph_file_format(path: Path, format: str | None) -> str:
    """The file's format (given or guessed from the extension); the file must exist."""
    if format is None:
        ext = path.suffix.lower()
        if ext in _EDGELIST_EXTS:
            format = "edgelist"
        elif ext in _GRAPHML_EXTS:
            format = "graphml"
        else:
            raise NetworkError(
                f"cannot tell the format of graph file {path} from its extension "
                f"{ext or '(none)'!r}; use {_ALLOWED_FORMATS}, or pass format="
            )
    if format not in ("edgelist", "graphml"):
        raise NetworkError(f"unknown graph file format {format!r} for {path}; use {_ALLOWED_FORMATS}")
    if not path.is_file():
        raise NetworkError(f"graph file {path} does not exist or is not a file; expected {_ALLOWED_FORMATS}")
    return format


def read_graph_file(
    path: str | Path, format: str | None = None, weight: str = "weight"
) -> nx.Graph:
    """Read a social graph file into networkx (pass the result to `from_networkx`).

    ``format`` is "edgelist" or "graphml", guessed from the extension when None.  Edge
    lists are read as `read_network_file` describes; a tie listed twice keeps its
    last listed weight, as networkx does.  To simulate, prefer `read_network_file`,
    which builds the Network from arrays without networkx.
    """
    import networkx as nx

    path = Path(path)
    if _graph_file_format(path, format) == "graphml":
        return _read_graphml(path)
    table = _read_edge_table(path)
    ids = np.empty(len(table.node_ids), dtype=object)
    ids[:] = table.node_ids
    G = nx.Graph()
    G.add_nodes_from(table.node_ids)
    a, b = ids[table.u].tolist(), ids[table.v].tolist()
    if table.w is None:
        G.add_edges_from(zip(a, b))
    else:
        G.add_edges_from(
            (x, y, {weight: wt}) if wt == wt else (x, y)  # nan: this line gave no weight
            for x, y, wt in zip(a, b, table.w.tolist())
        )
    return G


def read_network_file(
    path: str | Path, format: str | None = None, weight: str = "weight"
) -> Network | nx.Graph:
    """Read a social graph file: a `Network` for an edge list, networkx for GraphML.

    Edge lists hold one ``u v [weight]`` per line, separated by commas, tabs and/or
    spaces; ``#`` starts a comment; a missing weight counts as 1.  A first line is a
    header (e.g. ``source,target`` or ``u v weight``) when its weight column is not a
    number, or when neither of its two names is a node elsewhere in the file and either
    every other id is an integer or both names are usual column names.  Node ids stay
    strings unless every id is an integer; ``Network.node_ids`` keeps them in order of
    first appearance.  A tie listed twice keeps its last listed weight.  GraphML comes
    back as networkx because its nodes may carry residents' traits.
    """
    path = Path(path)
    if _graph_file_format(path, format) == "graphml":
        return _read_graphml(path)
    t = _read_edge_table(path)
    n = len(t.node_ids)
    if t.w is None:
        return _from_edges(n, [t.u, t.v], None, assume_unique=False, node_ids=t.node_ids)
    # from_edges keeps a tie's first listing: put the last weighted listing first
    missing = np.isnan(t.w)
    order = np.arange(t.u.size)[::-1]
    order = order[np.argsort(missing[order], kind="stable")]
    w = np.where(missing, 1.0, t.w)[order]
    unit = not (w != 1.0).any()  # store no weights when every tie weighs 1
    return _from_edges(
        n, [t.u[order], t.v[order]], None if unit else w, assume_unique=False,
        node_ids=t.node_ids,
    )


def _read_graphml(path: Path) -> nx.Graph:
    import networkx as nx

    try:
        G = nx.read_graphml(path)
    except (ET.ParseError, nx.NetworkXError, ValueError, KeyError, TypeError) as exc:
        raise NetworkError(
            f"graph file {path} is not valid GraphML ({_one_line(exc)}); expected {_ALLOWED_FORMATS}"
        ) from exc
    nodes = list(G.nodes)
    if nodes and all(isinstance(x, str) and _INT_RE.fullmatch(x) for x in nodes):
        G = nx.relabel_nodes(G, {x: int(x) for x in nodes}, copy=True)
    return G


@dataclass(frozen=True)
class _EdgeTable:
    """An edge list as arrays: ``u[i] -- v[i]`` index ``node_ids``; ``w`` nan where a line
    gave no weight, None when no line did."""

    node_ids: list
    u: np.ndarray
    v: np.ndarray
    w: np.ndarray | None


#: Column names that mark a first line as a header even when node ids are strings.
_HEADER_NAMES = frozenset(
    "source target from to src dst u v i j node1 node2 node_1 node_2 id1 id2 head tail "
    "a b ego alter sender receiver".split()
)
#: Every line break str.splitlines() knows, as one character each ("\r\n" is done first).
_LINE_BREAKS = str.maketrans({c: "\n" for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})
_COMMENT_RE = re.compile(r"#[^\n]*")
_SEP_RE = re.compile(r"(?:,|[^\S\n])+")  # commas and whitespace, line breaks excepted
_EDGE_ROW_RE = re.compile(r"^,|,$", re.MULTILINE)


def _is_header(first: list[str], elsewhere: Callable[[str], bool], rest_int: bool) -> bool:
    """Whether the first data line names columns instead of listing a tie."""
    if len(first) == 3:
        try:
            float(first[2])
        except ValueError:
            return True
    a, b = first[0], first[1]
    if elsewhere(a) or elsewhere(b):
        return False  # a header's names are not nodes of the graph
    named = a.lower() in _HEADER_NAMES and b.lower() in _HEADER_NAMES
    return named or (rest_int and not (_INT_RE.fullmatch(a) and _INT_RE.fullmatch(b)))


def _single_separator(text: str, sep: str, others: tuple[str, ...]) -> bool:
    """Whether fields are split by exactly one ``sep`` and by nothing else (substring
    tests, much faster than a regular expression over the whole file)."""
    if not text.isascii() or any(o in text for o in others):
        return False  # non-ASCII text may hold Unicode spaces: the regex path handles it
    return not (
        sep * 2 in text or f"\n{sep}" in text or f"{sep}\n" in text
        or text.startswith(sep) or text.endswith(sep)
    )


def _read_edge_table(path: Path) -> _EdgeTable:
    """Parse an edge list: pyarrow's CSV reader on a normalised copy of the text, or, for
    files it cannot take (ragged rows, bad weights, no data), the line-by-line reader,
    which also gives the error messages with their line numbers."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NetworkError(f"cannot read graph file {path}: {_one_line(exc)}") from exc
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    return _edge_table_arrow(text) or _edge_table_lines(text, path)


def _edge_table_arrow(text: str) -> _EdgeTable | None:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    if "#" in text:
        text = _COMMENT_RE.sub("", text)
    # one separator character between fields, none at the ends: already so in most files
    if _single_separator(text, ",", (" ", "\t")):
        delimiter = ","
    elif _single_separator(text, " ", ("\t", ",")):
        delimiter = " "
    else:
        text, delimiter = _EDGE_ROW_RE.sub("", _SEP_RE.sub(",", text)), ","
    try:
        table = pcsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            read_options=pcsv.ReadOptions(autogenerate_column_names=True),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, quote_char=False),
            convert_options=pcsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(3)}
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # ragged rows, no rows: the line reader decides
    del text
    if table.num_columns not in (2, 3) or table.num_rows == 0:
        return None
    cols = [table.column(i).combine_chunks() for i in range(table.num_columns)]
    m = table.num_rows
    # ids interleaved u0, v0, u1, v1, ...: dictionary order = order of first appearance
    pos = np.empty(2 * m, dtype=np.int64)
    pos[0::2] = np.arange(m)
    pos[1::2] = np.arange(m) + m
    enc = pc.take(pa.concat_arrays([cols[0], cols[1]]), pa.array(pos)).dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = enc.dictionary
    is_int = pc.match_substring_regex(names, r"^[+-]?[0-9]+$").to_numpy(zero_copy_only=False)
    counts = np.bincount(codes, minlength=len(names))
    np.subtract.at(counts, codes[:2], 1)  # the first line's own mentions
    first = [cols[i][0].as_py() for i in range(len(cols))]
    code_of = {first[0]: int(codes[0]), first[1]: int(codes[1])}
    rest_int = bool(np.all(is_int[counts > 0])) if m > 1 else True
    header = _is_header(first, lambda name: counts[code_of[name]] > 0, rest_int)
    if header:
        cols = [c.slice(1) for c in cols]
        codes = codes[2:]
        m -= 1
    w = None
    if len(cols) == 3:
        try:
            w = pc.cast(cols[2], pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if not np.all(np.isfinite(w) & (w >= 0)):
            return None  # the line reader names the line
    used = np.zeros(len(names), dtype=bool)
    used[codes] = True
    if is_int[used].all():
        kept = np.flatnonzero(used)  # a header's names are not ids
        plain = pc.replace_substring_regex(names.take(pa.array(kept)), r"^\+", "")
        values = np.zeros(len(names), dtype=np.int64)
        try:
            values[kept] = pc.cast(plain, pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            return None  # beyond int64: Python ints on the line reader
        codes, uniq = pd.factorize(values[codes])  # "7" and "07" are one resident
        node_ids = uniq.tolist()
    else:
        codes, uniq = pd.factorize(codes)
        node_ids = names.take(pa.array(uniq)).to_pylist()
    codes = codes.astype(np.int64, copy=False)
    return _EdgeTable(node_ids, codes[0::2], codes[1::2], w)


def _edge_table_lines(text: str, path: Path) -> _EdgeTable:
    import pandas as pd

    rows: list[tuple[int, str, list[str]]] = []
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = [t for t in _SEP_RE.split(line) if t]
        if len(tokens) not in (2, 3):
            raise NetworkError(
                f"{path} line {lineno}: cannot parse {raw.strip()!r}; expected 'u v' or "
                "'u v weight' separated by whitespace or commas"
            )
        rows.append((lineno, raw, tokens))
    if rows:
        mentions: dict[str, int] = {}
        for _, _, tokens in rows[1:]:
            for name in tokens[:2]:
                mentions[name] = mentions.get(name, 0) + 1
        rest_int = all(_INT_RE.fullmatch(name) for name in mentions)
        if _is_header(rows[0][2], lambda name: name in mentions, rest_int):
            rows = rows[1:]
    ends: list[str] = []
    weights: list[float] = []
    any_weight = False
    for lineno, raw, tokens in rows:
        ends += tokens[:2]
        if len(tokens) == 2:
            weights.append(math.nan)
            continue
        any_weight = True
        try:
            wt = float(tokens[2])
        except ValueError:
            raise NetworkError(
                f"{path} line {lineno}: weight {tokens[2]!r} in {raw.strip()!r} is not a "
                "number; expected 'u v weight' with a non-negative numeric weight"
            ) from None
        if not math.isfinite(wt) or wt < 0:
            raise NetworkError(
                f"{path} line {lineno}: weight {tokens[2]!r} in {raw.strip()!r} must be "
                "finite and >= 0"
            )
        weights.append(wt)
    keys: list = ends
    if ends and all(_INT_RE.fullmatch(x) for x in ends):
        keys = [int(x) for x in ends]
    codes, uniq = pd.factorize(pd.Series(keys, dtype=object)) if keys else (np.zeros(0), [])
    codes = np.asarray(codes, dtype=np.int64)
    return _EdgeTable(
        list(uniq), codes[0::2], codes[1::2], np.array(weights) if any_weight else None
    )


# --------------------------------------------------------------------------------------
# Random graph builders (pure numpy)
# --------------------------------------------------------------------------------------


def _bernoulli_positions(n_trials: int, p: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of successes among ``n_trials`` Bernoulli(p) trials (int64)."""
    chunks = list(_bernoulli_chunks(n_trials, p, rng))
    if len(chunks) == 1:
        return chunks[0]
    return np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)


def _bernoulli_chunks(n_trials: int, p: float, rng: np.random.Generator,
                      step: int | None = None) -> Iterator[np.ndarray]:
    """_bernoulli_positions's successes, in ascending chunks from `step` draws each (None:
    a batch at once): the same successes from the same draws, without a float64 and an
    int64 array of them all (at 2.5x10^7 households, 0.4 GB for the cross-ward ties).

    Geometric skipping (Batagelj & Brandes 2005, as in ``nx.fast_gnp_random_graph``):
    the gaps between successes are Geometric(p), drawn in vectorised batches. A batch's
    draws are all made, those past the last trial too: the generator then stands where
    one call for the whole batch would leave it (numpy's PCG64 gives a double per 64-bit
    output, so draws in pieces are the draws at once)."""
    if n_trials <= 0 or p <= 0:
        return
    if p >= 1:
        size = step or n_trials
        for s in range(0, n_trials, size):
            yield np.arange(s, min(n_trials, s + size), dtype=np.int64)
        return
    mean = n_trials * p
    # 6 standard deviations (+16 for tiny means) above the mean: one batch almost always.
    batch = int(mean + 6 * math.sqrt(mean) + 16)
    last = -1
    while last < n_trials - 1:
        left = batch
        while left:
            k = min(left, step or batch)
            left -= k
            gaps = rng.random(k)
            if last >= n_trials:  # past the last trial: drawn, not used
                continue
            # Geometric(p) by inversion in float64, capped at n_trials + 1 before the
            # integer cast so that vanishing p (e.g. 1e-300) cannot overflow int64.
            np.negative(gaps, out=gaps)
            np.log1p(gaps, out=gaps)
            with np.errstate(over="ignore"):  # inf is capped just below
                np.divide(gaps, math.log1p(-p), out=gaps)
            np.floor(gaps, out=gaps)
            gaps += 1.0
            np.minimum(gaps, float(n_trials + 1), out=gaps)
            pos = gaps.astype(np.int64)
            del gaps
            np.cumsum(pos, out=pos)
            pos += last
            last = int(pos[-1])
            yield pos[: np.searchsorted(pos, n_trials)] if last >= n_trials else pos


def _lower_pair(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map linear index ``pos = i(i-1)/2 + j`` (0 <= j < i) back to the pair (i, j)."""
    i = np.floor((1.0 + np.sqrt(1.0 + 8.0 * pos.astype(np.float64))) / 2.0).astype(np.int64)
    # float rounding can be off by one for pos ~ 10^12: correct both ways.
    i -= (i * (i - 1) // 2) > pos
    i += ((i + 1) * i // 2) <= pos
    j = pos - i * (i - 1) // 2
    return i, j


def _gnp_edges(n: int, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Edges of G(n, p) over nodes 0..n-1 (each unordered pair once), as int32 while n
    fits; decoded chunk by chunk, so no float64 or int64 temporary spans all of them."""
    pos = _bernoulli_positions(n * (n - 1) // 2, p, rng)
    idx = _index_dtype(n)
    lo = np.empty(pos.size, dtype=idx)
    hi = np.empty(pos.size, dtype=idx)
    step = _chunk(pos.size)
    for s in range(0, pos.size, step):
        i, j = _lower_pair(pos[s : s + step])
        lo[s : s + i.size] = j
        hi[s : s + i.size] = i
    return lo, hi


def _attr(spec: Any, name: str) -> Any:
    return getattr(spec, name, None)


def _check_prob(p: Any, name: str) -> float:
    if p is None or not (0.0 <= float(p) <= 1.0):
        raise NetworkError(f"network.{name}: {p!r} is not allowed; allowed: a probability in [0, 1]")
    return float(p)


def _erdos_renyi(spec: Any, ward: np.ndarray, rng: np.random.Generator):
    """G(n, p) with p = mean_degree/(n-1): the model of ``nx.fast_gnp_random_graph``."""
    n = ward.size
    md = _attr(spec, "mean_degree")
    if md is None or md < 0 or (n > 1 and md > n - 1):
        raise NetworkError(
            f"network.mean_degree: must be in [0, n-1] = [0, {max(n - 1, 0)}], got {md!r}"
        )
    p = float(md) / (n - 1) if n > 1 else 0.0
    u, v = _gnp_edges(n, p, rng)
    return u, v, True


class _WardGroups:
    """Residents grouped by ward: each ward's run (starts, sizes) in `order`, the
    residents sorted by ward (stably), or in their own order when they are listed ward
    by ward (order None), as generated populations are. Then the runs are found in one
    pass: the sort, np.unique's second sort and the order array cost ~4 s at 10^7
    residents on this VM (0.3 GB it had to back; 0.1 s once backed)."""

    def __init__(self, ward: np.ndarray) -> None:
        self.order: np.ndarray | None = None
        if ward.size and bool(np.all(ward[1:] >= ward[:-1])):
            self.starts = np.flatnonzero(np.concatenate(([True], ward[1:] != ward[:-1])))
            self.sizes = np.diff(self.starts, append=ward.size)
            return
        self.order = np.argsort(ward, kind="stable")
        _, self.starts, self.sizes = np.unique(ward[self.order], return_index=True,
                                               return_counts=True)

    def members(self, k: int, pos: np.ndarray) -> np.ndarray:
        """The residents at positions `pos` (0..size-1) of the k-th ward's run (int64)."""
        at = np.add(pos, self.starts[k], dtype=np.int64)
        return at if self.order is None else self.order[at]


def _ward_clustered(spec: Any, ward: np.ndarray, rng: np.random.Generator):
    """Stochastic block model by ward (the model of ``nx.stochastic_block_model``).

    With mean degrees instead of probabilities: p_in for ward w is
    ``mean_degree_in / (size_w - 1)`` (so every ward's residents expect that many
    in-ward ties), and one common p_out ``= mean_degree_out * n / (n^2 - sum size_w^2)``
    makes the *population-average* cross-ward degree equal ``mean_degree_out``
    (residents of small wards get slightly more cross-ward ties than of big wards,
    exactly as in an SBM with a single off-diagonal probability).
    """
    n = ward.size
    groups = _WardGroups(ward)
    sizes = groups.sizes
    p_in, p_out = _attr(spec, "p_in"), _attr(spec, "p_out")
    md_in, md_out = _attr(spec, "mean_degree_in"), _attr(spec, "mean_degree_out")
    if (p_in is None) == (md_in is None) or (p_out is None) == (md_out is None):
        raise NetworkError(
            "network: set exactly one of p_in / mean_degree_in and exactly one of "
            f"p_out / mean_degree_out (got p_in={p_in!r}, mean_degree_in={md_in!r}, "
            f"p_out={p_out!r}, mean_degree_out={md_out!r})"
        )
    if p_in is not None:
        p_in_w = np.full(sizes.size, _check_prob(p_in, "p_in"))
    else:
        if md_in < 0:
            raise NetworkError(f"network.mean_degree_in: must be >= 0, got {md_in!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            p_in_w = np.where(sizes > 1, float(md_in) / np.maximum(sizes - 1, 1), 0.0)
        if np.any(p_in_w > 1):
            raise NetworkError(
                f"network.mean_degree_in: {md_in} exceeds the size-1 of ward(s) with "
                f"{int(sizes.min())} residents; lower it or use p_in"
            )
    cross_pairs = (n * n - int(np.sum(sizes.astype(np.int64) ** 2))) // 2
    if p_out is not None:
        p_out_f = _check_prob(p_out, "p_out")
    else:
        if md_out < 0:
            raise NetworkError(f"network.mean_degree_out: must be >= 0, got {md_out!r}")
        p_out_f = float(md_out) * n / (2 * cross_pairs) if cross_pairs else 0.0
        if p_out_f > 1:
            raise NetworkError(
                f"network.mean_degree_out: {md_out} needs p_out={p_out_f:.3g} > 1"
            )
    expected = float(np.sum(p_in_w * (sizes * (sizes - 1) / 2))) + p_out_f * cross_pairs
    edges = _EdgeBuffer(expected, _index_dtype(n), n if _attr(spec, "weights") is None else None)
    # One G(s_w, p_w) per ward: a loop over wards (tens to thousands), not over residents.
    for k, (size, pw) in enumerate(zip(sizes.tolist(), p_in_w.tolist())):
        a, b = _gnp_edges(size, pw, rng)
        edges.add(groups.members(k, a), groups.members(k, b))
    kernel = _attr(spec, "_ward_kernel")
    if _attr(spec, "cross") not in (None, "uniform"):
        if kernel is None:
            raise NetworkError(
                f"network.cross: {spec.cross!r} needs the ward geography, and none was "
                "loaded; allowed: a scenario with a [geography] table (read with "
                "Scenario.from_toml or from_dict), or cross = 'uniform'")
        _kernel_cross_ties(kernel.weights, p_out_f * cross_pairs, groups, ward, rng, edges)
    else:
        _cross_ward_ties(n, p_out_f, ward, rng, edges)
    return edges.ties()


class _Ties(NamedTuple):
    """A builder's ties u[i] -- v[i]; unique: each pair listed once; csr: the CSR's
    arrays (_csr_arrays) for up to as many ties, when the builder had them allocated and
    backed while it drew (_EdgeBuffer)."""

    u: np.ndarray
    v: np.ndarray
    unique: bool
    csr: tuple | None = None


class _EdgeBuffer:
    """Tie ends appended block by block into one (capacity, 2) array allocated once for
    the expected number of ties (6 standard deviations of slack; grown if ever
    exceeded): no list of thousands of per-ward arrays, which glibc keeps resident after
    they are freed (~4 bytes per tie end for the rest of the run), and no concatenated
    second copy. A tie's two int32 ends sit side by side, so that _from_edges can write
    its int64 key over them (_keys_over): the keys then take no memory of their own, at
    2.5x10^7 households 1 GB less to allocate and back.

    A large buffer is made with the CSR's arrays for its capacity (_csr_arrays), and
    both are backed on another thread while the ties are drawn on this one: on the VMs
    here backing took 3-15 s a GB, and the draws keep one core busy for as long. The
    build's peak is unchanged (the ties, now also its keys, and the CSR: ~8 bytes per
    tie end), only reached sooner."""

    def __init__(self, expected: float, dtype: type[np.signedinteger], n: int | None) -> None:
        """n: the residents of the unit-weight CSR to make with the buffer (None: a
        weighted graph, whose CSR is made later)."""
        capacity = int(expected + 6 * math.sqrt(max(expected, 0.0)) + 1024)
        self.pairs = np.zeros((capacity, 2), dtype=dtype)
        self.size = 0
        self.csr: tuple | None = None
        if self.pairs.nbytes >= memory.TOUCH_MIN_BYTES:
            if n is None:
                memory.back_soon(self.pairs)
            else:
                self.csr = _csr_arrays(n, capacity, False, before=(self.pairs,))

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        end = self.size + a.size
        if end > self.pairs.shape[0]:
            capacity = max(end, self.pairs.shape[0] + self.pairs.shape[0] // 4)
            grown = np.empty((capacity, 2), dtype=self.pairs.dtype)
            grown[: self.size] = self.pairs[: self.size]
            self.pairs = grown
        self.pairs[self.size : end, 0] = a
        self.pairs[self.size : end, 1] = b
        self.size = end

    def ties(self) -> _Ties:
        """The ties so far, as the two columns of the buffer (views, handed on: the
        buffer lets go of them), with the CSR's arrays if it had them made."""
        pairs, csr = self.pairs[: self.size], self.csr
        self.pairs, self.csr = np.empty((0, 2), dtype=pairs.dtype), None
        return _Ties(pairs[:, 0], pairs[:, 1], True, csr)


def _cross_ward_ties(
    n: int, p: float, ward: np.ndarray, rng: np.random.Generator, edges: _EdgeBuffer
) -> None:
    """Cross-ward ties: G(n, p) over all pairs, keeping only pairs in different wards
    (exactly Bernoulli(p) on every cross pair; same-ward draws are discarded). The pairs
    are drawn and decoded chunk by chunk (_gnp_edges's float64 and int64 temporaries for
    all of them at once would outweigh the ties themselves)."""
    for pos in _bernoulli_chunks(n * (n - 1) // 2, p, rng, _CSR_CHUNK):
        i, j = _lower_pair(pos)
        cross = ward[j] != ward[i]
        edges.add(j[cross], i[cross])


def _kernel_cross_ties(
    kernel: np.ndarray,
    expected: float,
    groups: _WardGroups,
    ward: np.ndarray,
    rng: np.random.Generator,
    edges: _EdgeBuffer,
) -> None:
    """Cross-ward ties whose probability follows the ward kernel: every pair of residents
    in wards u != v is tied with probability c * K[u, v], one c for the borough so the
    expected number of ties is `expected` (what 'uniform' would make). One Bernoulli
    block per pair of wards with K > 0 (a loop over ward pairs, not residents), added
    to `edges`."""
    labels = np.unique(ward)
    if kernel.shape[0] <= int(labels.max(initial=0)):
        raise NetworkError(f"network.cross: the ward kernel covers {kernel.shape[0]} wards "
                           f"but residents live in {int(labels.max()) + 1}")
    k = kernel[np.ix_(labels, labels)].copy()
    np.fill_diagonal(k, 0.0)
    sizes = groups.sizes
    s = sizes.astype(np.float64)
    mass = float(np.triu(np.outer(s, s) * k, 1).sum())
    if expected <= 0:
        return
    if mass <= 0:
        raise NetworkError("network.cross: no two wards with residents are joined by the "
                           "kernel (no shared borders); allowed: cross = 'distance' or "
                           "'uniform', or boundaries with neighbouring wards")
    scale = expected / mass
    if scale * k.max() > 1:
        raise NetworkError(f"network.cross: the cross-ward ties need a probability of "
                           f"{scale * k.max():.3g} > 1 between the closest wards; allowed: a "
                           "lower p_out / mean_degree_out or a larger distance_scale")
    for i, j in zip(*np.nonzero(np.triu(k, 1))):
        pos = _bernoulli_positions(int(sizes[i] * sizes[j]), scale * k[i, j], rng)
        edges.add(groups.members(i, pos // sizes[j]), groups.members(j, pos % sizes[j]))


def _watts_strogatz(spec: Any, ward: np.ndarray, rng: np.random.Generator):
    """Ring lattice + rewiring, the model of ``nx.watts_strogatz_graph``.

    Each lattice edge (u, u+j) is rewired with probability p to (u, w), w uniform,
    avoiding self loops and duplicates.  networkx rewires edge by edge, so whether a
    target collides depends on the edges rewired before it; here all rewirings are
    drawn at once and colliding ones are redrawn in rounds (a target collides with any
    lattice edge that is kept or is the edge itself, and with other rewired edges, of
    which the first in networkx's order wins).  The difference is O(k/n) per edge.
    """
    n = ward.size
    k, p = _attr(spec, "k"), _attr(spec, "p")
    if k is None or int(k) != k or k < 0 or k % 2:
        raise NetworkError(f"network.k: must be a non-negative even integer, got {k!r}")
    p = _check_prob(p, "p")
    k = int(k)
    if k > n:
        raise NetworkError(f"network.k: {k} is larger than the number of residents ({n}); allowed: k <= {n}")
    if k == n:  # as networkx: the k-regular ring on n nodes is the complete graph
        return _complete_edges(n) + (True,)
    half = k // 2
    m = n * half
    src = np.tile(np.arange(n, dtype=np.int64), half)  # networkx order: j outer, u inner
    jj = np.repeat(np.arange(1, half + 1, dtype=np.int64), n)
    dst = (src + jj) % n
    del jj
    rewired = np.flatnonzero(rng.random(m) < p)
    if rewired.size == 0:
        return src, dst, True
    keep_lattice = np.ones(m, dtype=bool)
    keep_lattice[rewired] = False

    def lattice_conflict(e: np.ndarray, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """True where (s, t) is a self loop or a lattice edge still present (kept or e itself)."""
        d = (t - s) % n
        bad = d == 0
        fwd = (d >= 1) & (d <= half)
        bwd = (n - d >= 1) & (n - d <= half) & ~fwd
        lat_id = np.where(fwd, (d - 1) * n + s, (n - d - 1) * n + t)
        on_lattice = fwd | bwd
        lat_id = np.where(on_lattice, lat_id, 0)
        return bad | (on_lattice & (keep_lattice[lat_id] | (lat_id == e)))

    s_r = src[rewired]
    target = np.empty(rewired.size, dtype=np.int64)
    pending = np.arange(rewired.size)
    accepted_keys = np.empty(0, dtype=np.int64)  # sorted keys of accepted rewired edges
    for _ in range(MAX_REDRAW_ROUNDS):
        if pending.size == 0:
            break
        t = rng.integers(0, n, size=pending.size)
        target[pending] = t
        ok = ~lattice_conflict(rewired[pending], s_r[pending], t)
        cand = pending[ok]
        keys = np.minimum(s_r[cand], t[ok]) * n + np.maximum(s_r[cand], t[ok])
        win = np.zeros(cand.size, dtype=bool)
        if accepted_keys.size:
            pos = np.searchsorted(accepted_keys, keys).clip(max=accepted_keys.size - 1)
            fresh = np.flatnonzero(accepted_keys[pos] != keys)
        else:
            fresh = np.arange(cand.size)
        # among this round's new candidates the first in networkx's order wins
        _, first = np.unique(keys[fresh], return_index=True)
        win[fresh[first]] = True
        accepted_keys = np.union1d(accepted_keys, keys[win])  # sorted, small after round 1
        pending = np.concatenate([pending[~ok], cand[~win]])
        pending.sort()
    unique = True
    if pending.size:  # only in degenerate tiny graphs: keep those lattice edges instead
        target[pending] = dst[rewired[pending]]
        unique = False
    dst[rewired] = target
    return src, dst, unique


def _resolve_pointers(nxt: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Follow ``nxt`` (slot -> earlier slot, -1 = resolved) to terminal values by pointer jumping."""
    val = val.copy()
    nxt = nxt.copy()
    todo = np.flatnonzero(nxt >= 0)
    while todo.size:
        tgt = nxt[todo]
        nn = nxt[tgt]
        done = nn < 0
        val[todo[done]] = val[tgt[done]]
        nxt[todo[done]] = -1
        todo = todo[~done]
        nxt[todo] = nn[~done]  # jump: chains halve every round
    return val


def _duplicate_slots(val: np.ndarray, check_steps: np.ndarray, m: int) -> np.ndarray:
    """Slots (all but one per value) repeating a target within the same step."""
    block = val.reshape(-1, m)[check_steps]
    order = np.argsort(block, axis=1, kind="stable")
    sb = np.take_along_axis(block, order, axis=1)
    dup = np.zeros(sb.shape, dtype=bool)
    dup[:, 1:] = sb[:, 1:] == sb[:, :-1]
    rows, cols = np.nonzero(dup)
    return check_steps[rows] * m + order[rows, cols]


def _barabasi_albert(spec: Any, ward: np.ndarray, rng: np.random.Generator):
    """Preferential attachment, the model of ``nx.barabasi_albert_graph`` (no initial_graph).

    Like networkx: start from the star on nodes 0..m, then node t = m+1, ..., n-1 picks m
    *distinct* targets, each uniform from the list of tie-ends of the graph built so
    far (degree-proportional).  Vectorised via the list-of-tie-ends formulation of
    Batagelj & Brandes (2005): every target slot draws a uniform position in the list
    as it was before its node arrived; positions holding an earlier target are
    resolved by pointer jumping.  Slots that repeat a target of the same node are
    redrawn in rounds (networkx redraws them immediately, one at a time), so only the
    order in which duplicates are rejected differs; the graph model is the same, with
    exactly m*(n-m) ties.  Up to BA_CONVERGE_SLOTS target slots the redraws are
    propagated to convergence; above, after BA_EXACT_PASSES full passes (time budget),
    ~0.02% of slots (960 of 5e6 at n = 1e6, m = 5) keep a copy of a target that its
    earlier owner redrew - still a degree-proportional pick, so the model is unchanged
    for all practical purposes.
    """
    n = ward.size
    m = _attr(spec, "m")
    if m is None or int(m) != m or not (1 <= m < n):
        raise NetworkError(f"network.m: {m!r} is not allowed; allowed: an integer with 1 <= m < {n} (residents)")
    m = int(m)
    steps = n - m - 1  # new nodes after the initial star
    star_u = np.zeros(m, dtype=np.int32)
    star_v = np.arange(1, m + 1, dtype=np.int32)
    if steps <= 0:
        return star_u, star_v, True
    T = steps * m
    # int32 throughout: halves memory traffic (T ~ 5e6 slots at n = 1e6)
    i32 = np.int32
    step_of = np.repeat(np.arange(steps, dtype=i32), m)
    list_len = (2 * m) * (step_of.astype(np.int64) + 1)  # tie-end list length before the slot's node

    def decode(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position in the tie-end list -> (pointer to target slot or -1, terminal value)."""
        # list = initial star [0]*m + [1..m], then per step: m targets, then m x source
        r = r.astype(i32, copy=False)
        q = r - i32(2 * m)
        s = q // i32(2 * m)
        off = q - s * i32(2 * m)
        val = np.where(q < 0, np.where(r < m, i32(0), r - i32(m - 1)), s + i32(m + 1))
        ptr = np.where((q >= 0) & (off < m), s * i32(m) + off, i32(-1))
        return ptr, val

    def draw(slots: np.ndarray | None) -> np.ndarray:
        high = list_len if slots is None else list_len[slots]
        return rng.integers(0, high, dtype=np.int64)

    nxt, val0 = decode(draw(None))
    val = _resolve_pointers(nxt, val0)
    check_steps = np.arange(steps)
    rounds = 0
    passes = MAX_REDRAW_ROUNDS if T <= BA_CONVERGE_SLOTS else BA_EXACT_PASSES
    for exact_pass in range(passes):
        redrawn = []
        # Cheap rounds: redraw duplicate slots, reading earlier slots' current values.
        while check_steps.size:
            rounds += 1
            if rounds > MAX_BA_REDRAW_ROUNDS:
                raise NetworkError(
                    f"barabasi_albert: could not draw {m} distinct targets per node; m={m} "
                    f"is too close to n={n}"
                )
            slots = _duplicate_slots(val, check_steps, m)
            if slots.size == 0:
                break
            ptr, v0 = decode(draw(slots))
            nxt[slots], val0[slots] = ptr, v0
            val[slots] = np.where(ptr >= 0, val[np.maximum(ptr, 0)], v0)
            redrawn.append(slots)
            check_steps = np.unique(slots // m)
        if not redrawn or exact_pass == passes - 1:
            break
        # Exact pass: later slots that copied a redrawn slot must see its new value;
        # re-check the steps whose values moved (usually none, so this runs ~twice).
        new_val = _resolve_pointers(nxt, val0)
        check_steps = np.unique(np.flatnonzero(new_val != val) // m)
        val = new_val
    src = step_of + i32(m + 1)
    return np.concatenate([star_u, src]), np.concatenate([star_v, val]), True


def _complete_edges(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair i < j in np.triu_indices's order, made row by row as int32 while n
    fits (triu_indices's int64 pairs and a copy of them held 16 bytes per tie end)."""
    idx = _index_dtype(n)
    i = np.repeat(np.arange(n, dtype=idx), np.arange(n - 1, -1, -1))
    j = np.empty(i.size, dtype=idx)
    pos = 0
    for r in range(n - 1):  # n <= MAX_COMPLETE_N rows
        j[pos : pos + n - 1 - r] = np.arange(r + 1, n, dtype=idx)
        pos += n - 1 - r
    return i, j


def _complete(spec: Any, ward: np.ndarray, rng: np.random.Generator):
    """All pairs; refused above MAX_COMPLETE_N because memory grows as n^2."""
    n = ward.size
    if n > MAX_COMPLETE_N:
        raise NetworkError(
            f"network.kind: complete with {n:,} residents ({n * (n - 1):,} tie ends) is not "
            f"allowed; allowed: up to {MAX_COMPLETE_N:,} residents; use erdos_renyi or "
            "ward_clustered for large towns"
        )
    return _complete_edges(n) + (True,)


# --------------------------------------------------------------------------------------
# Graph kinds: the spec a scenario writes under [network], its builder and its size
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphKind:
    """One graph kind (registered in `GRAPHS`).

    `build(spec, ward, rng) -> (u, v, unique)`: the tie ends as two int64 arrays for
    `len(ward)` residents, drawn from the scenario's "network" stream, with `unique`
    True only when it guarantees no self-loops and no tie listed twice (else
    `build_network` removes them). None for a graph read from a file.
    `expected_tie_ends(spec, n, ward_sizes)`: twice the ties it is expected to make, so
    limits.py refuses a run too large for the machine before the graph is built."""

    spec: type[Spec]
    build: Callable[[Any, np.ndarray, np.random.Generator], tuple] | None
    expected_tie_ends: Callable[[Any, int, list[int]], int] = lambda spec, n, sizes: 0

    @property
    def kind(self) -> str:
        return kind_of(self.spec)


class NetworkBase(Spec):
    """The base of every graph spec: the optional tie `weights` distribution."""

    if TYPE_CHECKING:  # each registered kind declares `kind: Literal[...]` (registry.kind_of)
        kind: str

    weights: Distribution | None = Field(
        None, description="tie weight distribution; None means every tie weighs 1"
    )

    @field_validator("weights", mode="after")
    @classmethod
    def _non_negative(cls, dist: Any) -> Any:
        return check_support(dist, WEIGHT_RANGE)


class WattsStrogatz(NetworkBase):
    """Small world: ring lattice of k neighbours, each tie rewired with probability p."""

    kind: Literal["watts_strogatz"] = "watts_strogatz"
    k: Annotated[int, Field(ge=2)] = 10
    p: Probability = 0.1

    @model_validator(mode="after")
    def _even(self) -> WattsStrogatz:
        if self.k % 2:
            raise ValueError(
                f".k: {self.k} is odd; allowed: an even number (k/2 neighbours each side)"
            )
        return self


class BarabasiAlbert(NetworkBase):
    """Scale-free: each newcomer attaches to m residents, preferentially to popular ones."""

    kind: Literal["barabasi_albert"] = "barabasi_albert"
    m: Annotated[int, Field(ge=1)] = 5


class ErdosRenyi(NetworkBase):
    """Random graph G(n, p) with p = mean_degree / (n - 1)."""

    kind: Literal["erdos_renyi"] = "erdos_renyi"
    mean_degree: Annotated[float, Field(gt=0.0)] = 10.0


class WardKernel:
    """Relative weight of a cross-ward tie for every pair of wards (W x W, symmetric, >= 0,
    rows in the scenario's ward order), made from the ward geography (geography.py).
    Compared by value, so specs holding one still compare equal when their kernels do."""

    def __init__(self, weights: np.ndarray) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != w.shape[1] or not np.all(np.isfinite(w)) or (w < 0).any():
            raise NetworkError("a ward kernel must be a square matrix of finite weights >= 0")
        self.weights = w

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WardKernel) and np.array_equal(self.weights, other.weights)

    __hash__ = None  # type: ignore[assignment]  # mutable array inside: not hashable


class WardClustered(NetworkBase):
    """Stochastic block model by ward: dense ties inside a ward, sparse across wards.

    `cross` says which pairs of wards the cross-ward ties join: "uniform" (every pair
    alike), "adjacent" (only wards sharing a border) or "distance" (weight
    exp(-d / distance_scale) for centroid distance d). The latter two need the scenario's
    [geography]; the expected number of cross-ward ties is the same in all three."""

    kind: Literal["ward_clustered"] = "ward_clustered"
    p_in: Probability | None = None
    p_out: Probability | None = Field(
        None, description="probability of a tie between two residents of different wards "
        "(with cross other than 'uniform': its average over those pairs)")
    mean_degree_in: NonNegative | None = None
    mean_degree_out: NonNegative | None = None
    cross: Literal["uniform", "adjacent", "distance"] = Field(
        "uniform", description="which wards cross-ward ties join: every pair alike, only "
        "neighbours (shared border) or decaying with centroid distance; the last two need "
        "[geography] (assumption: friendship falls off with distance, Liben-Nowell et al. "
        "2005, PNAS 102:11623)")
    distance_scale: Annotated[float, Field(gt=0.0)] = Field(
        1000.0, description="metres over which the 'distance' kernel falls by a factor e "
        "(assumption: about a ward's width in an English borough)")

    _ward_kernel: WardKernel | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_of_each(self) -> WardClustered:
        for a, b in (("p_in", "mean_degree_in"), ("p_out", "mean_degree_out")):
            if (getattr(self, a) is None) == (getattr(self, b) is None):
                raise ValueError(f".{a}: give exactly one of {a} or {b}")
        return self


class Complete(NetworkBase):
    """Everyone knows everyone: the mean-field case (small populations only)."""

    kind: Literal["complete"] = "complete"


class GraphFile(NetworkBase):
    """A graph read from an edge list (u v [weight]) or GraphML; its nodes are the residents."""

    kind: Literal["file"] = "file"
    path: str
    format: Literal["edgelist", "graphml"] | None = None
    weight: str = Field("weight", description="edge attribute holding tie weights (GraphML)")


def _ward_clustered_ends(spec: WardClustered, n: int, sizes: list[int]) -> int:
    pairs_in = sum(s * (s - 1) for s in sizes)  # ordered pairs = tie ends if all present
    pairs_out = n * n - sum(s * s for s in sizes)
    ends_in = _block_ends(spec.p_in, spec.mean_degree_in, pairs_in, n)
    ends_out = _block_ends(spec.p_out, spec.mean_degree_out, pairs_out, n)
    return math.ceil(ends_in + ends_out)


def _block_ends(p: float | None, mean_degree: float | None, pairs: int, n: int) -> float:
    """Expected tie ends among `pairs` ordered pairs: a share p of them, or n residents'
    mean degree (at most every pair). WardClustered gives exactly one of p, mean_degree."""
    if p is not None:
        return p * pairs
    assert mean_degree is not None
    return min(n * mean_degree, pairs)


def _ba_ends(spec: BarabasiAlbert, n: int, sizes: list[int]) -> int:
    m = min(int(spec.m), max(n - 1, 0))
    return 2 * m * max(n - m, 0)


GRAPHS.register(GraphKind(
    WattsStrogatz, _watts_strogatz, lambda spec, n, sizes: n * min(int(spec.k), max(n - 1, 0))))
GRAPHS.register(GraphKind(BarabasiAlbert, _barabasi_albert, _ba_ends))
GRAPHS.register(GraphKind(
    ErdosRenyi, _erdos_renyi,
    lambda spec, n, sizes: math.ceil(n * min(float(spec.mean_degree), max(n - 1, 0)))))
GRAPHS.register(GraphKind(WardClustered, _ward_clustered, _ward_clustered_ends))
GRAPHS.register(GraphKind(Complete, _complete, lambda spec, n, sizes: n * max(n - 1, 0)))
GRAPHS.register(GraphKind(GraphFile, None))  # costed by the file's size (limits.py)


def build_network(spec: Any, ward: np.ndarray, rng: np.random.Generator) -> Network:
    """Generate the social graph described by ``spec`` for ``len(ward)`` residents.

    Deterministic given ``rng``.  If ``spec.weights`` is set, its ``sample(rng, size)``
    gives one weight per undirected tie (drawn after the topology, in tie order).
    """
    kind = _attr(spec, "kind")
    builders = [k for k in GRAPHS.names() if GRAPHS[k].build is not None]
    if kind not in builders:
        raise NetworkError(
            f"unknown network kind {kind!r}; choose one of {', '.join(sorted(builders))} "
            "or load a file"
        )
    ward = np.asarray(ward)
    if ward.ndim != 1:
        raise NetworkError(f"ward must be a 1-D array (one ward per resident), got shape {ward.shape}")
    n = ward.size
    ties = _Ties(*GRAPHS[kind].build(spec, ward, rng))
    edges, unique, csr = [ties.u, ties.v], ties.unique, ties.csr
    del ties  # _from_edges frees the edge arrays once it has their keys
    memory.give_back()
    weights = _attr(spec, "weights")
    if weights is None:
        net = _from_edges(n, edges, None, assume_unique=unique, consume=True, arrays=csr)
        memory.give_back()
        return net
    del csr
    if not unique:  # dedupe first so there is exactly one weight per tie
        net = _from_edges(n, edges, None, assume_unique=False)
        rows = np.repeat(np.arange(n, dtype=np.int64), net.degree)
        upper = rows < net.indices
        edges = [rows[upper], net.indices[upper].astype(np.int64)]
        del net, rows, upper
    m = edges[0].size
    w = _check_weights(weights.sample(rng, m), m, f"{kind} weights.sample")
    return _from_edges(n, edges, w, assume_unique=True, consume=True)
