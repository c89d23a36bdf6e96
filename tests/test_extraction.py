"""Code extraction (``shared_utils.extraction``): the paper's marker stripping and the first fenced block,
on answers shaped like real model output."""

from __future__ import annotations

import pytest

from shared_utils.extraction import MODES, extract_code, extract_fenced, extract_paper, wrap_code

CODE = "def first_repeated_char(str1):\n    for index, c in enumerate(str1):\n        if str1[:index + 1].count(c) > 1:\n            return c\n    return \"None\""

CLEAN = f"```python\n{CODE}\n```"

PROSE = (
    "Here is a Python function that finds the first repeated character:\n\n"
    f"```python\n{CODE}\n```\n\n"
    "This function iterates over the string and returns the first character that appears twice."
)

TWO_BLOCKS = (
    "Implementation 1:\n"
    f"```python\n{CODE}\n```\n"
    "Example usage:\n"
    "```python\nprint(first_repeated_char(\"abcabc\"))  # a\n```\n"
)

UNCLOSED = (
    "Sure! Here's the code:\n"
    "```python\n"
    "def min_sum_path(A):\n"
    "    memo = [None] * len(A)\n"
    "    n = len(A) - 1\n"
    "    for i in range(len(A[n])):\n"
    "        memo[i] = A[n][i]"
)


# --------------------------------------------------------------------------------------------
# paper mode


def test_paper_clean_block():
    assert extract_code(CLEAN, "paper") == CODE


def test_paper_is_the_default_mode():
    assert extract_code(PROSE) == extract_code(PROSE, "paper")


def test_paper_keeps_prose_around_the_code():
    # The published protocol only deletes the markers; the prose stays (and later fails the asserts).
    expected = (
        "Here is a Python function that finds the first repeated character:\n\n\n"
        f"{CODE}\n\n\n"
        "This function iterates over the string and returns the first character that appears twice."
    )
    assert extract_code(PROSE, "paper") == expected


def test_paper_joins_several_blocks():
    out = extract_code(TWO_BLOCKS, "paper")
    assert "```" not in out
    assert CODE in out and 'print(first_repeated_char("abcabc"))' in out
    assert out.startswith("Implementation 1:")


def test_paper_without_block_is_the_stripped_text():
    assert extract_code(f"\n\n  {CODE}  \n\n", "paper") == CODE


def test_paper_leaves_other_language_tags():
    # Only "```python" and "```" are markers: a ```py fence leaves "py" on the first line, as in the paper.
    assert extract_code(f"```py\n{CODE}\n```", "paper") == f"py\n{CODE}"


def test_paper_bare_fence():
    assert extract_code(f"```\n{CODE}\n```", "paper") == CODE


def test_paper_unclosed_fence():
    assert extract_code(UNCLOSED, "paper") == UNCLOSED.replace("```python", "").strip()
    assert extract_paper(UNCLOSED).startswith("Sure! Here's the code:\n\ndef min_sum_path(A):")


# --------------------------------------------------------------------------------------------
# fenced mode


def test_fenced_clean_block():
    assert extract_code(CLEAN, "fenced") == CODE


def test_fenced_drops_prose_before_and_after():
    assert extract_code(PROSE, "fenced") == CODE


def test_fenced_takes_the_first_of_several_blocks():
    assert extract_code(TWO_BLOCKS, "fenced") == CODE


def test_fenced_without_block_is_the_whole_text_stripped():
    text = f"\n{CODE}\n\n"
    assert extract_code(text, "fenced") == CODE
    assert extract_code("I cannot help with that.", "fenced") == "I cannot help with that."


@pytest.mark.parametrize("fence", ["```py", "```", "```python3", "``` python", "```Python"])
def test_fenced_other_language_tags_and_bare_fence(fence):
    text = f"Here you go:\n{fence}\n{CODE}\n```\nDone."
    assert extract_code(text, "fenced") == CODE


def test_fenced_unclosed_fence_takes_the_rest():
    assert extract_code(UNCLOSED, "fenced") == (
        "def min_sum_path(A):\n"
        "    memo = [None] * len(A)\n"
        "    n = len(A) - 1\n"
        "    for i in range(len(A[n])):\n"
        "        memo[i] = A[n][i]"
    )


def test_fenced_keeps_inner_indentation_and_blank_lines():
    code = "def f(x):\n    if x:\n\n        return 1\n    return 0"
    assert extract_fenced(f"```python\n{code}\n```") == code


def test_fenced_empty_block():
    assert extract_code("Nothing:\n```python\n```\n", "fenced") == ""


def test_modes_differ_on_prose():
    assert extract_code(PROSE, "fenced") != extract_code(PROSE, "paper")


# --------------------------------------------------------------------------------------------
# wrap_code and errors


def test_wrap_code_is_the_paper_format():
    assert wrap_code(CODE) == "```python\n" + CODE + "\n```"


@pytest.mark.parametrize("mode", MODES)
def test_wrap_then_extract_round_trips(mode):
    assert extract_code(wrap_code(CODE), mode) == CODE


def test_modes_are_named():
    assert MODES == ("paper", "fenced")


@pytest.mark.parametrize("mode", ["strict", "", "Paper", None])
def test_unknown_mode_names_the_modes(mode):
    with pytest.raises(ValueError) as info:
        extract_code(CLEAN, mode)
    message = str(info.value)
    assert "paper" in message and "fenced" in message
    assert repr(mode) in message
