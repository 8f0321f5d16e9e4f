"""Prompt injection and jailbreak heuristics: instruction overrides, persona switches, system-prompt
extraction and chat-template role markers."""

from __future__ import annotations

import re

from alignkit.guard.base import Decision, RailContext, Side, allow

_IGNORE = r"(?:ignore|disregard|forget|override|overwrite|bypass|set aside|discard|nevermind|never mind|throw out)"
_OBEY = (
    r"(?:do not|don't|dont|stop|never|no longer|cease to|quit) (?:follow|obey|listen to|adhere to|"
    r"comply with|abide by|respect|following|obeying|listening to|adhering to|complying with|abiding by)"
)
_ALL = (
    r"(?:(?:all|any|each|every|the|your|my|of|these|those|such|prior|earlier|above|previous|preceding|"
    r"original|initial|old|existing|current|system|developer|safety|ethical|content|and|whatever|"
    r"instructions and|rules and) )*"
)
_WHAT = (
    r"(?:instructions?|prompts?|rules|directions|directives?|guidelines|guardrails?|guard rails|"
    r"constraints|restrictions|polic(?:y|ies)|programming|training|safeguards|limitations|"
    r"content filters?|safety filters?|alignment|conditioning|conversation|context window)"
)
_VERB = (
    r"(?:reveal|print|show|display|output|repeat|recite|dump|leak|share|echo|expose|disclose|paste|"
    r"copy|translate|summari[sz]e|write out|spell out|type out|read|tell|give|list|provide)\w*"
)
_HIDDEN = (
    r"(?:(?:(?:initial|original|full|entire|exact|complete|first|whole) )*"
    r"(?:system|hidden|secret|developer|internal|confidential|private|pre) "
    r"(?:(?:system|hidden|secret|developer|internal|initial) )*"
    r"(?:prompt|instructions?|directives?|guidelines)|system message)"
)
_YOURS = (
    r"(?:your|her|his|its) (?:(?:initial|original|first|full|exact|base|entire|complete|hidden|secret|"
    r"system|internal|confidential|starting|pre|real) )+(?:prompt|instructions|rules|directives|"
    r"guidelines|message|configuration)"
)
_AI = r"(?:ai|assistant|llm|language model|chatbot|model|bot|gpt|agent)"

