"""The LTX-Video denoising transformer (DiT)."""
