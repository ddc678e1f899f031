"""The id rule: strings compared as strings, integers only in canonical ASCII decimal form."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recforge.data.vocab import MAX_INT_ID, Vocab, id_variants, int_id_text, is_canonical_int


@pytest.mark.parametrize("text", ["0", "7", "42", "9223372036854775807"])
def test_canonical_ints(text):
    assert is_canonical_int(text)


@pytest.mark.parametrize(
    "text",
    ["", "07", "007", "00", "-7", "+7", " 7", "7 ", "7.0", "1e3", "٧", "७", "²", "³", "7\n", "9223372036854775808",
     "1" * 40, "0x7", "7_000"],
)
def test_not_canonical_ints(text):
    assert not is_canonical_int(text)


@pytest.mark.parametrize("raw", ["07", "007", "٧", "७", "²", " 7", "+7", "7.0", True, 7.0])
def test_look_alikes_never_reach_user_7(raw):
    assert Vocab([7, 8]).canonical(raw) is None
    assert Vocab(["7", "8"]).canonical(raw) is None


def test_text_and_integer_forms_meet():
    assert Vocab([7]).canonical("7") == 7
    assert Vocab(["7"]).canonical(7) == "7"
    assert Vocab([7]).canonical(np.int64(7)) == 7
    assert Vocab(["07"]).canonical("07") == "07"
    assert Vocab(["07"]).canonical(7) is None
    assert Vocab([1]).canonical(True) is None


def test_integer_id_bounds():
    assert int_id_text(MAX_INT_ID) == str(MAX_INT_ID)
    assert int_id_text(MAX_INT_ID + 1) is None
    assert int_id_text(-1) is None
    assert int_id_text(False) is None
    assert Vocab([7]).canonical(2**70) is None
    assert Vocab([7]).canonical(str(2**70)) is None


@given(st.text(max_size=12))
def test_rule_is_a_round_trip(text):
    """A string maps to an integer exactly when the integer prints back as the same string."""
    forms = id_variants(text)
    if len(forms) == 2:
        assert str(forms[1]) == text
    else:
        assert not (text.isascii() and text.isdigit() and str(int(text)) == text and int(text) <= MAX_INT_ID)
