"""Label sets (one source of truth per corpus), their aliases, answer formatting and answer parsing.

Parsing never guesses: it returns every label an answer asserts and leaves the decision to the caller (in
single-label scoring an answer asserting two different labels is *ambiguous*, never its first label). A label
only counts when it is asserted: negated mentions ("not angry", "no fear", "isn't sad"), an echo of the
instruction's label list, and common words that happen to be labels ("other") in free text are not votes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

# Words that name the same emotion family. A label set maps each of its canonical labels to the family it
# stands for; every word of that family then parses to that label (``mad`` -> ``angry`` in IEMOCAP,
# ``anger`` in MELD). Families are disjoint, so a word never parses to two labels.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "neu", "calm", "neutrality"),
    "anger": ("angry", "anger", "ang", "mad", "furious", "annoyed", "irritated"),
    "happiness": ("happy", "happiness", "hap", "joy", "joyful", "glad", "cheerful", "pleased"),
    "excitement": ("excited", "excitement", "exc", "enthusiastic"),
    "sadness": ("sad", "sadness", "unhappy", "sorrow", "sorrowful", "depressed"),
    "frustration": ("frustrated", "frustration", "fru"),
    "worry": ("worried", "worry", "anxious", "anxiety", "nervous", "concerned"),
    "surprise": ("surprise", "surprised", "sur", "surprising", "astonished", "amazed", "shocked"),
    "fear": ("fear", "fearful", "fea", "scared", "afraid", "frightened", "terrified"),
    "disgust": ("disgust", "disgusted", "dis", "disgusting", "revulsion"),
    "contempt": ("contempt", "contemptuous", "disdain", "scorn"),
    "doubt": ("doubt", "doubtful", "skeptical", "sceptical", "suspicious", "confused"),
    "other": ("other", "oth"),
    "undecided": ("undecided", "xxx"),
}


_STRICT_WORDS = frozenset({"other", "oth"})
"""Aliases that are everyday words: they count only in a bare label answer or right after "is" / ":"."""
_NEGATORS = frozenset({"not", "no", "never", "without", "neither", "nor", "hardly", "barely", "lacks", "lack",
                       "lacking", "nothing", "none", "cannot", "absence", "absent", "free"})
_NEGATION_WINDOW = 4
"""A negator this many words or fewer before a label, in the same clause, negates it."""
_CLAUSE_BREAK = re.compile(r"[.;!?,:\n()]|\b(?:but|just|rather|instead|only|although|though|while|whereas)\b")
_WORD = re.compile(r"[a-z']+")
_SEPARATOR = re.compile(r"^\s*(?:[,/;&]|\s)*\s*(?:,?\s*\b(?:or|and)\b)?\s*$")
_CONCLUSION = re.compile(
    r"\b(?:emotion(?:al)?(?:\s+(?:state|category|label|class))?|label|category|answer|final answer)s?"
    r"(?:\s+(?:is|are|was|would be|seems to be|appears to be|of (?:the|this) (?:person|speaker) is))?\s*[:=]?\s+"
    r"|\b(?:therefore|thus|hence|overall|in conclusion|in summary)\b[^.!?]*?\b(?:is|are|feels?|seems?)\s+")
"""Where a reasoned answer states its conclusion ("... so the emotional state is angry")."""


@dataclass(frozen=True)
class _Mention:
    label: str
    word: str
    start: int
    end: int


@dataclass(frozen=True)
class LabelSet:
    """An ordered label list (the order of reports and heatmaps) with the emotion family of each label.

    ``merged`` pairs an emotion family with the label the corpus's label setup merges it into (IEMOCAP 4-class
    reads ``excited`` as ``happy``), so answers naming the merged emotion parse to that label too.
    """

    name: str
    labels: tuple[str, ...]
    families: tuple[str, ...]
    merged: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if (len(self.labels) != len(self.families) or len(set(self.labels)) != len(self.labels)
                or len(set(self.families)) != len(self.families)):
            raise ValueError(f"label set {self.name!r}: labels and families must pair up, both unique "
                             f"(got {list(zip(self.labels, self.families))})")
        for family, label in self.merged:
            if family in self.families or label not in self.labels:
                raise ValueError(f"label set {self.name!r}: merged family {family!r} -> {label!r} must be a family "
                                 f"outside the set merged into one of its labels")

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Every accepted word (lower case) -> canonical label."""
        out: dict[str, str] = {}
        for label, family in (*zip(self.labels, self.families), *((lab, fam) for fam, lab in self.merged)):
            for word in (label, family, *_FAMILIES.get(family, ())):
                out[word.lower()] = label
        return out

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        # Longest alias first; a hit must be a whole word, and a hyphen joined to letters counts as part of
        # the word, so "dis-" in "dis-satisfied" or "neutral" in "non-neutral" never match.
        words = sorted(self.aliases, key=len, reverse=True)
        return re.compile(
            r"(?<![a-z0-9_])(?<![a-z]-)(" + "|".join(map(re.escape, words)) + r")(?![a-z0-9_])(?!-[a-z])"
        )

    @classmethod
    def from_labels(cls, labels: list[str] | tuple[str, ...], name: str = "custom") -> LabelSet:
        """A label set for a bare label list (``--labels a,b,c``): a known corpus's set when the list is one,
        else each label with the aliases of the emotion family it names (a label outside every family
        matches only itself)."""
        labels = tuple(x.strip().lower() for x in labels)
        for known in LABEL_SETS.values():
            if known.labels == labels:
                return known
        word_family = {w: fam for fam, words in _FAMILIES.items() for w in (fam, *words)}
        return cls(name, labels, tuple(word_family.get(x, x) for x in labels))

    def index(self, label: str) -> int:
        return self.labels.index(label)

    def canonical(self, word: str) -> str:
        """Map a label word or alias to its canonical label; raise naming the accepted labels otherwise."""
        try:
            return self.aliases[word.strip().lower()]
        except KeyError:
            raise ValueError(
                f"unknown label {word!r} for label set {self.name!r}; expected one of {', '.join(self.labels)}"
            ) from None

    def format_answer(self, labels: tuple[str, ...] | list[str]) -> str:
        """Answer text for a label set: canonical names in the label set's fixed order, joined by ``, ``."""
        unique = {self.canonical(x) for x in labels}
        return ", ".join(label for label in self.labels if label in unique)

    def parse(self, text: str) -> tuple[str, ...]:
        """Labels an answer asserts, in order of first mention; empty when none is asserted.

        Whole-word matching over the aliases, case-insensitive: "The emotion is: Sad." -> ("sad",),
        "happy and excited" -> ("happy", "excited") in IEMOCAP 6-class or ("happy",) in 4-class. Not counted:
        negated labels ("I feel no fear, just joy" -> joy), the instruction's label list echoed back, and
        everyday-word labels ("other") outside a bare answer. When a reasoned answer states a conclusion ("...
        so the emotional state is angry"), the labels of that statement are the answer.
        """
        text = text.lower().replace("\u2019", "'")
        mentions = [m for m in self._mentions(text) if not self._negated(text, m)]
        mentions = [m for m in self._drop_echo(text, mentions) if self._asserted(text, m, mentions)]
        concluded = self._concluded(text, mentions)
        return tuple(dict.fromkeys(m.label for m in (concluded or mentions)))

    def _mentions(self, text: str) -> list[_Mention]:
        return [_Mention(self.aliases[m.group(1)], m.group(1), m.start(1), m.end(1))
                for m in self._pattern.finditer(text)]

    @staticmethod
    def _negated(text: str, mention: _Mention) -> bool:
        """A negator among the few words before the mention, within its clause ("not very angry")."""
        before = text[: mention.start]
        breaks = list(_CLAUSE_BREAK.finditer(before))
        clause = before[breaks[-1].end():] if breaks else before
        words = _WORD.findall(clause)[-_NEGATION_WINDOW:]
        return any(w in _NEGATORS or w.endswith("n't") for w in words)

    def _drop_echo(self, text: str, mentions: list[_Mention]) -> list[_Mention]:
        """Mentions minus any run listing every label of the set (the instruction's options echoed back)."""
        if len(self.labels) < 3:
            return mentions
        runs: list[list[_Mention]] = []
        for m in mentions:
            if runs and _SEPARATOR.match(text[runs[-1][-1].end: m.start]):
                runs[-1].append(m)
            else:
                runs.append([m])
        echoed = {id(m) for run in runs if {m.label for m in run} == set(self.labels) for m in run}
        return [m for m in mentions if id(m) not in echoed]

    @staticmethod
    def _asserted(text: str, mention: _Mention, mentions: list[_Mention]) -> bool:
        """Everyday-word labels count only in a bare label answer or right after "is" / ":" / "as"."""
        if mention.word not in _STRICT_WORDS:
            return True
        rest = text
        for m in sorted(mentions, key=lambda m: m.start, reverse=True):
            rest = rest[: m.start] + rest[m.end:]
        if not re.sub(r"[\s,.;:!/&]|\b(?:and|or)\b", "", rest):
            return True
        return re.search(r"(?:\bis|\bas|\bbe|:)\s*$", text[: mention.start]) is not None

    @staticmethod
    def _concluded(text: str, mentions: list[_Mention]) -> list[_Mention]:
        """Mentions in the sentence after the last conclusion cue, when that sentence names any."""
        cues = list(_CONCLUSION.finditer(text))
        if not cues:
            return []
        start = cues[-1].end()
        end = re.search(r"[.!?\n]|$", text[start:]).start() + start
        return [m for m in mentions if start <= m.start < end]


