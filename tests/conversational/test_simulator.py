"""Simulator answers, dialogue-state updates and the episode loop on the planted world."""

from __future__ import annotations

import numpy as np
import pytest

from recforge.conversational.episode import REWARDS, Acting, DialogueEnv, sample_pairs, simulate
from recforge.conversational.simulator import UserSimulator
from recforge.conversational.state import Ask, CRSSetting, DialogueState, Recommend
from recforge.errors import ConfigError
from recforge.protocols import ConversationalPolicy
from recforge.registry import CRS_POLICIES
from recforge.train.rollout import play


def run_episode(policy, world, setting, user, target, rng):
    return play(DialogueEnv(world, setting), Acting(policy), (user, target), rng)


def test_simulator_answers_from_target(world):
    target = 7
    attrs = set(world.attrs_of(target).tolist())
    sim = UserSimulator(world, CRSSetting(), target, np.random.default_rng(0))
    assert sim.opening() in attrs
    yes = next(iter(attrs))
    no = next(a for a in range(world.n_attrs) if a not in attrs)
    assert sim.answer(Ask((yes,))) == (yes,)
    assert sim.answer(Ask((no,))) == ()
    assert sim.rank_of_target(Recommend((1, 2, target))) == 3
    assert sim.rank_of_target(Recommend((1, 2))) is None


def test_multiple_choice_answer_subset(world):
    target = 3
    attrs = world.attrs_of(target).tolist()
    others = [a for a in range(world.n_attrs) if a not in attrs][:3]
    sim = UserSimulator(world, CRSSetting(mode="multiple_choice", choices=5), target, np.random.default_rng(0))
    assert set(sim.answer(Ask((attrs[0], *others, attrs[1])))) == {attrs[0], attrs[1]}


@pytest.mark.parametrize(
    ("setting", "action", "message"),
    [
        (CRSSetting(), Ask((1, 2)), "binary question offers 1..1"),
        (CRSSetting(mode="multiple_choice", choices=2), Ask((1, 2, 3)), "offers 1..2"),
        (CRSSetting(list_size=2), Recommend((1, 2, 3)), "1..2 items"),
        (CRSSetting(), Recommend(()), "1..10 items"),
    ],
)
def test_simulator_rejects_malformed_actions(world, setting, action, message):
    sim = UserSimulator(world, setting, 0, np.random.default_rng(0))
    with pytest.raises(ConfigError, match=message):
        sim.answer(action) if isinstance(action, Ask) else sim.rank_of_target(action)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "open"}, "mode"), ({"max_turns": 0}, "max_turns"), ({"list_size": 0}, "list_size"),
     ({"choices": 0}, "choices")],
)
def test_setting_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CRSSetting(**kwargs)


def test_state_filters_on_accepted_and_optionally_rejected(world):
    csc = world.item_attrs.tocsc()
    target = 11
    a_yes = int(world.attrs_of(target)[0])
    a_no = next(a for a in range(world.n_attrs) if a not in set(world.attrs_of(target).tolist()))
    for filter_rejected in (False, True):
        st = DialogueState(user=0, candidates=np.ones(world.n_items, dtype=bool))
        st.apply_answer((a_yes, a_no), (a_yes,), csc, filter_rejected)
        has_yes = world.item_attrs[:, [a_yes]].toarray().ravel() > 0
        has_no = world.item_attrs[:, [a_no]].toarray().ravel() > 0
        expected = has_yes & ~has_no if filter_rejected else has_yes
        assert np.array_equal(st.candidates, expected)
        assert st.candidates[target] and st.accepted == [a_yes] and st.rejected == [a_no]
        st.apply_rejection((target,))
        assert not st.candidates[target] and st.history[-1] == "rec_reject"


class _Scripted:
    """Asks attribute 0, then recommends the same fixed list: a loop test with a known outcome."""

    name = "scripted"

    def __init__(self, items):
        self.items, self.seen = items, []

    def begin(self, state, rng):
        self.seen.append("begin")

    def act(self, state):
        return Ask((0,)) if state.turn == 1 else Recommend(self.items)

    def observe(self, state, action, accepted):
        self.seen.append(type(action).__name__)

    def end(self, state, outcome):
        self.seen.append(("end", outcome.turn, outcome.rank))


def test_episode_loop_success_turn_and_rank(world):
    target = int(world.pairs("test")[1][0])
    pol = _Scripted((target + 1, target))
    episode = run_episode(pol, world, CRSSetting(), 0, target, np.random.default_rng(0))
    out = episode.outcome
    assert (out.turn, out.rank) == (2, 2)
    assert pol.seen == ["begin", "Ask", ("end", 2, 2)]
    ask_reward = REWARDS["ask_accept"] if 0 in world.attrs_of(target) else REWARDS["ask_reject"]
    assert episode.rewards == [ask_reward, REWARDS["rec_accept"]]
    assert [t.done for t in episode.transitions] == [False, True]


def test_episode_loop_fails_after_max_turns(world):
    target = 5
    pol = _Scripted((target + 1,))
    episode = run_episode(pol, world, CRSSetting(max_turns=4), 0, target, np.random.default_rng(0))
    assert (episode.outcome.turn, episode.outcome.rank) == (0, 0)
    # the last turn ends the dialogue: observed are the first three turns only
    assert pol.seen[-1] == ("end", 0, 0) and pol.seen.count("Recommend") == 2
    assert len(episode) == 4
    assert episode.rewards[-1] == pytest.approx(REWARDS["rec_reject"] + REWARDS["quit"])


def test_every_policy_satisfies_the_protocol(world, setting, scorer):
    from recforge.conversational.train import make_policy

    for name in CRS_POLICIES:
        assert isinstance(make_policy(name, world, setting, scorer), ConversationalPolicy), name


def test_simulate_is_seeded_and_sampled(world, setting):
    from recforge.conversational.policies.random import RandomPolicy

    a = simulate(RandomPolicy(None, world, setting), world, setting, episodes=50, seed=3)
    b = simulate(RandomPolicy(None, world, setting), world, setting, episodes=50, seed=3)
    assert np.array_equal(a.turns, b.turns) and len(a.turns) == 50
    assert set(a.metrics) == {"sr@5", "sr@8", "at", "hdcg"}
    m = a.metrics["sr@8"]
    assert m["ci_low"] <= m["mean"] <= m["ci_high"]


@pytest.mark.parametrize(("split", "episodes", "message"), [("train2", 5, "unknown CRS split"), ("test", 0, "episodes")])
def test_sample_pairs_errors(world, split, episodes, message):
    with pytest.raises(ConfigError, match=message):
        sample_pairs(world, split, episodes, 0)
