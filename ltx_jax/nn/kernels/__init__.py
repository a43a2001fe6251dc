"""Hand-written attention kernels (Pallas) behind `ltx_jax.nn.attention.attention(impl=...)`."""
