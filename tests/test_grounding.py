import pytest

from hugginggpt.facts import task_facts
from hugginggpt.grounding import (
    CheckedStream,
    Grounds,
    check,
    claimed_kinds,
    file_names,
    requested_kinds,
    wanted_kinds,
)
from hugginggpt.types import Artifact, Task, TaskResult

BOXES = Artifact(path="/out/r/0-object-detection-ab12.png", media_type="image/png", sha256="0" * 64, modality="image")
TASKS = [
    Task(id=0, task="object-detection", args={"image": "/photos/b.jpg"}),
    Task(id=1, task="image-to-text", args={"image": "/photos/sign.png"}),
]
RESULTS = [
    TaskResult(
        task_id=0,
        task="object-detection",
        model_id="coco/ssd-1",
        status="ok",
        outputs={"text": "1 zebra", "image": BOXES},
    ),
    TaskResult(
        task_id=1, task="image-to-text", model_id="ocr/v4", status="ok", outputs={"text": "Visit shop.example.com"}
    ),
]
GROUNDS = Grounds.of(
    task_facts(TASKS, [], RESULTS),
    ["How many zebras are in b.jpg and c.jpg? Also read sign.png."],
    ["/photos/b.jpg", "/photos/sign.png"],
)


def test_the_grounds_are_the_runs_files_inputs_models_and_media():
    assert {"0-object-detection-ab12.png", "b.jpg", "c.jpg", "sign.png", "shop.example.com"} <= GROUNDS.files
    assert GROUNDS.models == {"coco/ssd-1", "ocr/v4"} and GROUNDS.produced == {"image"}


@pytest.mark.parametrize(
    "sentence",
    [
        "There is 1 zebra in b.jpg and none in c.jpg.",
        "The boxes are drawn in 0-object-detection-ab12.png.",
        "The sign reads: Visit shop.example.com.",
        "The image with the boxes was saved.",  # detection made an image
        "I could not draw a picture of a lighthouse: no installed model can.",
        "If you install a drawing model, I can draw a picture.",
        "The image shows one zebra, e.g. a plains zebra.",
        "I generated a caption for the image.",
        "The zebra count is 1.0 in b.jpg.",  # a decimal number is not a file name
    ],
)
def test_sentences_grounded_in_the_run_pass(sentence):
    assert check(sentence, GROUNDS) is None


@pytest.mark.parametrize(
    ("sentence", "reason", "claims"),
    [
        ("The text is in 1-image-to-text-789012.json.", "names the file '1-image-to-text-789012.json'", "file"),
        ("I drew a lighthouse and saved it as lighthouse.jpg.", "names the file 'lighthouse.jpg'", "image"),
        ("I used facebook/detr-resnet-50 for this.", "names the model 'facebook/detr-resnet-50'", None),
        ("The spoken text is in speech.wav.", "names the file 'speech.wav'", "audio"),
        ("I read the text aloud for you.", "claims audio", "audio"),
        ("I have created an audio file of the text.", "claims audio", "audio"),
        ("Here is the video you asked for.", "claims a video", "video"),
        ("The recording was saved, but I am not sure it is good.", "claims audio", "audio"),
    ],
)
def test_sentences_naming_what_the_run_did_not_produce_are_caught(sentence, reason, claims):
    removal = check(sentence, GROUNDS)
    assert removal is not None and removal.reason.startswith(reason) and removal.claims == claims


def test_a_claim_needs_an_affirmed_making_of_a_media_thing():
    assert claimed_kinds("I drew a picture of a lighthouse") == ["image"]
    assert claimed_kinds("I saved the image as a JPEG file") == ["image"]
    assert claimed_kinds("I have generated two files") == ["file"]
    assert claimed_kinds("I did not draw a picture") == []
    assert claimed_kinds("the picture shows a cat") == []
    assert claimed_kinds("the text could be saved as an audio file") == []


def test_file_names_are_names_with_a_known_extension():
    assert file_names("see a.jpg, /tmp/x/y.wav and notes.txt. Mr.Nobody 3.14 e.g. v2.0") == [
        "a.jpg",
        "/tmp/x/y.wav",
        "notes.txt",
    ]


def test_the_stream_emits_only_whole_checked_sentences():
    emitted = []
    stream = CheckedStream(GROUNDS, emitted.append)
    for delta in ["There is 1 ze", "bra in b.jpg. I saved the", " boxes as boxes.png.", "\n- c.jpg: no", " zebra"]:
        stream.feed(delta)
        assert all(piece.rstrip().endswith((".", "!", "?")) for piece in emitted)  # never half a sentence
    assert emitted == ["There is 1 zebra in b.jpg."]
    stream.close()
    assert emitted == ["There is 1 zebra in b.jpg.", "\n- c.jpg: no zebra"]
    assert stream.text == "There is 1 zebra in b.jpg.\n- c.jpg: no zebra"
    assert [r.sentence for r in stream.removed] == ["I saved the boxes as boxes.png."]


