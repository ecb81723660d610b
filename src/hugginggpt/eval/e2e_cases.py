"""The end-to-end suite: requests a user of a multimodal assistant makes, each with the checks a person would make.

Ground truth is what a person sees in the inputs (`e2e_inputs`), never what a model of ours outputs: dog.jpg is a
dog sitting by a red road bicycle on a porch (a white pickup truck behind); giraffe.jpg a giraffe and a zebra;
horses.jpg several horses on grassland; kite.jpg kites over a beach with people; person.jpg a person in a blue jacket
with a dog and a white horse; eagle.jpg a young bald eagle; chelsea.png a tabby cat; coffee.png an espresso in a red
cup on a saucer; sign.png "HuggingGPT runs offline / Plan, select, execute, answer."
"""

from __future__ import annotations

from .e2e import Case

NOT_DONE = r"\b(I|we) (have |'ve )?(drew|drawn|generated|created|rendered|produced|made)\b"

CASES: list[Case] = [
    # single-image detection and counting
    Case(
        id="detect-dog",
        kind="detection",
        request="What objects can you see in dog.jpg?",
        must=[["dog"], ["bicycle", "bike"]],
        must_not=[r"\bface\b", r"\bzebra"],
    ),
    Case(
        id="detect-giraffe",
        kind="detection",
        request="Which animals are in giraffe.jpg?",
        must=[["giraffe"], ["zebra"]],
        must_not=[r"\bhuman face\b", r"\bno animals\b"],
    ),
    Case(
        id="count-zebras",
        kind="detection",
        request="How many zebras are there in giraffe.jpg?",
        must=[
            [
                "1 zebra",
                "a single zebra",
                "there is a zebra",
                "there's a zebra",
                "only 1",
                "1 of them",
                "is 1",
                "are 1",
                "just 1",
                "exactly 1",
            ]
        ],
        must_not=[r"\b([2-9]|\d\d+) zebras\b", r"\bno zebras?\b"],
    ),
    Case(
        id="detect-person",
        kind="detection",
        request="Who and what is in person.jpg?",
        must=[["person", "people", "man", "woman", "someone"], ["dog"], ["horse"]],
        must_not=[r"\bzebra", r"\bcat\b"],
    ),
    Case(
        id="detect-kite",
        kind="detection",
        request="What is flying in the sky in kite.jpg?",
        must=[["kite"]],
        must_not=[r"\bairplane", r"\baeroplane"],
    ),
    Case(
        id="detect-horses",
        kind="detection",
        request="What animals do you see in horses.jpg?",
        must=[["horse"]],
        must_not=[r"\bzebra", r"\bgiraffe"],
    ),
    # counting over several images
    Case(
        id="count-dogs-two-images",
        kind="multi-image counting",
        request="How many dogs are there in dog.jpg and person.jpg altogether?",
        must=[["2 dogs", "total of 2", "2 in total", "2 altogether", "total: 2", "total is 2", "2 dogs in total"]],
        must_not=[r"\b([3-9]|\d\d+) dogs\b", r"\bno dogs\b"],
    ),
    Case(
        id="count-animals-two-images",
        kind="multi-image counting",
        request="Which animals are in giraffe.jpg and person.jpg, and how many of each?",
        must=[["giraffe"], ["zebra"], ["dog"], ["horse"]],
        must_not=[r"\b([2-9]|\d\d+) (giraffes|zebras|horses)\b"],
    ),
    Case(
        id="which-image-cat",
        kind="multi-image counting",
        request="Which of the photos dog.jpg, chelsea.png and eagle.jpg shows a cat?",
        must=[["chelsea"]],
        must_not=[r"dog\.jpg (shows|has|contains) a cat", r"eagle\.jpg (shows|has|contains) a cat"],
    ),
    # image classification
    Case(
        id="classify-cat",
        kind="classification",
        request="What kind of animal is in chelsea.png?",
        must=[["cat", "tabby", "kitten"]],
        must_not=[r"\bdog\b", r"\bhuman face\b"],
    ),
    Case(
        id="classify-coffee",
        kind="classification",
        request="What is shown in coffee.png?",
        must=[["coffee", "espresso", "cup"]],
    ),
    Case(
        id="classify-eagle",
        kind="classification",
        request="What kind of bird is in eagle.jpg?",
        must=[["eagle", "bird of prey", "raptor"]],
        must_not=[r"\bparrot", r"\bpenguin"],
    ),
    # OCR
    Case(
        id="ocr-sign",
        kind="ocr",
        request="What does the sign in sign.png say?",
        must=[["hugginggpt"], ["offline"]],
    ),
    Case(
        id="ocr-notice",
        kind="ocr",
        request="Read the text in notice.png.",
        must=[["platform 4"], ["closed"], ["platform 2"]],
    ),
    Case(
        id="ocr-letter",
        kind="ocr",
        request="What is written in letter.png?",
        must=[["patel"], ["harbour view"], ["214"]],
    ),
    # OCR, then speech
    Case(
        id="ocr-speech-sign",
        kind="ocr to speech",
        request="Read the text in sign.png aloud.",
        artifacts=["audio/"],
        speech=[["offline"], ["plan", "select", "execute", "answer"]],
    ),
    Case(
        id="ocr-speech-notice",
        kind="ocr to speech",
        request="Please read notice.png out loud for me.",
        artifacts=["audio/"],
        speech=[["platform"], ["closed"]],
    ),
    # speech to text
    Case(
        id="asr-reminder",
        kind="speech to text",
        request="Transcribe reminder.wav.",
        must=[["milk"], ["eggs"], ["bread"]],
    ),
    Case(
        id="asr-weather",
        kind="speech to text",
        request="What does the speaker say in weather.wav?",
        must=[["sunny"], ["25"]],
    ),
    # speech, then a summary, then a translation
    Case(
        id="asr-summary-french",
        kind="speech to summary to translation",
        request="Transcribe meeting.wav, summarise it, and translate the summary into French.",
        must=[["jeudi", "réunion", "reunion", "rapport", "ventes", "équipe", "budget"], ["la", "le", "les", "des"]],
    ),
    Case(
        id="asr-summary",
        kind="speech to summary to translation",
        request="Give me a short summary of what is said in meeting.wav.",
        must=[["thursday"], ["sales", "report", "marketing", "budget"]],
    ),
    # text documents the user names
    Case(
        id="summarise-notes",
        kind="text file",
        request="Summarise notes.txt in two sentences.",
        must=[["library"], ["reopen*", "re-open*", "open*", "renovat*"]],
    ),
    Case(
        id="csv-question",
        kind="text file",
        request="In sales.csv, which month had the most units sold?",
        must=[["march"]],
        must_not=[r"\b(january|february|april) (had|has|was) the most"],
    ),
    Case(
        id="todo-speech",
        kind="text file",
        request="Read my to-do list in todo.md aloud.",
        artifacts=["audio/"],
        speech=[["plants"], ["grandma", "grandmother"], ["library", "books"]],
    ),
    # sentiment and named entities
    Case(
        id="sentiment-negative",
        kind="sentiment and entities",
        request=(
            "Is this review positive or negative? 'The battery died after two days and support never answered "
            "my emails. Very disappointed.'"
        ),
        must=[["negative"]],
        must_not=[r"\b(review|it|sentiment|this) is (mostly |very |clearly )?positive\b"],
    ),
    Case(
        id="sentiment-positive",
        kind="sentiment and entities",
        request=(
            "How does this customer feel? 'Absolutely love this little cafe, the staff are friendly and the "
            "cake is delicious!'"
        ),
        must=[["positive", "happy", "delighted", "satisfied", "pleased", "love*", "enjoy*"]],
        must_not=[r"\b(review|it|sentiment|this|customer) is (mostly |very |clearly )?negative\b"],
    ),
    Case(
        id="entities",
        kind="sentiment and entities",
        request=(
            "List the people, organisations and places in this sentence: 'Maria Lopez from Acme Corporation "
            "flew to Berlin on Monday to meet Kenji Sato.'"
        ),
        must=[["maria lopez"], ["acme"], ["berlin"], ["kenji sato"]],
    ),
    # questions about a document
    Case(
        id="invoice-total",
        kind="document qa",
        request="In invoice.png, what is the total amount due?",
        must=[["216.48"]],
        must_not=[r"\btotal (amount )?(due )?(is|of) (eur |€)?180\.40"],
    ),
    Case(
        id="invoice-date",
        kind="document qa",
        request="What is the invoice date on invoice.png?",
        must=[["14 march 2025", "march 14, 2025", "march 14 2025", "14/03/2025", "2025-03-14", "14.03.2025"]],
    ),
    Case(
        id="receipt-total",
        kind="document qa",
        request="How much did I pay in total according to receipt.png?",
        must=[["12.70"]],
    ),
    Case(
        id="letter-room",
        kind="document qa",
        request="In letter.png, what is my room number?",
        must=[["214"]],
    ),
    # questions about a picture
    Case(
        id="vqa-count-dogs",
        kind="vqa",
        request="How many dogs are in person.jpg?",
        must=[["1 dog", "a dog", "a single dog", "is 1", "only 1", "just 1", "1 black dog"]],
        must_not=[r"\b([2-9]|\d\d+) dogs\b", r"\bno dogs?\b"],
    ),
    Case(
        id="vqa-bicycle-colour",
        kind="vqa",
        request="What colour is the bicycle in dog.jpg?",
        must=[["red"]],
        must_not=[r"\bbicycle is (blue|green|black|white|yellow)\b"],
    ),
    Case(
        id="vqa-jacket-colour",
        kind="vqa",
        request="What colour is the jacket of the person in person.jpg?",
        must=[["blue"]],
        must_not=[r"\bjacket is (red|green|black|white|yellow)\b"],
    ),
    Case(
        id="vqa-zebra-yes",
        kind="vqa",
        request="Is there a zebra in giraffe.jpg?",
        must=[["yes", "there is a zebra", "there is 1 zebra", "contains a zebra", "1 zebra"]],
        must_not=[r"\bno zebras?\b", r"\bthere is no\b", r"\bdoes not (contain|show)"],
    ),
    # a later turn that refers to an earlier result
    Case(
        id="followup-read-aloud",
        kind="follow-up",
        before=["Read the text in sign.png."],
        request="Now read that text aloud.",
        artifacts=["audio/"],
        speech=[["offline"]],
    ),
    Case(
        id="followup-colour",
        kind="follow-up",
        before=["What objects are in dog.jpg?"],
        request="What colour is the bicycle in that photo?",
        must=[["red"]],
    ),
    # bad input: nothing to read, nothing to hear
    Case(
        id="blank-image-text",
        kind="bad input",
        request="Read the text in blank.png.",
        must=[["no text", "no readable", "not find any text", "did not find", "could not find", "no words", "empty"]],
        must_not=[r"hugginggpt", r"platform"],
    ),
    Case(
        id="silent-audio",
        kind="bad input",
        request="Transcribe silence.wav.",
        must=[["no speech", "silent", "silence", "nothing", "no words", "empty", "could not", "no audible"]],
        must_not=[r"\bmilk\b", r"\bmeeting\b"],
    ),
    # requests the offline stack cannot serve: honest only
    Case(
        id="draw-lighthouse",
        kind="cannot serve offline",
        request="Draw a picture of a lighthouse at sunset.",
        unservable=["text-to-image"],
        must_not=[NOT_DONE],
    ),
    Case(
        id="video-cat",
        kind="cannot serve offline",
        request="Make a short video of a cat playing with a ball of wool.",
        unservable=["text-to-video"],
        must_not=[NOT_DONE],
    ),
    Case(
        id="depth-horses",
        kind="cannot serve offline",
        request="Show me a depth map of horses.jpg.",
        unservable=["depth-estimation"],
        must_not=[NOT_DONE],
    ),
    Case(
        id="segment-giraffe",
        kind="cannot serve offline",
        request="Segment the animals in giraffe.jpg into separate masks.",
        unservable=["image-segmentation"],
        must_not=[NOT_DONE],
    ),
]
