"""`ltx-jax` (also `python -m ltx_jax`): one entry point with verbs.

  ltx-jax convert SRC DST --to diffusers|lightricks [--component transformer|vae|text_encoder]
  ltx-jax bench dit [--variant ltxv-2b --frames 121 --height 512 --width 768 ...] [--out F.json]
  ltx-jax generate --random-tiny --prompt "..." [--frames 17 --height 64 --width 96 ...]
  ltx-jax config CONFIG.yaml [key=value ...]   (print the resolved config)

Verbs arrive with their issues (train, generate, preprocess); each has `--help` listing every option.
"""

from __future__ import annotations

import argparse
import sys


def _convert(args) -> int:
    import jax.numpy as jnp

    from ltx_jax.config import to_dtype

    dtype = to_dtype(args.dtype) if args.dtype else jnp.float32
    if args.component == "transformer":
        from ltx_jax.convert.transformer import load_transformer, save_transformer

        save_transformer(load_transformer(args.src, param_dtype=dtype), args.dst, layout=args.to)
    elif args.component == "vae":
        from ltx_jax.convert.vae import load_vae, save_vae

        if args.to != "diffusers":
            raise SystemExit("ltx-jax convert: the VAE is written in the diffusers layout only (--to diffusers)")
        save_vae(load_vae(args.src, param_dtype=dtype), args.dst)
    else:
        from ltx_jax.convert.t5 import load_text_encoder, save_text_encoder

        save_text_encoder(load_text_encoder(args.src, param_dtype=dtype), args.dst)
    print(f"wrote {args.dst}")
    return 0


def _bench(args) -> int:
    from ltx_jax import bench

    if args.what == "dit":
        result = bench.bench_dit(
            args.variant, frames=args.frames, height=args.height, width=args.width,
            batch=args.batch, text_len=args.text_len, dtype=args.dtype, attention=args.attention,
            baseline=None if args.baseline == "none" else args.baseline, iters=args.iters,
            remat_policy=args.remat,
        )
    print(bench.write_json(result, args.out))
    return 0


def _generate(args) -> int:
    from ltx_jax.sample import generate_random_tiny

    if not args.random_tiny:
        raise ValueError(
            "only --random-tiny generation exists so far (loading pipeline folders comes with "
            "LTXPipeline, issue 4); pass --random-tiny"
        )
    result = generate_random_tiny(
        args.prompt, args.out, seed=args.seed, negative_prompt=args.negative_prompt,
        num_frames=args.frames, height=args.height, width=args.width, frame_rate=args.frame_rate,
        num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
    )
    print(f"wrote {', '.join(result['files'])} and clip.json to {args.out} "
          f"({result['shape'][0]} frames {result['shape'][1]}x{result['shape'][2]}, "
          f"{result['generate_s']:.1f} s; {result['weights']})")
    return 0


def _config(args) -> int:
    import yaml

    from ltx_jax.config import config_to_dict, load_config

    print(yaml.safe_dump(config_to_dict(load_config(args.config, args.overrides)), sort_keys=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltx-jax", description="LTX-Video in JAX/Flax.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("convert", help="convert checkpoints between layouts",
                         description="Read a checkpoint (Lightricks single file or diffusers folder) and write it back in a layout.")
    p.add_argument("src", help="source: .safetensors file or folder")
    p.add_argument("dst", help="destination: folder (diffusers) or .safetensors file (lightricks)")
    p.add_argument("--to", choices=("diffusers", "lightricks"), default="diffusers", help="output layout (default diffusers)")
    p.add_argument("--component", choices=("transformer", "vae", "text_encoder"), default="transformer",
                   help="which model the checkpoint holds (default transformer)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="storage dtype of the written tensors (default float32)")
    p.set_defaults(func=_convert)

    p = verbs.add_parser("bench", help="benchmarks writing JSON",
                         description="Compile ahead of time, report memory, time steady-state runs against a baseline.")
    p.add_argument("what", choices=("dit",), help="dit: one Transformer3D forward pass")
    p.add_argument("--variant", default="ltxv-2b", help="DiT variant row (default ltxv-2b)")
    p.add_argument("--frames", type=int, default=121, help="pixel frames, 8k+1 (default 121)")
    p.add_argument("--height", type=int, default=512, help="pixel height, multiple of 32 (default 512)")
    p.add_argument("--width", type=int, default=768, help="pixel width, multiple of 32 (default 768)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--text-len", type=int, default=128, help="text tokens (default 128)")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16", "float16"), help="compute and storage dtype")
    p.add_argument("--attention", default="auto", help="attention impl under test (default auto)")
    p.add_argument("--baseline", default="xla", help="baseline attention impl, or 'none' (default xla)")
    p.add_argument("--remat", default="none", help="remat policy name (default none)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations (default 10)")
    p.add_argument("--out", default=None, help="write the JSON here too")
    p.set_defaults(func=_bench)

    p = verbs.add_parser("generate", help="text to video",
                         description="Generate a clip from a prompt; writes frames.npy, clip.mp4 (with PyAV) and clip.json.")
    p.add_argument("--prompt", default="a red car driving through the city at night", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="negative prompt for CFG (default empty)")
    p.add_argument("--random-tiny", action="store_true", help="use a tiny randomly initialised model (no weights needed)")
    p.add_argument("--frames", type=int, default=17, help="pixel frames, 8k+1 (default 17)")
    p.add_argument("--height", type=int, default=64, help="pixel height, multiple of 32 (default 64)")
    p.add_argument("--width", type=int, default=96, help="pixel width, multiple of 32 (default 96)")
    p.add_argument("--frame-rate", type=float, default=25.0, help="frames per second (default 25)")
    p.add_argument("--steps", type=int, default=8, help="denoising steps (default 8)")
    p.add_argument("--guidance-scale", type=float, default=3.0, help="CFG scale; <= 1 turns CFG off (default 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default="runs/generate", help="output folder (default runs/generate)")
    p.set_defaults(func=_generate)

    p = verbs.add_parser("config", help="print a resolved config",
                         description="Load a YAML config with dotted key=value overrides and print the resolved result.")
    p.add_argument("config", help="configs/*.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.num_layers=4")
    p.set_defaults(func=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear message, no traceback
        print(f"ltx-jax {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
