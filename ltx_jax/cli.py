"""`ltx-jax` (also `python -m ltx_jax`): one entry point with verbs.

Each verb lives in the module that implements it, which provides `add_arguments(parser)` and
`main(args) -> int`; this file only lists them. A verb appears once its module exists.

  ltx-jax train CONFIG.yaml [key=value ...]
  ltx-jax generate [--random-tiny | MODEL] --prompt "..." [...]
  ltx-jax bench {dit,attention,vae,sample,train} [...]     (JSON out)
  ltx-jax convert SRC DST [--to diffusers|lightricks] [--component ...]
  ltx-jax preprocess ...
  ltx-jax config CONFIG.yaml [key=value ...]               (print the resolved config)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# verb -> (module, one-line help)
VERBS = {
    "train": ("ltx_jax.train", "train a model from a YAML config"),
    "generate": ("ltx_jax.sample", "text (or image) to video"),
    "bench": ("ltx_jax.bench", "benchmarks writing JSON"),
    "convert": ("ltx_jax.convert.cli", "convert checkpoints between layouts"),
    "preprocess": ("ltx_jax.data.preprocess", "encode videos and captions into training shards"),
    "config": ("ltx_jax.config_cli", "print a resolved config"),
}


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ltx-jax", description="LTX-Video in JAX/Flax.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_) in VERBS.items():
        if not _exists(module):
            continue
        mod = importlib.import_module(module)
        p = verbs.add_parser(verb, help=help_, description=(mod.__doc__ or help_).strip().split("\n\n")[0],
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(func=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear message, no traceback
        print(f"ltx-jax {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
