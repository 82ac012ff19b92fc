"""The ring's storage grows on demand up to its limit (which lets exec keep all output) while it
still behaves exactly like a ring that keeps the newest `limit` bytes: checked against a model."""
from hypothesis import given, settings, strategies as st

from luaskills_runtime._native.ringbuf import RingBuffer

INITIAL = 16384   # LSR_RING_INITIAL_BYTES
PATTERN = bytes(range(251)) * 700   # 175,700 bytes whose offsets are recognisable


class ModelRing:
    def __init__(self, limit):
        self.limit = limit
        self.data = bytearray()
        self.total = 0
        self.dropped = 0

    def append(self, chunk):
        self.total += len(chunk)
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def drain(self, max_bytes):
        out = bytes(self.data[:max_bytes])
        del self.data[:max_bytes]
        return out


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 70000), st.integers(0, 255)),
        st.tuples(st.just("drain"), st.integers(0, 80000), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 7, 1000, INITIAL - 1, INITIAL, INITIAL + 1, 50000, 200000, 2**40]),
       operations)
def test_growing_ring_matches_model(limit, ops):
    ring = RingBuffer(limit)
    model = ModelRing(limit)
    counter = 0
    for op, size, seed in ops:
        if op == "append":
            start = (seed + counter) % 251
            chunk = PATTERN[start:start + size]
            counter += size
            ring.append(chunk)
            model.append(chunk)
        else:
            assert ring.drain(size) == model.drain(size)
        held, total, dropped, eof = ring.stats()
        assert (held, total, dropped, eof) == (len(model.data), model.total, model.dropped, False)
    assert ring.capacity == limit
    assert ring.drain(len(model.data) + 1) == bytes(model.data)


def test_marker_search_across_growth():
    ring = RingBuffer(10**9)
    ring.drain(0)
    ring.append(b"x" * (INITIAL - 3) + b"EN")
    found, resume = ring.find(b"END")
    assert not found and resume == INITIAL - 3
    ring.append(b"D" + b"y" * (5 * INITIAL))   # grows past several doublings
    assert ring.find(b"END", resume) == (True, INITIAL - 3)
    held, total, dropped, _ = ring.stats()
    assert (held, total, dropped) == (6 * INITIAL, 6 * INITIAL, 0)
    assert ring.drain(6 * INITIAL) == b"x" * (INITIAL - 3) + b"END" + b"y" * (5 * INITIAL)