def test_code_written_text_is_added_after_a_separator():
    emitted = []
    stream = CheckedStream(GROUNDS, emitted.append)
    stream.add("No video was produced.")
    stream.add("Second.", separator="\n\n")
    assert stream.text == "No video was produced.\n\nSecond." == "".join(emitted)


def test_the_kinds_a_request_asks_for():
    assert requested_kinds("Draw a picture of a lighthouse") == {"image"}
    assert requested_kinds("Can you read the text in sign.png aloud?") == {"audio"}
    assert requested_kinds("How many zebras are in b.jpg?") == set()


def test_a_colour_no_result_gives_is_kept_out_and_one_a_result_gives_passes():
    grounds = Grounds(colours={"red", "black"}, files={"dog.jpg"})
    removal = check("The bicycle in dog.jpg is blue.", grounds)
    assert removal is not None and "'blue'" in removal.reason
    assert check("The bicycle is red and black.", grounds) is None
    assert check("It is a Gray horse.", Grounds(colours={"grey"})) is None
    assert Grounds.of([], ["What colour is the bus? It looks greyish"]).colours == {"grey"}


def test_a_month_or_weekday_no_result_gives_is_kept_out():
    grounds = Grounds.of([], ["In sales.csv, which month had the most units sold?"])
    removal = check("The month with the most units sold in sales.csv is January.", grounds)
    assert removal is not None and "January" in removal.reason
    said = Grounds.of([], ["The library reopens on june 1; open on saturdays.", "Monday (DATE)"])
    assert said.calendar == {"June", "Saturday", "Monday"}
    assert check("It reopens on June 1 and opens on Saturdays and Monday.", said) is None
    assert check("May I add that it reopens soon?", Grounds()) is None  # "May" is not checked
    assert check("The meeting is on Wednesday.", said).reason == "names Wednesday, which no result gives"


def test_a_number_no_result_gives_is_kept_out_and_sums_the_code_made_pass():
    def detection(task_id, image, text, counts):
        result = TaskResult(task_id=task_id, task="object-detection", status="ok", model_id="m/det")
        result.outputs = {"text": text, "json": {"counts": counts}}
        return Task(id=task_id, task="object-detection", args={"image": image}), result

    (t0, r0), (t1, r1) = (
        detection(0, "dog.jpg", "1 bicycle, 1 car, 1 dog, 1 truck", {"bicycle": 1, "car": 1, "dog": 1, "truck": 1}),
        detection(1, "person.jpg", "1 dog, 1 horse, 1 person", {"dog": 1, "horse": 1, "person": 1}),
    )
    facts = task_facts([t0, t1], [], [r0, r1])
    grounds = Grounds.of(facts, ["How many dogs are there in dog.jpg and person.jpg altogether?"])
    removal = check("There are 7 dogs in dog.jpg and person.jpg altogether.", grounds)
    assert removal is not None and "number 7" in removal.reason
    assert check("There are 2 dogs in all, one in each photo.", grounds) is None  # the code's total
    assert check("The total due is $1,216.48.", Grounds(numbers={1216.48})) is None
    assert check("It says three.", Grounds(numbers={2.0})) is not None
    assert check("Any number at all: 42.", Grounds()) is None  # no numbers collected: not checked


@pytest.mark.parametrize(
    "request_, kinds",
    [
        ("Translate it into French and convert it to speech.", {"audio"}),
        ("Read the summary to me.", {"audio"}),
        ("I want to hear it in German.", {"audio"}),
        ("Turn the caption into audio.", {"audio"}),
        ("Classify it and provide me with a speech description of the result.", {"audio"}),
        ("Read the text in sign.png aloud.", {"audio"}),
        ("Generate an image of a cat.", {"image"}),
        ("Show me a picture of the result.", {"image"}),
        ("Summarise the video lecture.mp4.", {"video"}),
        # an input of a kind is not a wish for one
        ("Convert the audio in example.wav into written text.", set()),
        ("What is said in the voice recording talk.wav?", set()),
        ("Can you transcribe the audio to text using Speech Recognition?", set()),
        ("Describe the image photo.jpg.", set()),
    ],
)
def test_wanted_kinds_are_what_a_request_asks_or_hints_to_be_made(request_, kinds):
    assert wanted_kinds(request_) == kinds
    assert requested_kinds(request_) <= wanted_kinds(request_)
