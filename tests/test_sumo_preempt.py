"""`edge-agent bench preempt`'s runs on the SUMO arterial, short and pinned.

Emergency vehicles obey the signals; with preemption their approach's
preempt is called while they are on the 300 m approach. The run without
preemption has the same seed, demand and EV schedule. SUMO is seeded, so the
figures are exact; when the controller's behaviour changes on purpose,
re-run and update them in the same change.
"""

import pytest

from hil.sumo import build as sb

pytestmark = pytest.mark.sumo


def test_ev_schedule_is_seeded_and_leaves_two_minutes_at_the_end():
    from hil.sumo.preempt_bench import ev_schedule
    a = ev_schedule(1, 600, 90)
    assert a == ev_schedule(1, 600, 90) and a != ev_schedule(2, 600, 90)
    assert all(60 < t < 480 for t, _ in a)


def test_preemption_cuts_ev_time_loss_on_the_same_seed_and_demand():
    if not sb.sumo_available():
        pytest.skip("Eclipse SUMO is not installed (the 'sumo' extra)")
    from hil.sumo.preempt_bench import run_pair, mean
    without, with_ = run_pair(1, 600, 90)
    assert without["scheduled"] == with_["scheduled"] == len(with_["ev"]) == len(without["ev"]) == 4
    assert without["preempts"] == 0 and with_["preempts"] == PINNED["preempts"]
    assert (round(mean(without["ev"]), 2), round(mean(with_["ev"]), 2)) == PINNED["ev"]
    assert (round(mean(without["cars"]), 2), round(mean(with_["cars"]), 2)) == PINNED["cars"]


# seed 1, 600 s, an EV every 90 s on average: 4 EVs.
PINNED = {"preempts": 4, "ev": (26.97, 0.24), "cars": (20.14, 24.46)}
