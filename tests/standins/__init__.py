"""Protocol-faithful stand-in servers (OpenAI chat completions, AUTOMATIC1111's API) served over real HTTP on
loopback, and helpers that start real servers (llama.cpp) for the remote-backend tests."""
