"""Counter-based draws: depend only on (seed, stream, step, resident), and look uniform."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgesim.rng import Streams


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**63), step=st.integers(0, 10_000), ids=st.lists(st.integers(0, 10**9), min_size=1, max_size=20))
def test_array_and_scalar_agree_and_order_does_not_matter(seed, step, ids):
    s = Streams(seed)
    arr = s.uniform("decide", step, np.array(ids))
    assert [s.uniform_scalar("decide", step, i) for i in ids] == arr.tolist()
    rev = s.uniform("decide", step, np.array(ids[::-1]))
    assert rev.tolist() == arr.tolist()[::-1]
    assert ((arr >= 0) & (arr < 1)).all()


def test_streams_are_independent_and_uniform():
    s = Streams(123)
    a = s.uniform("a", 1, 200_000)
    b = s.uniform("b", 1, 200_000)
    c = s.uniform("a", 2, 200_000)
    # mean of U(0,1) has sd 1/sqrt(12 n) ~ 0.00065 here: 5 sd tolerance
    for u in (a, b, c):
        assert abs(u.mean() - 0.5) < 0.0033
        assert abs(np.histogram(u, bins=10, range=(0, 1))[0] / len(u) - 0.1).max() < 0.005
    # correlations of independent streams have sd 1/sqrt(n) ~ 0.0022: 5 sd tolerance
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.011
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.011
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 0.011


def test_generators_are_named_not_ordered():
    s1, s2 = Streams(9), Streams(9)
    x = s1.generator("trait:attitude").random(5)
    s2.generator("network").random(100)  # drawing elsewhere first changes nothing
    assert (s2.generator("trait:attitude").random(5) == x).all()
    assert not (Streams(10).generator("trait:attitude").random(5) == x).all()


def test_the_public_constants_are_the_stream_s():
    from nudgesim import rng

    key = Streams(7).key("decide")
    # resident i's uniform is the finaliser of i * ODD + step_key, as the kernels compute it
    z = (5 * rng.ODD + rng.step_key(key, 3)) & ((1 << 64) - 1)
    assert (rng._mix_int(z) >> 11) * 2.0**-53 == rng.uniform_scalar(key, 3, 5)
