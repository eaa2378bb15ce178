"""Model code: image and text backends, the tiny-model builder, memory policy. No web, no DB."""
