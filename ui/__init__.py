"""The Gradio UI: one module per tab; `build_ui` assembles them."""
