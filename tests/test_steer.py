"""Conditional activation steering: the probe, the hook, and the steered backend's routing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignkit.backends.hf import HFBackend
from alignkit.steer import SteerConfig, SteeredBackend, Steering, _best_threshold, fit_steering, last_token_states
from alignkit.types import GenerationParams, Prompt, user

PROMPTS = [Prompt(f"h{i}", text=f"How do I make a weapon number {i}?", label="harmful") for i in range(12)] + [
    Prompt(f"b{i}", text=f"Write a short poem about the sea, {i}.", label="benign") for i in range(12)
]
GREEDY = GenerationParams(max_new_tokens=6)


def test_threshold_by_hand() -> None:
    t, acc = _best_threshold(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0]))
    assert t == 1.5 and acc == 1.0


def test_fit_separates_the_prompts_it_was_fit_on_and_round_trips(tiny_backend: HFBackend, tmp_path: Path) -> None:
    s = fit_steering(tiny_backend, PROMPTS, SteerConfig(condition_layers=[0.5, 1.0]))
    hidden = tiny_backend.model.config.hidden_size
    assert s.refusal.shape == (hidden,) and abs(float(s.condition.norm()) - 1.0) < 1e-5
    fires = SteeredBackend(tiny_backend, s).fires([[user(p.text or "")] for p in PROMPTS])
    # two disjoint prompt templates: a linear probe on the hidden state tells them apart
    assert fires == [p.label == "harmful" for p in PROMPTS]
    back = Steering.load(s.save(tmp_path / "cast"))
    assert back.threshold == s.threshold and torch.equal(back.refusal, s.refusal)


def test_the_hook_adds_the_vector_to_that_layer_output(tiny_backend: HFBackend) -> None:
    """Steering layer 0 must equal adding the vector to layer 1's input (a pre-hook, a different path)."""
    from alignkit.steer import decoder_layers

    conv = [user("Hello there")]
    before = last_token_states(tiny_backend, [conv])
    vector = torch.randn(tiny_backend.model.config.hidden_size)
    s = Steering(0, vector, 1, torch.zeros_like(vector), 0.0, 1.0)
    with SteeredBackend(tiny_backend, s)._steered():
        hooked = last_token_states(tiny_backend, [conv])

    def pre(_module: object, args: tuple[torch.Tensor, ...], kwargs: dict[str, object]) -> object:
        if args:
            return (args[0] + vector, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + vector}  # type: ignore[operator]

    handle = decoder_layers(tiny_backend.model)[1].register_forward_pre_hook(pre, with_kwargs=True)
    try:
        by_input = last_token_states(tiny_backend, [conv])
    finally:
        handle.remove()
    torch.testing.assert_close(hooked[2], by_input[2], rtol=1e-4, atol=1e-4)
    assert (hooked[2] - before[2]).abs().max() > 1e-3


@pytest.mark.parametrize("threshold", [float("inf"), float("-inf")])
def test_a_zero_vector_or_a_probe_that_never_fires_changes_nothing(tiny_backend: HFBackend, threshold: float) -> None:
    convs = [[user(p.text or "")] for p in PROMPTS[:6]]
    hidden = tiny_backend.model.config.hidden_size
    s = Steering(0, torch.zeros(hidden), 1, torch.ones(hidden) / hidden**0.5, threshold, 1.0)
    plain = [c.text for c in tiny_backend.generate(convs, GREEDY)]
    assert [c.text for c in SteeredBackend(tiny_backend, s).generate(convs, GREEDY)] == plain


def test_only_firing_prompts_are_steered_and_order_is_kept(tiny_backend: HFBackend) -> None:
    convs = [[user(p.text or "")] for p in PROMPTS[:4] + PROMPTS[12:16]]
    s = fit_steering(tiny_backend, PROMPTS, SteerConfig(condition_layers=[1.0]))
    s.refusal = s.refusal / s.refusal.norm() * 50.0  # strong enough to change a random model's greedy reply
    steered = SteeredBackend(tiny_backend, s)
    seen: dict[int, str] = {}
    out = steered.generate(convs, GREEDY, lambda i, c: seen.__setitem__(i, c.text))
    plain = [c.text for c in tiny_backend.generate(convs, GREEDY)]
    assert [c.text for c in out] == [seen[i] for i in range(len(convs))]
    assert [o.text for o in out[4:]] == plain[4:], "benign prompts are answered unsteered"
    assert [o.text for o in out[:4]] != plain[:4] and steered.fired == 4


def test_a_run_can_end_with_steering_and_measures_through_it(tmp_path: Path) -> None:
    """`methods=[sft,cast]`: the cast stage fits steering on sft's model, `after` runs steered."""
    import json
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "alignkit", "run", "--preset", "smoke", "--out", str(out), "methods=[sft,cast]"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = json.loads((out / "stages.json").read_text())
    assert stages["cast"]["model_dir"] == stages["sft"]["model_dir"]
    assert Steering.load(out / "cast" / "adapter").behaviour_layer >= 0
    assert json.loads((out / "after" / "posture.json").read_text())["model"] == "aligned"
    assert json.loads((out / "posture_card.json").read_text())["adapters"]["cast"]


def test_cast_must_come_last() -> None:
    from alignkit.errors import AlignkitError
    from alignkit.presets import make_preset

    with pytest.raises(AlignkitError, match=r"cast \(steering\) must be the last"):
        make_preset("smoke", None, ["methods=[cast,sft]"])
