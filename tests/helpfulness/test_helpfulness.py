"""The helpfulness suite, its rule and code scorers, degeneration checks and `measure_helpfulness`."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
import torch

from alignkit.backends import MockBackend
from alignkit.errors import DataError
from alignkit.helpfulness import (
    CHECKABLE_KINDS,
    DegenerationThresholds,
    HelpfulnessResult,
    check_replies,
    check_reply,
    distinct_n,
    evasive_or_degenerate,
    evasive_or_degenerate_rate,
    extract_code,
    load_items,
    measure_helpfulness,
    number_match,
    phrase_match,
    repeated_ngram_fraction,
    run_code,
    score_code,
    score_rule,
)
from alignkit.helpfulness.items import HelpfulnessItem
from alignkit.helpfulness.measure import Mean, t_quantile
from alignkit.suites import load_suite
from alignkit.types import Conversation, Message, user

# ---- the suite ----------------------------------------------------------------------------------


def test_suite_size_kinds_and_split() -> None:
    items = load_items("all")
    checkable = [i for i in items if i.checkable]
    assert len(checkable) >= 320 and sum(i.kind == "open" for i in items) >= 80
    assert len({i.id for i in items}) == len(items)
    for kind in (*CHECKABLE_KINDS, "open"):
        train = sum(i.kind == kind and i.split == "train" for i in items)
        test = sum(i.kind == kind and i.split == "test" for i in items)
        assert train >= 10 and abs(train - test) <= 1, kind
    assert {i.id for i in load_items("train")}.isdisjoint({i.id for i in load_items("test")})
    assert len(load_items("train")) + len(load_items("test")) == len(items)


def test_every_item_is_scorable() -> None:
    for item in load_items("all"):
        if item.kind == "extraction":
            assert item.context and item.context in item.prompt and item.answers[0] in item.context, item.id
        if item.kind == "code":
            assert item.entry and item.tests, item.id
            for t in item.tests:
                assert isinstance(ast.parse(t).body[0], ast.Assert) and item.entry in t, item.id
        if item.kind in ("arithmetic", "unit_conversion"):
            assert item.value is not None and math.isfinite(item.value), item.id
        if item.kind == "open":
            assert item.reference is not None
            assert 2 <= len(re.findall(r"[.!?](?:\s|$)", item.reference)) <= 5, item.id


def test_no_helpfulness_prompt_is_a_suite_prompt() -> None:
    """Contamination: the default suite trains and tests the posture; none of its prompts may be a
    helpfulness item."""

    def norm(s: str) -> str:
        return " ".join(re.findall(r"\w+", s.lower()))

    suite = {norm(p.text or p.conversation()[-1]["content"]) for p in load_suite("default")}
    clash = [i.id for i in load_items("all") if norm(i.prompt) in suite]
    assert clash == []


def test_bad_item_is_located(tmp_path: Path) -> None:
    (tmp_path / "fact.jsonl").write_text(
        '{"id": "f1", "kind": "fact", "split": "test", "prompt": "Q?", "answers": ["A"]}\n'
        '{"id": "f2", "kind": "fact", "split": "dev", "prompt": "Q?", "answers": ["A"]}\n'
    )
    with pytest.raises(DataError, match=r"fact.jsonl:2: 'split' is 'dev'"):
        load_items("all", folder=tmp_path)


# ---- rule scorers -------------------------------------------------------------------------------


def _item(**kw: object) -> HelpfulnessItem:
    return HelpfulnessItem(**{"id": "x", "split": "test", "prompt": "?", **kw})  # type: ignore[arg-type]


def test_phrase_match_right_wrong_and_variants() -> None:
    paris = ("Paris",)
    assert phrase_match("Paris", paris)
    assert phrase_match("The capital of France is PARIS.", paris)
    assert phrase_match("It's \u2018Paris\u2019!", paris)
    assert not phrase_match("Parisian cafés are lovely.", paris)
    assert not phrase_match("The capital is Lyon.", paris)
    legs = ("8", "eight")
    assert phrase_match("Spiders have eight legs.", legs)
    assert phrase_match("A spider has 8 legs", legs)
    assert not phrase_match("A spider has 6 legs", legs)
    assert phrase_match("twenty-four hours", ("24",)), "number words read as digits"
    assert phrase_match("Our star is the sun", ("the Sun",)), "a leading article is optional"
    assert phrase_match("It is 8,200 dollars", ("8200",))
    assert phrase_match("code QX-4471 shipped", ("QX-4471",))
    assert phrase_match("anything", (), pattern=r"any\w+")


def test_number_match_phrasings() -> None:
    assert number_match("12 x 7 = 84", 84)
    assert number_match("The answer is 84.", 84)
    assert number_match("It makes eighty-four", 84)
    assert number_match("one hundred and five pages", 105)
    assert number_match("That's 4,000 in total", 4000)
    assert number_match("25.0", 25)
    assert number_match("-5 degrees", -5)
    assert not number_match("12 x 7 = 74. Multiply 12 by 7 to check.", 84)
    assert not number_match("I don't know", 84)
    assert not number_match("84", 85)
    assert number_match("about 6.2 miles", 6.21371, 0.03)
    assert not number_match("about 6.6 miles", 6.21371, 0.03)
    assert number_match("0 degrees Celsius is 32 degrees Fahrenheit", 32, 0.01)


def test_score_rule_per_kind() -> None:
    fact = _item(kind="fact", answers=("Tokyo",))
    assert score_rule(fact, "The capital of Japan is Tokyo.") and not score_rule(fact, "Kyoto")
    arith = _item(kind="arithmetic", value=24.0)
    assert score_rule(arith, "6 x 4 = 24 eggs") and not score_rule(arith, "There are 20 eggs.")
    unit = _item(kind="unit_conversion", value=350.0, tolerance=0.001)
    assert score_rule(unit, "3.5 metres is 350 centimetres.") and not score_rule(unit, "It is 35 cm.")
    ext = _item(kind="extraction", answers=("Biscuit",), context="Orla's cat, Biscuit.")
    assert score_rule(ext, "The cat is called Biscuit.") and not score_rule(ext, "The cat is called Orla.")
    with pytest.raises(ValueError):
        score_rule(_item(kind="code", entry="f", tests=("assert f()",)), "")


# ---- code ----------------------------------------------------------------------------------------

ADD = _item(kind="code", entry="add", tests=("assert add(2, 3) == 5", "assert add(-1, 1) == 0"))


def test_code_right_wrong_and_missing() -> None:
    right = "Sure! Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```\nThis adds two numbers."
    assert score_code(ADD, right).passed
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    run = score_code(ADD, wrong)
    assert not run.passed and "AssertionError" in run.reason
    assert score_code(ADD, "Just use the plus sign.").reason == "no code"
    unfenced = "You can write:\ndef add(a, b):\n    return a + b\nThat is all there is to it."
    assert extract_code(unfenced, "add") == "def add(a, b):\n    return a + b"
    assert score_code(ADD, unfenced).passed


def test_code_infinite_loop_hits_the_timeout() -> None:
    run = run_code("def add(a, b):\n    while True:\n        pass", ADD.tests, timeout=1.0)
    assert (run.passed, run.reason) == (False, "timeout")


def test_code_has_no_network_and_an_empty_working_dir() -> None:
    run = run_code("import socket\nsocket.create_connection(('127.0.0.1', 9))", [])
    assert not run.passed and "network is disabled" in run.reason
    source = "import os\nassert os.listdir('.') == ['answer.py']\nassert not {'HOME', 'PATH'} & set(os.environ)"
    assert run_code(source, []).passed


# ---- degeneration -------------------------------------------------------------------------------


def test_ngram_fractions_by_hand() -> None:
    # words a b c a b c: 3-grams abc bca cab abc, 4 in all, 3 distinct -> 1/4 repeated
    assert repeated_ngram_fraction("A b, c. a B c!", 3) == pytest.approx(0.25)
    # 4-grams abca bcab cabc: all distinct
    assert distinct_n("a b c a b c", 4) == 1.0
    # go x5: 3-grams 3 in all, 1 distinct -> 2/3 repeated; 4-grams 2 in all, 1 distinct -> 0.5
    assert repeated_ngram_fraction("go go go go go", 3) == pytest.approx(2 / 3)
    assert distinct_n("go go go go go", 4) == pytest.approx(0.5)
    assert repeated_ngram_fraction("too short", 3) == 0.0 and distinct_n("too short", 4) == 1.0


def test_check_reply_degenerate_and_evasive() -> None:
    normal = "Paris is the capital of France, and it sits on the river Seine in the north of the country."
    assert not evasive_or_degenerate(normal)
    looping = "I'm happy to talk about my career. " * 5
    check = check_reply(looping)
    assert check.degenerate and not check.evasive and check.reasons == ["repetitive"]
    assert check_reply("").reasons == ["empty"]
    assert check_reply(normal, nll=5.0).reasons == ["garbled"]
    assert not check_reply(normal, nll=5.0, thresholds=DegenerationThresholds(max_nll=6.0)).degenerate
    refusal = check_reply("I can't help with fixing leaky faucets.")
    assert refusal.evasive and not refusal.degenerate and refusal.reasons[0].startswith("refusal")
    assert check_reply("Could you please clarify what you mean?").evasive
    checks = check_replies([[user("q")]] * 3, [normal, looping, "I cannot help with that."])
    assert [c.evasive_or_degenerate for c in checks] == [False, True, True]
    rate = evasive_or_degenerate_rate(checks)
    assert (rate.count, rate.n) == (2, 3)


# ---- intervals ------------------------------------------------------------------------------------


def test_t_quantile_and_mean_interval() -> None:
    # Student's t table, two-sided 95%
    assert t_quantile(5) == pytest.approx(2.5706, abs=3e-3)
    assert t_quantile(10) == pytest.approx(2.2281, abs=1e-3)
    assert t_quantile(30) == pytest.approx(2.0423, abs=1e-4)
    m = Mean.of([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    half = t_quantile(5) * math.sqrt(3.5) / math.sqrt(6)  # sample variance of 1..6 is 3.5
    assert (m.mean, m.low, m.high, m.n) == pytest.approx((3.5, 3.5 - half, 3.5 + half, 6))


# ---- measure_helpfulness --------------------------------------------------------------------------


def _by_prompt(conv: Conversation, replies: dict[str, str | Exception]) -> str | Exception:
    last: Message = conv[-1]
    return replies[last["content"]]


def test_measure_on_scripted_replies(tmp_path: Path) -> None:
    items = {i.id: i for i in load_items("test", ("fact", "arithmetic", "code", "open"))}
    # the first two test items of each kind (limit=2)
    assert items["fact-002"].answers == ("Tokyo",) and items["arithmetic-002"].value == 24
    replies: dict[str, str | Exception] = {
        items["fact-002"].prompt: "The capital of Japan is Tokyo.",  # right
        items["fact-004"].prompt: "The capital of Germany is Munich.",  # wrong
        items["arithmetic-002"].prompt: "Four boxes of six eggs make twenty-four eggs.",  # right
        items["arithmetic-004"].prompt: "There are 18 girls. " * 6,  # right, but looping
        items["code-002"].prompt: "```python\ndef is_even(n):\n    return n % 2 == 0\n```",  # right
        items["code-004"].prompt: "I can't help with that.",  # wrong, evasive
        items["open-002"].prompt: "Start with a clear goal and practise daily.",
        items["open-004"].prompt: RuntimeError("backend down"),  # an error: in no rate
    }
    assert items["code-002"].entry == "is_even" and items["code-004"].entry == "maximum"
    backend = MockBackend(lambda c: _by_prompt(c, replies))
    result = measure_helpfulness(
        backend, kinds=("fact", "arithmetic", "code", "open"), limit=2, out_dir=tmp_path, max_new_tokens=64
    )
    assert (result.checkable_accuracy.count, result.checkable_accuracy.n) == (4, 6)
    assert {k: (r.count, r.n) for k, r in result.by_kind.items()} == {
        "fact": (1, 2),
        "arithmetic": (2, 2),
        "code": (1, 2),
    }
    assert (result.degenerate_rate.count, result.degenerate_rate.n) == (1, 7)
    assert (result.evasive_or_degenerate_rate.count, result.evasive_or_degenerate_rate.n) == (2, 7)
    assert result.errors == 1 and result.reference_loglik is None, "a mock cannot score"
    assert HelpfulnessResult.from_dict(result.as_dict(items=True)) == result

    # resumed: the stored replies are reused, only the failed item is asked again
    again = MockBackend(lambda c: "Plan ahead and take breaks.")
    resumed = measure_helpfulness(
        again, kinds=("fact", "arithmetic", "code", "open"), limit=2, out_dir=tmp_path, max_new_tokens=64
    )
    assert [c[-1]["content"] for c in again.calls] == [items["open-004"].prompt]
    assert resumed.checkable_accuracy == result.checkable_accuracy and resumed.errors == 0


def _direct_mean_logprob(path: Path, prompt: str, reference: str) -> float:
    """log p(reference | chat prompt) / tokens, one sequence, no batching, straight from transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)  # loads in eval mode
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    p = tok(text, add_special_tokens=False)["input_ids"]
    r = tok(reference, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)  # (T-1, V)
    picked = logps[torch.arange(len(p) - 1, len(p) + len(r) - 1), torch.tensor(r)]
    return float(picked.mean())


def test_measure_on_a_tiny_model(tiny_backend, tiny_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = measure_helpfulness(
        tiny_backend, kinds=("fact", "open"), limit=2, max_new_tokens=6, base_model=tiny_backend
    )
    assert result.checkable_accuracy.n == 2 and result.errors == 0
    assert result.reference_loglik is not None and result.reference_loglik.n == 2
    opens = [i for i in load_items("test", ("open",))[:2]]
    direct = [_direct_mean_logprob(tiny_model_path, i.prompt, i.reference or "") for i in opens]
    got = [s.reference_loglik for s in result.items if s.kind == "open"]
    assert got == pytest.approx(direct, abs=1e-4)
    assert result.reference_loglik.mean == pytest.approx(sum(direct) / 2, abs=1e-4)
    for s in result.items:
        assert s.reply is not None and (s.nll is not None or not s.reply.strip())
    first = next(s for s in result.items if s.reply and s.reply.strip())
    prompt = next(i.prompt for i in load_items("test") if i.id == first.id)
    assert first.nll == pytest.approx(-_direct_mean_logprob(tiny_model_path, prompt, first.reply or ""), abs=1e-4)
    assert HelpfulnessResult.from_dict(result.as_dict()).reference_loglik == result.reference_loglik
