"""Use cases shared by the UI and the API: generate images, history, model lifecycle."""
