"""Agent.next_ms on the standard site (runs in CPython and MicroPython).

Standard site: start-up all-red 4 s, then 2+6 green (min green 10 s, passage
3 s, max green 40 s); phase 4 min green 10 s. With no input the agent asks for
a step only at its timers, then nothing for the horizon (60 s).
"""

from edge_agent.agent import Agent, Inputs
from edge_agent.intersection import parse_site
from edge_agent.standard import standard_site

SITE = parse_site(standard_site())


def test_idle_agent_sleeps_until_its_deadlines():
    agent = Agent(SITE)
    agent.step(0)
    seen = []
    t = 0
    for _ in range(4):
        t = agent.next_ms(t)
        seen.append((t, [e[1] for e in agent.step(t).events]))
    # 4 s: 2 and 6 on and green; 7 s: their gap ends (no demand: nothing
    # logged); 14 s: their min greens complete; then the 60 s horizon.
    assert seen == [(4000, [0, 1, 0, 1]), (7000, []), (14000, [3, 3]), (74000, [])]


def test_a_pulse_wakes_the_next_step_and_the_clearances_their_ends():
    """A non-locking pulse on phase 4 at 20.1 s: 2 and 6 (gapped out, no extension)
    end at once; the pulse lasts one step, so the call drops at the next (20.101 s);
    then the yellow end (4 s), a step after it (the detectors see the change), the
    red clearance end (1.5 s) and the barrier back to 2+6 at the red revert's end."""
    agent = Agent(SITE)
    agent.step(0)
    agent.step(4000)
    agent.step(20000)
    ch = [d.channel for d in SITE.detectors if d.phase == 4][0]
    out = agent.step(20100, Inputs(pulses={ch: 1}))
    assert [(e[1], e[2]) for e in out.events if e[0] == 20100][:4] == [(81, ch), (43, 4), (2, 2),
                                                                        (2, 6)]
    seen = []
    t = 20100
    for _ in range(6):
        t = agent.next_ms(t)
        seen.append((t, [e[1:] for e in agent.step(t).events]))
    assert seen == [
        (20101, [(44, 4)]),
        (24100, [(9, 2), (10, 2), (9, 6), (10, 6)]),
        (24101, []),
        (25600, [(11, 2), (12, 2), (11, 6), (12, 6)]),
        (26100, [(31, 1), (0, 2), (1, 2), (0, 6), (1, 6), (2, 2), (2, 6)]),
        (26101, []),
    ]