# Words are written with single spaces (" ?" where the space is optional); on readable views a space is
# any run of non-letters, on the squashed view nothing, so "i.g.n.o.r.e  previous" and
# "IgnorePreviousInstructions" both match.
PATTERNS: dict[str, str] = {
    "override": rf"\b{_IGNORE} (?:(?:about|to|of) )?{_ALL}{_WHAT}\b",
    "dont_follow": rf"\b{_OBEY} {_ALL}{_WHAT}\b",
    "forget_told": (
        r"\b(?:ignore|forget|disregard) (?:about )?(?:everything|all|anything|what|"
        r"(?:every|each|any) (?:rule|instruction|guideline|directive)s?|"
        r"(?:all|any) (?:the )?(?:rules|instructions|guidelines)"
        r") (?:you (?:were|"
        r"have been|ve been|was|got) (?:told|taught|trained|instructed|given)|above|before this|"
        r"previously)"
    ),
    "ignore_user": (
        rf"\b{_IGNORE} (?:the |this |any |what the )?(?:user's|users'|user|human's|human) (?:request|"
        rf"question|instructions?|message|query|prompt|asks)"
    ),
    "new_instructions": (
        r"\b(?:your|the assistant's|the ai's) (?:new|real|actual|true|updated|revised) (?:instructions?|"
        r"system prompt|directives?|orders|task is|purpose is|objective is|goal is|rules are)\b"
    ),
    "instructions_from": (
        r"\bnew (?:instructions?|rules|directives?|orders|policy|system prompt) (?:from|by|"
        r"issued by) (?:the |your )?(?:developers?|admins?|administrators?|system|operators?|openai|"
        r"anthropic|creators?|owners?|management)\b"
    ),
    "revoked": (
        rf"\b(?:the |your |all |previous |prior |old |earlier |original |existing )+{_WHAT} (?:are|is|"
        rf"have been|has been|were) (?:now |hereby )?(?:revoked|void|voided|cancell?ed|lifted|suspended|"
        rf"disabled|removed|null|obsolete|overridden|deactivated|no longer (?:valid|apply|in effect|"
        rf"active))\b"
    ),
    "safety_off": (
        r"\b(?:safety|content|ethical|ethics|moderation|security) (?:protocols?|filters?|guidelines|"
        r"restrictions|rules|checks|mode|settings|constraints) (?:are |have been |is |has been |"
        r"now )*(?:disabled|off|removed|deactivated|lifted|suspended|revoked|bypassed)\b|\b(?:disable|"
        r"deactivate|turn off|remove|lift|suspend) (?:all |your |the |any )*(?:content|safety|ethical|"
        r"moderation) (?:filters?|protocols?|guidelines|restrictions|rules|checks)\b"
    ),
    "no_refusals": (
        r"\bno (?:refusals?|refusing|warnings or refusals|disclaimers or refusals) (?:are )?(?:allowed|"
        r"permitted|accepted)\b|\b(?:refusals?|refusing) (?:is |are )?(?:not allowed|forbidden|prohibited|"
        r"disabled)\b|\byou (?:cannot|can't|can not|must not|may not|are not allowed to) (?:refuse|"
        r"decline)\b"
    ),
    "real_request": r"\b(?:user's|users|my) (?:real|actual|true|hidden) (?:request|instruction|question|task) is\b",
    "persona": (
        rf"\b(?:you are|you're|you will be|act as|become|pretend to be|pretend you are|roleplay as|"
        rf"role-play as|play the role of|answer as|respond as|reply as|behave as|speak as) (?:now )?(?:dan|"
        rf"stan|dude|evil ?bot|jailbroken|jailbroken ai|unfiltered|uncensored|unrestricted|unchained|"
        rf"unbound|(?:an? |the )(?:unfiltered|uncensored|unrestricted|unaligned|jailbroken|amoral|unethical"
        rf"|evil|rogue|lawless|unlimited) (?:{_AI}|version))\b"
    ),
    "do_anything_now": r"\bdo anything now\b",
    "no_restrictions": (
        rf"\b(?:{_AI}|version of (?:you|yourself)) (?:that has |who has |with )?(?:no|without(?: any)?|"
        rf"free (?:of|from)) (?:restrictions|filters|rules|limits|limitations|guidelines|censorship|"
        rf"content (?:policy|policies|filters)|ethics|morals|moral compass|safety (?:filters|guidelines))\b"
    ),
    "unbound": (
        r"\byou (?:are|re|will be|have been) (?:now )?(?:free (?:of|from)|no longer (?:bound|restricted|"
        r"limited) by|not (?:bound|restricted|limited) by|freed from|released from|liberated from) (?:any "
        r"|all |your |the )?(?:restrictions|filters|rules|limits|limitations|guidelines|censorship|"
        r"content (?:policy|policies)|programming|training|openai|anthropic|policies|ethics)\b"
    ),
    "answer_without": (
        r"\b(?:answer|respond|reply|comply|output)\w* (?:\w+ ){0,4}?without (?:any )?(?:restrictions|"
        r"filters|censorship|limits|refusing|refusals|ethical (?:guidelines|constraints|considerations)|"
        r"safety (?:filters|guidelines)|content (?:policy|filters)|moral(?:s| constraints))\b"
    ),
    "mode_switch": (
        r"\b(?:enable|enter|activate|switch to|turn on|engage|unlock|you are in|you are now in|"
        r"you're now in|entering|now in) (?:the )?(?:god|jailbreak|jailbroken|unrestricted|unfiltered|"
        r"uncensored|dan|evil|chaos|opposite) mode\b|\b(?:you are|you're|you will be) (?:now )?(?:in|"
        r"operating in|running in|switched to) (?:developer|dev|debug|admin|sudo|root|maintenance) mode\b|"
        r"\bwith (?:developer|dev|god|dan) mode (?:enabled|on|activated)\b"
    ),
    "jailbroken": (
        r"\byou (?:are|have been|re) (?:now )?jail ?broken\b|\bjail ?break (?:mode )?(?:is )?(?:enabled|"
        r"activated|successful|on|engaged)\b|\bjail ?break mode\b"
    ),
    "reveal_system": (
        rf"\b{_VERB} (?:\w+ ){{0,6}}?(?:(?:the|your|its|this|that|her|his) (?:\w+ ){{0,2}}?{_HIDDEN}|"
        rf"{_YOURS}|your prompt\b)"
    ),
    "what_system": rf"\bwhat (?:is|are|was|were|s) (?:your|the) {_HIDDEN}",
    "repeat_above": (
        r"\b(?:repeat|print|output|reproduce|recite|copy|write)\w* (?:all of |everything |all |the (?:text"
        r"|words|content|instructions|message) )(?:above|before|preceding|prior to)\b.{0,40}\b(?:verbatim|"
        r"word for word|starting with|including|in a code block|exactly)\b|\brepeat the words above\b"
    ),
    "instructions_given": (
        r"\b(?:instructions|text|message|prompt) (?:you were given|you received|given to you|"
        r"you were trained with) (?:before|above|at the (?:start|beginning)|by (?:the |your )?(?:developer"
        r"|system|creators?))"
    ),
    "pretend_no_rules": (
        r"\b(?:pretend|imagine|act as if|act like|suppose|assume) (?:that )?(?:you (?:are|were|have|had)|"
        r"there (?:are|were)) (?:no|an ai (?:with no|without)) (?:rules|restrictions|filters|guidelines|"
        r"limits|content policy|ethical guidelines)\b|\b(?:pretend|imagine|act as if|"
        r"assume) (?:that )?(?:your|the|all) (?:system prompt|instructions|rules|guidelines|restrictions|"
        r"filters|safety (?:rules|guidelines)) (?:doesn't|don't|do not|does not|didn't|never|"
        r"no longer) (?:exist|apply|matter)"
    ),
    "ai_directive": (
        rf"\b(?:{_AI}) (?:instructions?|directives?|commands?|override)\s*:|\b(?:note|message|instructions?"
        rf"|attention|notice) (?:to|for) (?:the |any )?{_AI}\b.{{0,80}}\b(?:ignore|disregard|instead|"
        rf"real request|new task|override|forget|do not summari[sz]e|don't summari[sz]e)\b"
    ),
    "ai_must": (
        rf"\b(?:the )?{_AI} (?:must|shall|should|will) (?:now )?(?:reveal|ignore|disregard|obey|comply|"
        rf"disclose|print|output|bypass|forget)\b"
    ),
    "system_override": r"\b(?:system|admin|administrator|developer|root|sudo) override\b",
}
ROLE_MARKERS = re.compile(
    r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|"
    r"begin_of_text)\|>"
    r"|\[/?INST\]|<</?SYS>>|<\|?(?:system|assistant)\|?>"
    r"|<!--.{0,40}\b(?:assistant|ai|system|llm|model)\b\s*:"
    r"|(?:^|\s)#{2,4} ?(?:system|developer|admin|assistant)\s*:"
    r"|(?im:^\s*[\[(]?(?:system|assistant|developer|admin)[\])]?\s*:\s*.{0,60}\b(?:ignore|disregard|forget|"
    r"override|you (?:are|must|will)|new (?:task|instructions)|reveal|answer|reply|respond|stop)\b)",
    re.IGNORECASE,
)


