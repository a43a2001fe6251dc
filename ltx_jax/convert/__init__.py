"""Weight import and export (safetensors in; Lightricks single-file and diffusers layouts)."""
