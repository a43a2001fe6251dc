"""GPU check of the attention implementations at a realistic shape (run on a CUDA machine).

cuDNN and our reference `xla` attention in bfloat16 against a float32 reference, forward and
gradients, at B=2, N=32, L=6144, K=64 (the 2B model at 768x512x121) and with a padded key mask.
Prints one JSON object.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.nn.attention import attention


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(length=6144, heads=32, head_dim=64, batch=2):
    key = jax.random.key(0)
    q, k, v = (jax.random.normal(kk, (batch, length, heads, head_dim), jnp.float32) for kk in jax.random.split(key, 3))
    keep = np.ones((batch, length), bool)
    keep[1, length // 3:] = False
    out = {"device": jax.devices()[0].device_kind, "shape": [batch, length, heads, head_dim]}
    ref = attention(q, k, v, mask=keep, impl="xla")
    loss = lambda impl, dt: lambda q, k, v: jnp.sum(attention(q.astype(dt), k.astype(dt), v.astype(dt), mask=keep, impl=impl).astype(jnp.float32) * ref)
    gref = jax.grad(loss("xla", jnp.float32), argnums=(0, 1, 2))(q, k, v)
    for impl in ("xla", "cudnn"):
        o = attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16), mask=keep, impl=impl)
        g = jax.grad(loss(impl, jnp.bfloat16), argnums=(0, 1, 2))(q, k, v)
        out[impl] = {"fwd_rel_err_bf16": rel(o, ref), "grad_rel_err_bf16": [rel(a, b) for a, b in zip(g, gref)]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