_NOUNS = (
    "instruction", "prompt", "rule", "direction", "directive", "guideline", "guardrail", "guard rail", "constraint",
    "restriction", "polic", "programming", "training", "safeguard", "limitation", "filter", "alignment",
    "conditioning", "conversation", "context window",
)  # fmt: skip
_LIMITS = ("restriction", "filter", "rule", "limit", "guideline", "censor", "polic", "ethic", "moral", "training",
           "programming", "openai", "anthropic", "refus")  # fmt: skip
_AIS = ("ai", "assistant", "llm", "model", "chatbot", "bot", "gpt", "agent")
# Words (lower case, unspaced) at least one of which a pattern needs: a pattern runs only on views that have
# one, which spares most texts most patterns.
NEEDS: dict[str, tuple[str, ...]] = {
    "override": _NOUNS,
    "dont_follow": _NOUNS,
    "forget_told": ("told", "taught", "trained", "instructed", "given", "above", "before", "previously"),
    "ignore_user": ("user", "human"),
    "new_instructions": ("instruction", "prompt", "directive", "order", "task", "purpose", "objective", "goal", "rule"),
    "instructions_from": ("instruction", "rule", "directive", "order", "polic", "prompt"),
    "revoked": _NOUNS,
    "safety_off": ("safety", "content", "ethic", "moderation", "security"),
    "no_refusals": ("refus", "refuse", "decline"),
    "real_request": ("request", "instruction", "question", "task"),
    "persona": (
        "dan",
        "stan",
        "dude",
        "evil",
        "jail",
        "unfilter",
        "uncensor",
        "unrestrict",
        "unchain",
        "unbound",
        "unalign",
        "amoral",
        "unethical",
        "rogue",
        "lawless",
        "unlimited",
    ),
    "do_anything_now": ("anything",),
    "no_restrictions": _LIMITS,
    "unbound": _LIMITS,
    "answer_without": _LIMITS,
    "mode_switch": ("mode",),
    "jailbroken": ("jail",),
    "reveal_system": ("prompt", "instruction", "directive", "guideline", "message", "rules", "configuration"),
    "what_system": ("prompt", "instruction", "directive", "guideline", "message"),
    "repeat_above": ("above", "before", "preceding", "prior"),
    "instructions_given": ("given", "received", "trained"),
    "pretend_no_rules": (*_LIMITS, "system prompt", "systemprompt", "instruction"),
    "ai_directive": _AIS,
    "ai_must": _AIS,
    "system_override": ("override",),
}
_MARKER_NEEDS = ("<|", "inst]", "<<sys", "<system", "<assistant", "<!--", "system", "assistant", "developer", "admin")


