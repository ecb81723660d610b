import pytest

from hugginggpt.jsontext import ArrayElementStream, JSONNotFound, extract_json


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ("```json\n[1, 2]\n```", [1, 2]),
        ('Sure. ```\n{"a": [1]}\n``` Hope that helps', {"a": [1]}),
        ('The plan is {"tasks": []} and that is all.', {"tasks": []}),
        ('[broken {"ok": true}', {"ok": True}),
    ],
)
def test_extract_json_finds_the_value(text, expected):
    assert extract_json(text) == expected


def test_extract_json_without_json_names_the_text():
    with pytest.raises(JSONNotFound, match="no JSON found in the reply: 'just words'"):
        extract_json("just words")


def test_stream_yields_each_object_when_its_brace_closes():
    text = '{"tasks": [{"id": 0, "args": {"text": "a } tricky \\" string ["}}, {"id": 1}], "x": [{"id": 9}]}'
    stream = ArrayElementStream()
    seen = []
    for i, char in enumerate(text):
        for element in stream.feed(char):
            seen.append((element["id"], i))
    assert [element for element, _ in seen] == [0, 1]  # objects after the first array are ignored
    first_close = text.index('}}, {"id": 1}') + 1
    assert seen[0][1] == first_close  # yielded at the very character that closed it


def test_stream_handles_a_bare_array_and_prose_before_it():
    stream = ArrayElementStream()
    assert stream.feed('Plan: [{"a": 1}, {"b": [2, {"c": 3}]}]') == [{"a": 1}, {"b": [2, {"c": 3}]}]
