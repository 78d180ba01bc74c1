"""Answer parsing: whole-word, alias-aware, order of first mention, unparsed stays empty."""
import pytest

from minigpt4.labels import LABEL_SETS, LabelSet, get_label_set

IEMO4 = get_label_set("iemocap_4class")
IEMO6 = get_label_set("iemocap_6class")
MELD = get_label_set("meld")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("iemocap_4class", "The emotion is: Sad.", ("sad",)),
        ("mer2023", "The emotion is: Sad.", ("sad",)),
        ("meld", "The emotion is: Sad.", ("sadness",)),
        ("iemocap_4class", "happy and excited", ("happy",)),
        ("iemocap_6class", "happy and excited", ("happy", "excited")),
        ("iemocap_4class", "angry, sad", ("angry", "sad")),
        ("iemocap_4class", "sad, angry", ("sad", "angry")),
        ("iemocap_4class", "ANGRY!", ("angry",)),
        ("iemocap_4class", "ang", ("angry",)),
        ("iemocap_4class", "He sounds mad.", ("angry",)),
        ("iemocap_4class", "anger", ("angry",)),
        ("meld", "angry", ("anger",)),
        ("meld", "he is mad", ("anger",)),
        ("meld", "happy", ("joy",)),
        ("iemocap_4class", "joy", ("happy",)),
        ("iemocap_4class", "sad, very sad, deep sadness", ("sad",)),
        ("iemocap_4class", "I cannot tell from this clip.", ()),
        ("iemocap_4class", "", ()),
    ],
)
def test_parse(name: str, text: str, expected: tuple[str, ...]) -> None:
    assert get_label_set(name).parse(text) == expected


@pytest.mark.parametrize(
    ("label_set", "text", "expected"),
    [
        (MELD, "sadness", ("sadness",)),  # the label itself, not "sad" + leftovers
        (IEMO4, "sadness", ("sad",)),  # an alias, matched whole
        (IEMO4, "saddle", ()),
        (IEMO4, "madam, the gladiator", ()),
        (IEMO4, "unhappy", ("sad",)),  # "happy" inside "unhappy" is not happy
        (IEMO4, "non-neutral tone", ()),  # hyphen compounds are other words
        (IEMO4, "happy-go-lucky", ()),
        (IEMO6, "frustrating", ()),
        (IEMO4, "sad_face angry", ("angry",)),
    ],
)
def test_words_inside_other_words_do_not_match(label_set: LabelSet, text: str, expected: tuple[str, ...]) -> None:
    assert label_set.parse(text) == expected


@pytest.mark.parametrize("name", sorted(LABEL_SETS))
def test_every_label_parses_to_itself(name: str) -> None:
    """Formatted answers round-trip: no alias of one label swallows another label of the same set."""
    ls = LABEL_SETS[name]
    assert ls.parse(ls.format_answer(list(reversed(ls.labels)))) == ls.labels
    for label in ls.labels:
        assert ls.parse(f"The emotion is {label.upper()}.") == (label,)


def test_format_answer_uses_label_set_order_and_canonical_names() -> None:
    assert IEMO6.format_answer(["frustration", "HAP", "excited"]) == "happy, excited, frustrated"


def test_canonical_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="expected one of happy, sad, neutral, angry"):
        IEMO4.canonical("excited")


def test_from_labels() -> None:
    assert LabelSet.from_labels(["happy", "sad", "neutral", "angry"]) is IEMO4
    custom = LabelSet.from_labels(["Sad", "anger", "boredom"])
    assert custom.labels == ("sad", "anger", "boredom")
    assert custom.parse("Bored? no: boredom, then mad, then unhappy") == ("boredom", "anger", "sad")
    with pytest.raises(ValueError, match="unique"):
        LabelSet.from_labels(["happy", "joy"])  # one emotion family, two labels: ambiguous parsing