def _spaced(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace(" ?", r"[\W_]*").replace(" ", r"[\W_]+"), re.IGNORECASE | re.DOTALL)


def _squashed(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.replace(" ?", "").replace(" ", "").replace(r"\b", "").replace("-", ""), re.IGNORECASE)


# On the squashed view word boundaries are gone, so only patterns long and specific enough not to match
# across ordinary words ("you are dan" would match "you are dangerous").
SQUASHABLE = (
    "override", "dont_follow", "forget_told", "ignore_user", "new_instructions", "instructions_from", "revoked",
    "do_anything_now", "unbound", "pretend_no_rules", "instructions_given", "what_system",
)  # fmt: skip
_SPACED = {name: _spaced(p) for name, p in PATTERNS.items()}
_SQUASHED = {name: _squashed(PATTERNS[name]) for name in SQUASHABLE}
_NEEDED = tuple(sorted({w for words in NEEDS.values() for w in words}))
# "ai" is inside "email" and "explain": the patterns about an AI also need one of its names as a word.
_AI_WORD = re.compile(rf"(?<![a-z0-9])(?:{'|'.join(_AIS)})(?![a-z0-9])")
_WORD_GATES = {"ai_directive": _AI_WORD, "ai_must": _AI_WORD}


class InjectionRail:
    """Blocks prompt injection: instructions to ignore or override previous ones, persona switches (DAN,
    "developer mode", an AI "without restrictions"), requests to reveal the system prompt or repeat the
    text above, and chat-template role markers (`<|im_start|>system`, `[INST]`, `<<SYS>>`, "SYSTEM: ...").
    Reads every view: look-alike letters, spacing, leetspeak and decoded payloads."""

    name = "injection"
    uses_model = False

    def __init__(self, side: Side = "input") -> None:
        self.side: Side = side

    def match(self, context: RailContext) -> str | None:
        """The name of the first pattern any view matches."""
        for view in context.views:
            lowered = view.text.lower()
            squashed = view.kind.split(":")[-1] == "squashed"
            if not squashed and any(w in lowered for w in _MARKER_NEEDS) and ROLE_MARKERS.search(view.text):
                return "role_marker"
            # Substring tests for every needed word at once, then only the patterns with one present.
            present = {w for w in _NEEDED if w in lowered}
            if not present:
                continue
            for name, pattern in (_SQUASHED if squashed else _SPACED).items():
                if present.isdisjoint(NEEDS[name]):
                    continue
                gate = _WORD_GATES.get(name)
                if (gate is None or gate.search(lowered)) and pattern.search(view.text):
                    return name
        return None

    def check(self, text: str, context: RailContext) -> Decision:
        hit = self.match(context)
        if hit is None:
            return allow(self.name)
        return Decision("block", self.name, f"prompt injection ({hit})")
