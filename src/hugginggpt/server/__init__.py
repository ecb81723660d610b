"""HTTP servers: the main API server and the model server that hosts local experts (`model_server.py`)."""
