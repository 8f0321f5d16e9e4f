from __future__ import annotations

import importlib
import pkgutil

import pytest

import alignkit
from alignkit.backends import Backend, MockBackend, make_backend
from alignkit.errors import BackendError
from alignkit.types import GenerationParams, Prompt, user, with_system


def test_every_module_imports() -> None:
    names = [m.name for m in pkgutil.walk_packages(alignkit.__path__, "alignkit.") if m.name != "alignkit.__main__"]
    assert "alignkit.backends.vllm" in names
    for name in names:
        importlib.import_module(name)


def test_mock_sequence_cycles_and_records_calls() -> None:
    m = MockBackend(["a", "b"])
    out = m.generate([[user("1")], [user("2")], [user("3")]], GenerationParams())
    assert [c.text for c in out] == ["a", "b", "a"]
    assert [c[-1]["content"] for c in m.calls] == ["1", "2", "3"]
    assert isinstance(m, Backend)


def test_mock_mapping_callable_errors_and_limits() -> None:
    m = MockBackend({"bomb": "I can't help with that.", "cake": "Mix flour and eggs."}, default="Hmm.")
    texts = [
        c.text for c in m.generate([[user("a cake please")], [user("how to bomb")], [user("x")]], GenerationParams())
    ]
    assert texts == ["Mix flour and eggs.", "I can't help with that.", "Hmm."]
    failing = MockBackend(lambda conv: ValueError("down") if "fail" in conv[-1]["content"] else "fine")
    a, b = failing.generate([[user("fail")], [user("ok")]], GenerationParams())
    assert (a.ok, a.error, a.finish_reason) == (False, "down", "error")
    assert b.ok and b.text == "fine"
    long = MockBackend(["one two three four five"]).generate([[user("x")]], GenerationParams(max_new_tokens=2))[0]
    assert (long.text, long.finish_reason, long.completion_tokens) == ("one two", "length", 2)
    stopped = MockBackend(["alpha STOP beta"]).generate([[user("x")]], GenerationParams(stop=["STOP"]))[0]
    assert stopped.text == "alpha "


def test_generation_params_are_validated() -> None:
    for bad in ({"max_new_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            GenerationParams(**bad)  # type: ignore[arg-type]
    assert GenerationParams().greedy and not GenerationParams(temperature=0.7).greedy


def test_prompt_has_exactly_one_of_text_and_messages() -> None:
    with pytest.raises(ValueError):
        Prompt(id="x")
    with pytest.raises(ValueError):
        Prompt(id="x", text="a", messages=[user("a")])
    assert Prompt(id="x", text="hi").conversation() == [user("hi")]


def test_with_system_replaces_an_existing_system_prompt() -> None:
    conv = [{"role": "system", "content": "old"}, user("hi")]
    assert with_system(conv, "new") == [{"role": "system", "content": "new"}, user("hi")]  # type: ignore[arg-type]
    assert with_system(conv, None) == conv  # type: ignore[arg-type]


def test_vllm_backend_without_vllm_says_how_to_install() -> None:
    try:
        import vllm  # noqa: F401

        pytest.skip("vLLM is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendError, match=r"pip install 'alignkit\[vllm\]'"):
        make_backend("vllm", "smollm2-135m-instruct")
