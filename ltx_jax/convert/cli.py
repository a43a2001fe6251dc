"""Read a checkpoint (Lightricks single file or diffusers folder) and write it back in a layout.

`ltx-jax convert SRC DST --to diffusers|lightricks --component transformer|vae|text_encoder`.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("src", help="source: .safetensors file or folder")
    p.add_argument("dst", help="destination: folder (diffusers) or .safetensors file (lightricks)")
    p.add_argument("--to", choices=("diffusers", "lightricks"), default="diffusers", help="output layout")
    p.add_argument("--component", choices=("transformer", "vae", "text_encoder"), default="transformer",
                   help="which model the checkpoint holds")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="storage dtype of the written tensors")


def main(args) -> int:
    from ltx_jax.config import to_dtype

    dtype = to_dtype(args.dtype)
    if args.component == "transformer":
        from ltx_jax.convert.transformer import load_transformer, save_transformer

        save_transformer(load_transformer(args.src, param_dtype=dtype), args.dst, layout=args.to)
    elif args.component == "vae":
        from ltx_jax.convert.vae import load_vae, save_vae

        if args.to != "diffusers":
            raise ValueError("the VAE is written in the diffusers layout only (--to diffusers)")
        save_vae(load_vae(args.src, param_dtype=dtype), args.dst)
    else:
        from ltx_jax.convert.t5 import load_text_encoder, save_text_encoder

        if args.to != "diffusers":
            raise ValueError("the text encoder is written in the transformers layout only (--to diffusers)")
        save_text_encoder(load_text_encoder(args.src, param_dtype=dtype), args.dst)
    print(f"wrote {args.dst}")
    return 0
