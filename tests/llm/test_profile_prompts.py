"""User and item profile prompts: versioned templates, recency-marked history cut to the token budget."""

from __future__ import annotations

import pytest

from recforge.errors import ConfigError
from recforge.llm.prompts import PROMPTS, estimate_tokens, item_profile_prompt, user_profile_prompt


def test_user_profile_prompt_lists_the_history_newest_first():
    p = user_profile_prompt(["Heat (1995)", "Toy Story (1995)"], words=50)
    system, user = (text for _, text in p.request.messages)
    assert p.template == "user_profile/1" and system == PROMPTS["user_profile"].system
    assert user.index("[1] Toy Story (1995)") < user.index("[2] Heat (1995)")
    assert "at most 50 words" in user and '"summarization"' in user
    assert (p.history_kept, p.history_dropped) == (2, 0)


def test_item_profile_prompt_cuts_the_oldest_feedback_to_fit():
    feedback = [f"review {k}: " + "a tense heist film " * 10 for k in range(40)]
    p = item_profile_prompt("title: Heat; genres: Action, Crime; year: 1995", feedback, budget_tokens=400)
    user = p.request.messages[1][1]
    assert p.template == "item_profile/1" and "title: Heat" in user
    assert 0 < p.history_kept < 40 and p.history_kept + p.history_dropped == 40
    assert "[1] review 39" in user and "review 0:" not in user  # the newest kept, the oldest cut
    assert sum(estimate_tokens(t) for _, t in p.request.messages) <= 400


def test_a_profile_prompt_that_cannot_fit_is_a_config_error():
    with pytest.raises(ConfigError, match="item_profile/1"):
        item_profile_prompt("x" * 4000, [], budget_tokens=100)
