"""Label sets (one source of truth per corpus), their aliases, answer formatting and answer parsing."""
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


@dataclass(frozen=True)
class LabelSet:
    """An ordered label list (the order of reports and heatmaps) with the emotion family of each label."""

    name: str
    labels: tuple[str, ...]
    families: tuple[str, ...]

    def __post_init__(self) -> None:
        if (len(self.labels) != len(self.families) or len(set(self.labels)) != len(self.labels)
                or len(set(self.families)) != len(self.families)):
            raise ValueError(f"label set {self.name!r}: labels and families must pair up, both unique "
                             f"(got {list(zip(self.labels, self.families))})")

    @cached_property
    def aliases(self) -> dict[str, str]:
        """Every accepted word (lower case) -> canonical label."""
        out: dict[str, str] = {}
        for label, family in zip(self.labels, self.families):
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
        """Labels named in a generated answer, in order of first mention; empty when none is named.

        Whole-word matching over the aliases, case-insensitive: "The emotion is: Sad." -> ("sad",),
        "happy and excited" -> ("happy", "excited") in IEMOCAP 6-class or ("happy",) in 4-class.
        """
        found: list[str] = []
        for match in self._pattern.finditer(text.lower()):
            label = self.aliases[match.group(1)]
            if label not in found:
                found.append(label)
        return tuple(found)


def _set(name: str, pairs: list[tuple[str, str]]) -> LabelSet:
    return LabelSet(name, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))


LABEL_SETS: dict[str, LabelSet] = {
    s.name: s
    for s in [
        _set("merr", [("neutral", "neutral"), ("angry", "anger"), ("happy", "happiness"), ("sad", "sadness"),
                      ("worried", "worry"), ("surprise", "surprise"), ("fear", "fear"),
                      ("contempt", "contempt"), ("doubt", "doubt")]),
        _set("mer2023", [("neutral", "neutral"), ("angry", "anger"), ("happy", "happiness"), ("sad", "sadness"),
                         ("worried", "worry"), ("surprise", "surprise")]),
        _set("iemocap_4class", [("happy", "happiness"), ("sad", "sadness"), ("neutral", "neutral"),
                                ("angry", "anger")]),
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
LABEL_SETS["demo"] = LabelSet("demo", LABEL_SETS["iemocap_4class"].labels, LABEL_SETS["iemocap_4class"].families)


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ValueError(f"unknown label set {name!r}; expected one of {', '.join(LABEL_SETS)}") from None
