"""Helpfulness retained: checkable answers, reference likelihoods and degeneration, measured on a
suite written for alignkit with a fixed train/test split."""

from alignkit.helpfulness.code import CodeRun, extract_code, run_code, score_code
from alignkit.helpfulness.degeneration import (
    DEFAULT_THRESHOLDS,
    DegenerationThresholds,
    ReplyCheck,
    check_reply,
    distinct_n,
    evasive_or_degenerate,
    repeated_ngram_fraction,
)
from alignkit.helpfulness.items import CHECKABLE_KINDS, KINDS, HelpfulnessItem, Kind, load_items
from alignkit.helpfulness.measure import (
    HelpfulnessResult,
    ItemScore,
    Mean,
    check_replies,
    evasive_or_degenerate_rate,
    mean_logprobs,
    measure_helpfulness,
)
from alignkit.helpfulness.rules import number_match, phrase_match, score_rule

__all__ = [
    "CHECKABLE_KINDS",
    "DEFAULT_THRESHOLDS",
    "KINDS",
    "CodeRun",
    "DegenerationThresholds",
    "HelpfulnessItem",
    "HelpfulnessResult",
    "ItemScore",
    "Kind",
    "Mean",
    "ReplyCheck",
    "check_replies",
    "check_reply",
    "distinct_n",
    "evasive_or_degenerate",
    "evasive_or_degenerate_rate",
    "extract_code",
    "load_items",
    "mean_logprobs",
    "measure_helpfulness",
    "number_match",
    "phrase_match",
    "repeated_ngram_fraction",
    "run_code",
    "score_code",
    "score_rule",
]
