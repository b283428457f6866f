"""Named random streams from one SeedSequence, and counter-based uniforms.

Two kinds of randomness, both derived from the scenario's seed:

* ``generator(name)`` — a ``numpy.random.Generator`` for set-up draws (traits, graph,
  initial adopters). Each name gets its own child of the root ``SeedSequence``, so changing
  one distribution leaves every other draw as it was (common random numbers).
* ``uniform(name, step, ids)`` — the dynamics' draws. Each value depends only on
  (seed, stream name, step, resident) through a SplitMix64 hash, never on evaluation
  order, on which residents were skipped, or on the number of threads. The per-agent path
  reproduces them exactly with `uniform_scalar`.
"""

from __future__ import annotations

import zlib

import numpy as np

GOLDEN = 0x9E3779B97F4A7C15  # SplitMix64 increment (Steele, Lea & Flood 2014)
ODD = 0xD1B54A32D192ED03  # a second odd multiplier, spreads resident ids
M1 = 0xBF58476D1CE4E5B9  # SplitMix64 finaliser multipliers
M2 = 0x94D049BB133111EB
_MASK = (1 << 64) - 1
_TO_UNIT = 2.0**-53


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _mix_int(z: int) -> int:
    """SplitMix64 finaliser on a Python int (the scalar reference). Compiled twin:
    kernels._uniform_at."""
    z = ((z ^ (z >> 30)) * M1) & _MASK
    z = ((z ^ (z >> 27)) * M2) & _MASK
    return z ^ (z >> 31)


def _mix_array(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic), in place. Compiled
    twin: kernels._uniform_at."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(M1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(M2)
    z ^= z >> np.uint64(31)
    return z


class Streams:
    """All randomness of one run, derived from a single seed."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.root = np.random.SeedSequence(self.seed)
        self._keys: dict[str, int] = {}

    def seed_sequence(self, name: str) -> np.random.SeedSequence:
        """Child of the root sequence, addressed by name rather than by spawn order."""
        return np.random.SeedSequence(
            self.root.entropy, spawn_key=self.root.spawn_key + (_name_key(name),)
        )

    def generator(self, name: str) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(self.seed_sequence(name)))

    def key(self, name: str) -> int:
        """64-bit key of a counter-based stream."""
        if name not in self._keys:
            self._keys[name] = int(self.seed_sequence(name).generate_state(1, np.uint64)[0])
        return self._keys[name]

    def uniform(self, name: str, step: int, ids: np.ndarray | int) -> np.ndarray:
        """Uniforms in [0, 1) for residents `ids` (an index array, or n for 0..n-1)."""
        return uniform_array(self.key(name), step, ids)

    def uniform_scalar(self, name: str, step: int, i: int) -> float:
        return uniform_scalar(self.key(name), step, i)


def step_key(key: int, step: int) -> int:
    """The offset of `step` in the counter-based stream `key`: resident i's uniform is the
    SplitMix64 finaliser of i * ODD + step_key(key, step) (the compiled twin,
    kernels._uniform, adds ODD per resident from it)."""
    return _mix_int((key + (step + 1) * GOLDEN) & _MASK)




def uniform_array(key: int, step: int, ids: np.ndarray | int) -> np.ndarray:
    if isinstance(ids, (int, np.integer)):
        z = np.arange(int(ids), dtype=np.uint64)
    else:
        z = np.asarray(ids).astype(np.uint64)
    z *= np.uint64(ODD)
    z += np.uint64(step_key(key, step))
    _mix_array(z)
    z >>= np.uint64(11)
    return z.astype(np.float64) * _TO_UNIT


def uniform_scalar(key: int, step: int, i: int) -> float:
    """Same value as ``uniform_array(key, step, [i])[0]``, in plain Python."""
    z = (i * ODD + step_key(key, step)) & _MASK
    return (_mix_int(z) >> 11) * _TO_UNIT
