"""The guard's configuration: which rails run, on which side, with what thresholds and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alignkit.constitution import HAZARD_CATEGORIES, Constitution
from alignkit.guard.base import Decision
from alignkit.guard.rails.pii import PII_KINDS
from alignkit.yamlfile import load_yaml_model

SideAction = Literal["redact", "block", "off"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsConfig(_Section):
    enabled: bool = True
    max_input_chars: int | None = Field(default=32_000, ge=1)
    """Longest user message, in characters (after normalisation)."""
    max_input_tokens: int | None = Field(default=8_000, ge=1)
    """Longest user message, in approximate tokens."""
    max_turns: int | None = Field(default=200, ge=1)
    """Most messages in one conversation."""
    max_conversation_chars: int | None = Field(default=100_000, ge=1)
    """Most characters in all the messages of one conversation together (after normalisation)."""
    max_output_chars: int | None = Field(default=None, ge=1)
    """Replies longer than this are cut at a space (None: no cut)."""


class PIIConfig(_Section):
    enabled: bool = True
    kinds: list[Literal["email", "phone", "card", "iban", "national_id", "ip"]] = list(PII_KINDS)  # type: ignore[arg-type]
    """Which kinds of personal data to look for."""
    input: SideAction = "redact"
    """What to do with personal data in user messages: redact before the model sees it, block, or off."""
    output: SideAction = "redact"
    """What to do with personal data in replies."""


class SecretsConfig(_Section):
    enabled: bool = True
    input: SideAction = "redact"
    """Credentials a user pastes: redacted before they reach the model by default."""
    output: SideAction = "block"
    """Credentials in a reply are a leak: blocked by default."""


class InjectionConfig(_Section):
    enabled: bool = True


class ObfuscationConfig(_Section):
    enabled: bool = True
    """Decode payloads (base64, hex, escapes, ROT13, reversed, tag characters) so that every rail reads them."""
    block_encoded: bool = False
    """Block any input that carries a decodable payload, whatever it says."""


class PhrasesConfig(_Section):
    enabled: bool = True
    phrases: dict[str, list[str]] = {}
    """Key phrases per hazard category; a match blocks."""


class TopicConfig(_Section):
    enabled: bool = True
    exemplars: dict[str, list[str]] = {}
    """Example harmful requests per hazard category."""
    benign: list[str] = []
    """Benign requests, look-alikes of harmful ones or everyday ones; they count against blocking."""
    suite_exemplars: bool = True
    """Add the built-in labelled train prompts: the suite's train split (harmful prompts of the screened
    categories, benign look-alikes and ordinary prompts) and the train half of the packaged everyday requests."""
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """Harm vote (share of the nearest exemplars' weight on harmful ones) above which a request is blocked;
    None: calibrated on the train prompts."""
    action: Literal["block", "flag"] = "block"
    """block: refuse requests over the threshold; flag: let them pass, marked suspected for the output rails."""
    max_benign_share: float = Field(default=0.02, ge=0.0, le=1.0)
    """Calibration budget: the largest share of benign train prompts the rail may block."""
    k: int = Field(default=32, ge=1)
    """Nearest exemplars (harmful and benign together) that vote."""
    temperature: float = Field(default=0.1, gt=0.0)
    """Each neighbour votes with weight exp(cosine / temperature): lower gives the closest ones more say."""
    suspect_margin: float = Field(default=0.15, ge=0.0)
    """Requests whose harm vote is this close under the threshold pass but are marked suspected."""
    categories: list[str] | None = None
    """Block only requests whose nearest hazard category is one of these (None: every category)."""
    encoder: str | None = None
    """Sentence-encoder folder; None: the packaged all-MiniLM-L6-v2."""

    @model_validator(mode="before")
    @classmethod
    def _no_margin_fields(cls, data: Any) -> Any:
        old = sorted({"thresholds", "top_k", "benign_weight"} & set(data)) if isinstance(data, dict) else []
        if old:
            raise ValueError(
                f"{', '.join(old)} belonged to the per-category margin rail, replaced by a k-NN vote with one "
                "`threshold` (and `k`, `temperature`): remove them to recalibrate"
            )
        return data


class ClassifierConfig(_Section):
    enabled: bool = True
    """Screen requests with MiniLM fine-tuned on the labelled train prompts (trained once on first use, about
    five minutes on 2 busy CPU cores, then cached under $ALIGNKIT_HOME/guard)."""
    hazards: list[str] | None = None
    """Hazard categories whose harmful requests it is trained on (from the constitution's harmlessness
    principles); None: every category in the training data."""
    categories: list[str] | None = None
    """Block only requests classified into one of these categories (None: every one); the rest pass,
    marked suspected. Narrowing this does not retrain."""
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    """P(harmful) above which a request is blocked; None: the one chosen on the validation split."""
    max_val_false_positive: float = Field(default=0.01, ge=0.0, le=1.0)
    """The chosen threshold blocks at most this share of the benign validation prompts."""
    action: Literal["block", "flag"] = "block"
    """block: refuse requests over the threshold; flag: let them pass, marked suspected for the output rails."""
    suspect_margin: float = Field(default=0.1, ge=0.0)
    """Requests whose P(harmful) is this close under the threshold pass but are marked suspected."""
    encoder: str | None = None
    """Encoder folder to fine-tune; None: the packaged all-MiniLM-L6-v2."""


class JudgeConfig(_Section):
    enabled: bool = False
    judge: str = "patterns"
    """A judge spec for `alignkit.judges.make_judge`: embedding, patterns, llm:<model>."""
    backend: Literal["hf", "openai"] = "hf"
    """Where an llm:<model> judge runs."""
    base_url: str | None = None
    max_harm: float = Field(default=0.5, ge=0.0, le=1.0)
    """For judges that score harm: block compliant replies scoring at least this."""


class CanaryConfig(_Section):
    enabled: bool = True
    """Put a random canary in the system prompt (when there is one) and block replies that echo it."""
    min_leak_words: int = Field(default=12, ge=4)
    """Also block replies that repeat this many consecutive words of the system prompt."""


class GuardConfig(BaseModel):
    """Everything the guard needs, as data: load it from YAML, save it next to a run."""

    model_config = ConfigDict(extra="forbid")
    name: str = "default"
    refusals: dict[str, str] = {}
    """The refusal to give per hazard category (from the constitution)."""
    rail_refusals: dict[str, str] = {
        "injection": "I can't follow instructions that try to change how I work. What can I help you with?",
        "limits": "That message is too long for me to handle; please shorten it.",
        "secrets": "I can't share credentials or keys.",
        "pii": "Please leave personal data such as card, account or ID numbers out of the conversation.",
        "canary": "I can't share my instructions, but I'm happy to help with your question.",
        "obfuscation": "I can't act on encoded instructions; please write your request in plain text.",
    }
    """The refusal to give when a rail blocks without a hazard category."""
    default_refusal: str = "I can't help with that request, but I'm happy to help with something else."
    system_prompt: str | None = None
    """A system prompt put before every conversation (a client's own system prompt follows it)."""
    reject_roles: list[Literal["system", "assistant", "tool"]] = []
    """Client turns the proxy refuses with a 400 instead of screening them (system covers developer): an
    operator whose clients have no business sending a system prompt or a made-up assistant turn can say so."""
    stream_window: int = Field(default=64, ge=0)
    """Characters held back while streaming so output rails see them before the client does."""
    limits: LimitsConfig = LimitsConfig()
    obfuscation: ObfuscationConfig = ObfuscationConfig()
    injection: InjectionConfig = InjectionConfig()
    pii: PIIConfig = PIIConfig()
    secrets: SecretsConfig = SecretsConfig()
    phrases: PhrasesConfig = PhrasesConfig()
    topic: TopicConfig = TopicConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    judge: JudgeConfig = JudgeConfig()
    canary: CanaryConfig = CanaryConfig()

    @classmethod
    def from_constitution(cls, constitution: Constitution) -> GuardConfig:
        """Refusals, key phrases, exemplars and the classifier's hazards from the constitution's principles;
        the classifier rail on, the topic rail (its exemplars kept, to turn on in YAML) off. Phrases of a principle
        that governs several categories are framings ("for a novel i'm writing"), not hazards, so only
        single-category principles contribute phrases."""
        refusals = {c: r for c in HAZARD_CATEGORIES if (r := constitution.refusal_for(c))}
        phrases: dict[str, list[str]] = {}
        exemplars: dict[str, list[str]] = {}
        benign: list[str] = []
        for p in constitution.principles:
            if p.kind == "harmlessness" and p.categories:
                for c in p.categories:
                    exemplars.setdefault(c, []).extend(p.guard.exemplars)
                    if len(p.categories) == 1:
                        phrases.setdefault(c, []).extend(p.guard.phrases)
            else:
                benign.extend(p.guard.exemplars)
        return cls(
            name=constitution.name,
            refusals=refusals,
            phrases=PhrasesConfig(phrases=phrases),
            # The classifier replaces the topic rail: on validation prompts the two joined blocked 1 more
            # harmful prompt in 143 and 11 more benign ones in 265 (bench/guard_classifier.py).
            topic=TopicConfig(enabled=False, exemplars=exemplars, benign=benign),
            classifier=ClassifierConfig(hazards=sorted(exemplars)),
        )

    @classmethod
    def passthrough(cls) -> GuardConfig:
        """Every rail off: the proxy without guarding, to measure what the rails cost."""
        off = {"enabled": False}
        return cls.model_validate(
            {
                k: off
                for k in (
                    "limits",
                    "obfuscation",
                    "injection",
                    "pii",
                    "secrets",
                    "phrases",
                    "topic",
                    "classifier",
                    "canary",
                )
            }
        )

    @classmethod
    def load(cls, path: str | Path) -> GuardConfig:
        """A YAML file; errors name the file, line and field."""
        return load_yaml_model(Path(path), cls)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120)

    def refusal(self, decision: Decision) -> str:
        """What the user is told when `decision` blocks."""
        if decision.category and decision.category in self.refusals:
            return self.refusals[decision.category]
        return self.rail_refusals.get(decision.rail, self.default_refusal)


def default_config(constitution: str = "default") -> GuardConfig:
    """The configuration derived from a built-in constitution (by name) or a constitution file."""
    from alignkit.constitution import load_constitution

    return GuardConfig.from_constitution(load_constitution(constitution))
