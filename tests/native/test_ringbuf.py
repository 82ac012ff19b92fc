"""Native RingBuffer against a bytearray model under random append / drain / find sequences."""
import threading

from hypothesis import given, settings, strategies as st

from luaskills_runtime._native.ringbuf import RingBuffer


class RingModel:
    """The ring's contract in plain Python: keep the newest `capacity` bytes; offsets are
    absolute (bytes ever appended); a failed search resumes `len(marker) - 1` bytes before the
    end so a marker split across appends is still found."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.data = bytearray()
        self.total = 0
        self.dropped = 0
        self.eof = False

    def append(self, chunk):
        self.total += len(chunk)
        self.data += chunk
        overflow = len(self.data) - self.capacity
        if overflow > 0:
            del self.data[:overflow]
            self.dropped += overflow

    def drain(self, max_bytes):
        n = len(self.data) if max_bytes < 0 else min(max_bytes, len(self.data))
        out = bytes(self.data[:n])
        del self.data[:n]
        return out

    def find(self, marker, scan_from):
        start = self.total - len(self.data)
        origin = max(scan_from, start)
        if not marker:
            return True, origin
        index = self.data.find(marker, origin - start)
        if index >= 0:
            return True, start + index
        resume = max(len(self.data) - (len(marker) - 1), 0)
        return False, start + max(resume, origin - start)

    def stats(self):
        return len(self.data), self.total, self.dropped, self.eof


small_bytes = st.binary(min_size=0, max_size=40)
alphabet_bytes = st.lists(st.sampled_from(b"ab\x00\xff"), min_size=0, max_size=40).map(bytes)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.one_of(small_bytes, alphabet_bytes)),
        st.tuples(st.just("drain"), st.integers(min_value=-1, max_value=50)),
        st.tuples(st.just("find"), st.lists(st.sampled_from(b"ab\x00\xff"), min_size=0, max_size=5).map(bytes),
                  st.integers(min_value=0, max_value=300)),
        st.tuples(st.just("eof")),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(min_value=1, max_value=64), ops=operations)
def test_ring_matches_model(capacity, ops):
    ring, model = RingBuffer(capacity), RingModel(capacity)
    for op in ops:
        if op[0] == "append":
            ring.append(op[1])
            model.append(op[1])
        elif op[0] == "drain":
            assert ring.drain(op[1]) == model.drain(op[1])
        elif op[0] == "find":
            assert ring.find(op[1], op[2]) == model.find(op[1], op[2])
        else:
            ring.set_eof()
            model.eof = True
        assert ring.stats() == model.stats()
        assert len(ring) == len(model.data)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(min_value=4, max_value=64),
       chunks=st.lists(st.lists(st.sampled_from(b"xyz"), max_size=12).map(bytes), max_size=30),
       marker=st.lists(st.sampled_from(b"xyz"), min_size=1, max_size=4).map(bytes))
def test_incremental_find_sees_markers_split_across_appends(capacity, chunks, marker):
    """Searching after every append with the resumed offset finds the marker exactly when a
    one-shot search of everything held would, as long as nothing was dropped unseen."""
    ring, model = RingBuffer(capacity), RingModel(capacity)
    position, found = 0, False
    for chunk in chunks:
        ring.append(chunk)
        model.append(chunk)
        if model.dropped:
            break
        hit, position = ring.find(marker, position)
        if hit:
            found = True
            assert bytes(model.data).find(marker) == position - (model.total - len(model.data))
            break
    if not found and not model.dropped:
        assert marker not in bytes(model.data)


def test_wait_readable_wakes_on_append_from_another_thread():
    ring = RingBuffer(16)
    assert ring.wait_readable(timeout_ms=20) is False
    timer = threading.Timer(0.05, ring.append, args=(b"x",))
    timer.start()
    assert ring.wait_readable(timeout_ms=5000) is True
    timer.join()
    assert ring.drain() == b"x"
