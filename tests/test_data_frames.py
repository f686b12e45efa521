"""events_to_frames against a deliberately naive per-event reference written from SpikingJelly's rules."""

from __future__ import annotations

import numpy as np
import pytest

from spikemask.data import events_to_frames, make_events

H, W = 5, 6


def naive_frames(events, T, split_by):
    """Loop over events. number: slice i holds events i*di .. (i+1)*di - 1, the last slice up to N.
    time: dt = (t_last - t_first) // T; slice i holds t_first + i*dt <= t < t_first + (i+1)*dt, and any
    later event goes to the last slice."""
    n = len(events)
    frames = np.zeros((T, 2, H, W), dtype=np.float64)
    for k in range(n):
        t, x, y, p = (int(events[f][k]) for f in "txyp")
        if split_by == "number":
            di = n // T
            i = T - 1
            for j in range(T - 1):
                if j * di <= k < (j + 1) * di:
                    i = j
        else:
            t0, dt = int(events["t"][0]), (int(events["t"][-1]) - int(events["t"][0])) // T
            i = T - 1
            for j in range(T - 1):
                if t0 + j * dt <= t < t0 + (j + 1) * dt:
                    i = j
        frames[i, p, y, x] += 1
    return frames


def random_events(n, seed, t_span=10_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_span, n))
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 100, 101, 1003])
@pytest.mark.parametrize("T", [1, 3, 4, 8])
def test_matches_naive_reference(split_by, n, T):
    ev = random_events(n, seed=n * 10 + T)
    got = events_to_frames(ev, T, (H, W), split_by=split_by)
    assert got.dtype == np.float32 and got.shape == (T, 2, H, W)
    np.testing.assert_array_equal(got, naive_frames(ev, T, split_by))
    assert got.sum() == n  # every event counted exactly once


def test_number_split_last_slice_takes_the_remainder():
    ev = random_events(10, seed=1)  # di = 10 // 4 = 2: slices of 2, 2, 2 and 4 events
    per_slice = events_to_frames(ev, 4, (H, W)).sum(axis=(1, 2, 3))
    assert per_slice.tolist() == [2, 2, 2, 4]


def test_time_split_bins_are_half_open_and_last_is_extended():
    # t0 = 0, t_last = 10, T = 3 -> dt = 3: [0, 3) [3, 6) and everything from 6 on (incl. 9 and 10)
    ev = make_events([0, 2, 3, 5, 6, 9, 10], [0] * 7, [0] * 7, [1] * 7)
    per_slice = events_to_frames(ev, 3, (H, W), split_by="time").sum(axis=(1, 2, 3))
    assert per_slice.tolist() == [2, 2, 3]


def test_channel_order_off_is_zero():
    ev = make_events([0, 1, 2], [1, 2, 2], [3, 4, 4], [0, 1, 1])
    fr = events_to_frames(ev, 1, (H, W))
    assert fr[0, 0, 3, 1] == 1 and fr[0, 0].sum() == 1  # the OFF event
    assert fr[0, 1, 4, 2] == 2 and fr[0, 1].sum() == 2  # counts, not binarised


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_fewer_events_than_T_puts_them_in_the_last_slice(split_by):
    ev = make_events([0, 1, 2], [0, 1, 2], [0, 0, 0], [1, 0, 1])  # time: dt = 2 // 8 = 0
    fr = events_to_frames(ev, 8, (H, W), split_by=split_by)
    assert fr[:7].sum() == 0 and fr[7].sum() == 3


def test_empty_time_bins_give_empty_frames_instead_of_an_error():
    # SpikingJelly raises IndexError here (bins 1 and 2 hold no event)
    ev = make_events([0, 1, 90, 99], [0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 0, 0])
    fr = events_to_frames(ev, 4, (H, W), split_by="time")  # dt = 24
    assert fr.sum(axis=(1, 2, 3)).tolist() == [2, 0, 0, 2]
    np.testing.assert_array_equal(fr, naive_frames(ev, 4, "time"))


@pytest.mark.parametrize("split_by", ["number", "time"])
def test_no_events_gives_zero_frames(split_by):
    fr = events_to_frames(make_events([], [], [], []), 3, (H, W), split_by=split_by)
    assert fr.shape == (3, 2, H, W) and not fr.any()


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="outside the 5x6"):
        events_to_frames(make_events([0], [W], [0], [0]), 2, (H, W))
    with pytest.raises(ValueError, match="sorted by time"):
        events_to_frames(make_events([5, 1], [0, 0], [0, 0], [0, 0]), 2, (H, W), split_by="time")
    with pytest.raises(ValueError, match="split_by"):
        events_to_frames(make_events([0], [0], [0], [0]), 2, (H, W), split_by="duration")
    with pytest.raises(ValueError, match="T must be"):
        events_to_frames(make_events([0], [0], [0], [0]), 0, (H, W))
