"""HTTP serving: the API and web page (`app.py` and friends) and the expert model server (`model_server.py`)."""
