"""Answer parsing: whole-word, alias-aware, order of first mention, unparsed stays empty."""
import pytest

from minigpt4.data.labels import LABEL_SETS, LabelSet, get_label_set

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
    """Formatted answers round-trip: no alias of one label swallows another label of the same set. A list of
    every label is the instruction's options echoed back, not an answer."""
    ls = LABEL_SETS[name]
    assert ls.parse(ls.format_answer(list(reversed(ls.labels[1:])))) == ls.labels[1:]
    assert ls.parse(ls.format_answer(list(ls.labels))) == ()
    for label in ls.labels:
        assert ls.parse(f"The emotion is {label.upper()}.") == (label,)


def test_format_answer_uses_label_set_order_and_canonical_names() -> None:
    assert IEMO6.format_answer(["frustration", "HAP", "excited"]) == "happy, excited, frustrated"


def test_canonical_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match="expected one of happy, sad, neutral, angry"):
        IEMO4.canonical("frustrated")
    assert IEMO4.canonical("excited") == "happy"  # the 4-class setup merges excited into happy


def test_from_labels() -> None:
    assert LabelSet.from_labels(["happy", "sad", "neutral", "angry"]) is IEMO4
    custom = LabelSet.from_labels(["Sad", "anger", "boredom"])
    assert custom.labels == ("sad", "anger", "boredom")
    assert custom.parse("Bored? no: boredom, then mad, then unhappy") == ("boredom", "anger", "sad")
    with pytest.raises(ValueError, match="unique"):
        LabelSet.from_labels(["happy", "joy"])  # one emotion family, two labels: ambiguous parsing


MERR_REASON_ANGRY = (
    "In the video, the man's brows are drawn together and his lips are pressed tightly; his voice rises sharply as "
    "he says 'How many times do I have to tell you?'. He is not happy about being ignored, and there is no sign "
    "of fear. Therefore, it is inferred that his emotional state is angry.")
MERR_REASON_WORRIED = (
    "The woman glances around and bites her lip, speaking quickly in a low voice. Although she forces a smile, "
    "her words 'I hope nothing went wrong' suggest she is anxious rather than happy. Overall, the emotion of the "
    "person is worried.")
MERR_REASON_NO_CONCLUSION = (
    "The speaker frowns and raises his voice, then suddenly laughs; his tone moves from angry to happy within the "
    "clip.")
MERR_REASON_SAD = (
    "In the video, the woman lowers her head, her eyes are red and her voice trembles as she says she misses "
    "him. She does not look surprised or angry. Her emotional state is sad.")
MELD_REASON_JOY = ("Ross grins widely and throws his arms up when he hears the news; he isn't angry at all. "
                   "The emotion is joy.")
IEMOCAP_ECHO = "Please determine which emotion label in the video represents: happy, sad, neutral, angry."
MERR_ECHO = ("Which emotion: happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt? "
             "The answer is surprise")

# (label set, generated answer, labels asserted). In single-label scoring, more than one label is ambiguous.
ANSWERS = [
    ("iemocap_4class", "sad", ("sad",)),
    ("iemocap_4class", "Sad</s>", ("sad",)),
    ("iemocap_4class", "not happy", ()),
    ("iemocap_4class", "Not happy.", ()),
    ("iemocap_4class", "happy or sad", ("happy", "sad")),
    ("iemocap_4class", "The person is not happy, she is sad.", ("sad",)),
    ("iemocap_4class", "She isn't sad, she is angry.", ("angry",)),
    ("iemocap_4class", "I don't think he is angry.", ()),
    ("iemocap_4class", "He is not very angry, just neutral.", ("neutral",)),
    ("iemocap_4class", "neither happy nor sad, simply neutral", ("neutral",)),
    ("iemocap_4class", "happy, not sad", ("happy",)),
    ("iemocap_4class", "excited", ("happy",)),
    ("iemocap_4class", "Excitement and joy.", ("happy",)),
    ("iemocap_6class", "excited", ("excited",)),
    ("iemocap_6class", "She sounds frustrated, not angry.", ("frustrated",)),
    ("iemocap_4class", IEMOCAP_ECHO, ()),
    ("iemocap_4class", IEMOCAP_ECHO + " The answer is neutral.", ("neutral",)),
    ("iemocap_4class", "happy, sad, neutral or angry", ()),
    ("iemocap_4class", "angry, sad", ("angry", "sad")),
    ("iemocap_all", "The other person is angry.", ("angry",)),
    ("iemocap_all", "other", ("other",)),
    ("iemocap_all", "The emotion is other.", ("other",)),
    ("iemocap_all", "Other, neutral", ("other", "neutral")),
    ("iemocap_all", "On the other hand she seems fearful.", ("fearful",)),
    ("meld", "I feel no fear, just joy", ("joy",)),
    ("meld", "There is no anger in his voice; it is surprise.", ("surprise",)),
    ("meld", MELD_REASON_JOY, ("joy",)),
    ("meld", "The emotion is: disgust", ("disgust",)),
    ("merr", "There is no doubt that he is happy.", ("happy",)),
    ("merr", MERR_ECHO, ("surprise",)),
    ("merr", MERR_REASON_ANGRY, ("angry",)),
    ("merr", MERR_REASON_WORRIED, ("worried",)),
    ("merr", MERR_REASON_NO_CONCLUSION, ("angry", "happy")),
    ("merr", MERR_REASON_SAD, ("sad",)),
    ("mer2023", "Emotion: worried. Reason: she keeps asking whether everything is okay.", ("worried",)),
    ("mer2023", "Without any surprise, calmly: neutral", ("neutral",)),
    ("mer2023", "I can't tell.", ()),
]


@pytest.mark.parametrize(("name", "text", "expected"), ANSWERS)
def test_answer_table(name: str, text: str, expected: tuple[str, ...]) -> None:
    assert get_label_set(name).parse(text) == expected


def test_answer_table_is_large_and_has_reason_answers() -> None:
    assert len(ANSWERS) >= 30 and sum(len(t) > 100 for _, t, _ in ANSWERS) >= 5