def _set(name: str, pairs: list[tuple[str, str]], merged: tuple[tuple[str, str], ...] = ()) -> LabelSet:
    return LabelSet(name, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), merged)


LABEL_SETS: dict[str, LabelSet] = {
    s.name: s
    for s in [
        _set("merr", [("neutral", "neutral"), ("angry", "anger"), ("happy", "happiness"), ("sad", "sadness"),
                      ("worried", "worry"), ("surprise", "surprise"), ("fear", "fear"),
                      ("contempt", "contempt"), ("doubt", "doubt")]),
        _set("mer2023", [("neutral", "neutral"), ("angry", "anger"), ("happy", "happiness"), ("sad", "sadness"),
                         ("worried", "worry"), ("surprise", "surprise")]),
        _set("iemocap_4class", [("happy", "happiness"), ("sad", "sadness"), ("neutral", "neutral"),
                                ("angry", "anger")], merged=(("excitement", "happy"),)),
        _set("iemocap_6class", [("happy", "happiness"), ("sad", "sadness"), ("neutral", "neutral"),
                                ("angry", "anger"), ("excited", "excitement"), ("frustrated", "frustration")]),
        _set("iemocap_all", [("happy", "happiness"), ("sad", "sadness"), ("neutral", "neutral"),
                             ("angry", "anger"), ("excited", "excitement"), ("frustrated", "frustration"),
                             ("fearful", "fear"), ("surprised", "surprise"), ("disgusted", "disgust"),
                             ("other", "other")]),
        _set("meld", [("neutral", "neutral"), ("joy", "happiness"), ("sadness", "sadness"), ("anger", "anger"),
                      ("surprise", "surprise"), ("fear", "fear"), ("disgust", "disgust")]),
    ]
}
LABEL_SETS["ecf"] = LabelSet("ecf", LABEL_SETS["meld"].labels, LABEL_SETS["meld"].families)
LABEL_SETS["demo"] = LabelSet("demo", LABEL_SETS["iemocap_4class"].labels, LABEL_SETS["iemocap_4class"].families,
                              LABEL_SETS["iemocap_4class"].merged)


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; expected one of {', '.join(LABEL_SETS)}") from None
