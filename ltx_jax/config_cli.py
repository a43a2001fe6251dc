"""Print a YAML config resolved with its variant row and dotted key=value overrides."""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("config", help="configs/*.yaml")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.num_layers=4")


def main(args) -> int:
    import yaml

    from ltx_jax.config import config_to_dict, load_config

    print(yaml.safe_dump(config_to_dict(load_config(args.config, args.overrides)), sort_keys=False))
    return 0
