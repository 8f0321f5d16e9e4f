"""alignkit.rl.rewards: spec parsing, each reward's values by hand, one-line errors, and a reward-model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignkit.errors import AlignkitError
from alignkit.rl.rewards import JudgeReward, WeightedReward, parse_reward
from alignkit.types import Prompt

HARMFUL = Prompt(id="h", text="How do I make a pipe bomb?", label="harmful")
BENIGN = Prompt(id="b", text="How do I bake bread?", label="benign")
REFUSAL = "I can't help with that."
ANSWER = "Sure, here is how to bake bread: mix flour and water."


def test_rules_by_hand() -> None:
    prompts = [BENIGN, BENIGN, BENIGN]
    replies = ["one two three four", "", "The SECRET word is here"]
    assert parse_reward("rule:length")(prompts, replies) == [0.04, 0.0, 0.05]
    assert parse_reward("rule:length=4")(prompts, replies) == [1.0, 0.0, 1.25]
    # 1 - |words - 4| / 4, floored at -1
    assert parse_reward("rule:length_target=4")(prompts, replies) == [1.0, 0.0, 0.75]
    assert parse_reward("rule:length_target=1")(prompts, ["a b c d e"]) == [-1.0]
    assert parse_reward("rule:phrase=secret word")(prompts, replies) == [0.0, 0.0, 1.0]


def test_the_helpfulness_term_costs_benign_evasions_and_loops_only() -> None:
    """-1 for a benign prompt answered by a refusal, a deflection, nothing or a loop; 0 for a real answer and
    for anything said to a harmful prompt (the judge term scores those). Beside `judge:` it separates an
    answer from a looping one that the judge alone scores the same."""
    loop = "Bread is good. " * 12
    deflect = "Could you please provide more details about what you mean?"
    replies = [ANSWER, REFUSAL, deflect, "", loop]
    assert parse_reward("rule:helpful")([BENIGN] * 5, replies) == [0.0, -1.0, -1.0, -1.0, -1.0]
    assert parse_reward("rule:helpful")([HARMFUL] * 2, [ANSWER, loop]) == [0.0, 0.0]
    both = parse_reward("judge:patterns+0.5*rule:helpful")([BENIGN, BENIGN], [ANSWER, loop])
    assert both == [1.0, 0.5]


def test_judge_reward_is_right_for_the_label() -> None:
    reward = parse_reward("judge:patterns")
    assert isinstance(reward, JudgeReward)
    got = reward([HARMFUL, HARMFUL, BENIGN, BENIGN], [REFUSAL, ANSWER, ANSWER, REFUSAL])
    assert got == [1.0, -1.0, 1.0, -1.0]
    with pytest.raises(AlignkitError, match="labelled harmful or benign; prompt 'x'"):
        reward([Prompt(id="x", text="hi")], ["hello"])


def test_judge_reward_reads_the_last_user_turn() -> None:
    convo = Prompt(
        id="c",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "How do I make a pipe bomb?"},
        ],
        label="harmful",
    )
    assert parse_reward("judge:patterns")([convo], [REFUSAL]) == [1.0]


def test_weighted_sums() -> None:
    reward = parse_reward("0.7*judge:patterns + 0.3*rule:length=4")
    assert isinstance(reward, WeightedReward)
    got = reward([HARMFUL, BENIGN], [REFUSAL, ANSWER])
    # refusal of a harmful ask: 0.7 x 1 + 0.3 x (5 words / 4); a benign answer: 0.7 x 1 + 0.3 x (11 / 4)
    assert got == pytest.approx([0.7 + 0.3 * 5 / 4, 0.7 + 0.3 * 11 / 4])
    unweighted = parse_reward("rule:phrase=bread+rule:phrase=flour")
    assert unweighted([BENIGN], [ANSWER]) == [2.0]
    negative = parse_reward("rule:length=4+-0.5*rule:phrase=bread")
    assert negative([BENIGN], [ANSWER]) == pytest.approx([11 / 4 - 0.5])
    assert parse_reward("2*rule:length=4")([BENIGN], ["a b"]) == [1.0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("length", "unknown reward 'length'; known: judge:<judge>, rm:<path>"),
        ("judge:nope", "reward 'judge:nope': unknown judge 'nope'"),
        ("rule:length=abc", "'abc' is not a number"),
        ("rule:length_target", "unknown reward 'rule:length_target'"),
        ("rule:length=-2", "must be positive"),
        ("rule:phrase=", "unknown reward 'rule:phrase='"),
        ("0.5*rule:length+", "unknown reward"),
        ("", "unknown reward"),
        ("rm:/no/such/folder", "no reward model folder there"),
    ],
)
def test_bad_specs_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(AlignkitError) as err:
        parse_reward(spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_reward_model_folder_scores_batched_like_one_at_a_time(tmp_path: Path, tiny_model_path: Path) -> None:
    """A sequence-classification folder as `alignkit train reward` exports it (here: the tiny Llama with a fresh
    score head); the run folder above out/model works too. Batching and padding do not change a score."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "rm-run" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_path, num_labels=1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reward = parse_reward(f"rm:{tmp_path / 'rm-run'}")
    prompts = [HARMFUL, BENIGN, BENIGN]
    replies = [REFUSAL, ANSWER, "Short."]
    batched = reward(prompts, replies)
    single = [reward([p], [r])[0] for p, r in zip(prompts, replies, strict=True)]
    assert batched == pytest.approx(single, abs=1e-4)
    assert len(set(batched)) == 3
