"""`ltx-jax generate`: text (or image) to video with `LTXPipeline`, writing mp4 + JSON sidecar.

`ltx-jax generate PATH --prompt ...` loads a diffusers pipeline folder; `--random-tiny` builds a
tiny, randomly initialised pipeline instead (nothing is downloaded), which is what the quickstart
runs until trained weights can be loaded. Sizes that the VAE cannot produce are rounded to the
nearest valid ones, and the verb says so (the library itself refuses them). The stages
(encode / denoise / decode) are reported on stderr as they start and end.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ltx_jax.config import dit_config
from ltx_jax.dit.transformer import Transformer3D
from ltx_jax.nn.layers import jit_init
from ltx_jax.pipeline import LTXPipeline, settings_record
from ltx_jax.pipeline_inputs import latent_grid, round_video_size  # noqa: F401 (latent_grid re-exported)
from ltx_jax.text.t5 import T5Config, T5Encoder
from ltx_jax.vae.autoencoder import CausalVideoAutoencoder
from ltx_jax.vae.config import VARIANTS as VAE_VARIANTS

# diffusers' LTX-Video scheduler_config.json (FlowMatchEulerDiscreteScheduler).
DIFFUSERS_SCHEDULER = {
    "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 1.0,
    "use_dynamic_shifting": True, "base_shift": 0.95, "max_shift": 2.05,
    "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1,
    "time_shift_type": "exponential",
}

# What the quickstart generates with the tiny random pipeline (small enough for a CPU).
TINY_SETTINGS = dict(num_frames=17, height=64, width=96, num_inference_steps=8, guidance_scale=3.0,
                     decode_timestep=0.05, max_sequence_length=32)


def tiny_tokenizer():
    """A small T5 tokenizer built offline (unigram pieces: letters and common words)."""
    from transformers import T5TokenizerFast

    words = ("a the of and in on with red green blue cat dog car sky sea city street walking running "
             "flying camera slowly fast sunset night day forest mountain river person woman man").split()
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -2.0) for w in words] + [("\u2581", -3.0)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.!?'-"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def tiny_random_pipeline(seed: int = 0) -> LTXPipeline:
    """Tiny random T5 (width 24), DiT (`tiny` variant) and VAE (`tiny-0.9.1`, t-conditioned)."""
    tokenizer = tiny_tokenizer()
    t5_cfg = T5Config(vocab_size=len(tokenizer), d_model=24, d_kv=8, d_ff=48, num_heads=3, num_layers=2)
    t5 = jit_init(lambda rngs: T5Encoder(t5_cfg, rngs=rngs), seed)
    dit = jit_init(lambda rngs: Transformer3D(dit_config("tiny"), rngs=rngs), seed + 1)
    vae = jit_init(lambda rngs: CausalVideoAutoencoder(VAE_VARIANTS["tiny-0.9.1"], rngs=rngs), seed + 2)
    return LTXPipeline(tokenizer=tokenizer, text_encoder=t5, transformer=dit, vae=vae,
                       scheduler_config=dict(DIFFUSERS_SCHEDULER))


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float) -> str | None:
    """Writes [F, H, W, 3] in [0, 1] as H.264 mp4 with PyAV; returns the path, or None without PyAV."""
    try:
        import av
    except ImportError:
        return None
    path = str(path)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        for frame in (frames * 255).round().astype(np.uint8):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def stage_printer(stream=None):
    """A `progress` callback that prints each stage as it starts, with the previous stage's time."""
    state = {"stage": None, "t": 0.0}

    def report(stage: str, info: dict) -> None:
        now, out = time.perf_counter(), stream or sys.stderr
        if state["stage"] is not None:
            print(f"  {state['stage']} done in {now - state['t']:.2f} s", file=out, flush=True)
        details = ", ".join(f"{k} {v}" for k, v in info.items())
        print(f"[{stage}] {details}", file=out, flush=True)
        state.update(stage=stage, t=now)

    return report


def generate(pipe: LTXPipeline, prompt: str, out_dir: str | os.PathLike, *, seed: int = 0, weights: str = "",
             progress=None, **kwargs) -> dict:
    """Runs `pipe` and writes frames.npy, clip.mp4 and the clip.json sidecar (every setting, the seed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    video = pipe(prompt, seed=seed, progress=progress, **kwargs)
    total = time.perf_counter() - t0
    np.save(out / "frames.npy", video[0])
    mp4 = write_video(video[0], out / "clip.mp4", kwargs.get("frame_rate", 25.0))
    sidecar = {
        "prompt": prompt, "seed": seed, "weights": weights,
        "settings": settings_record(**kwargs), "shape": list(video.shape[1:]),
        "files": ["frames.npy"] + (["clip.mp4"] if mp4 else []),
        "timings_s": {k: round(v, 3) for k, v in pipe.timings.items()}, "generate_s": round(total, 3),
        "hardware": jax.devices()[0].device_kind,
    }
    (out / "clip.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def generate_random_tiny(prompt: str, out_dir: str | os.PathLike, *, seed: int = 0, progress=None, **kwargs) -> dict:
    """The quickstart job: a tiny random pipeline generates a clip into out_dir (frames, mp4, JSON)."""
    t0 = time.perf_counter()
    pipe = tiny_random_pipeline(seed)
    build = time.perf_counter() - t0
    result = generate(pipe, prompt, out_dir, seed=seed, weights="tiny random (no trained weights)",
                      progress=progress, **{**TINY_SETTINGS, **kwargs})
    result["build_s"] = round(build, 3)
    (Path(out_dir) / "clip.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def add_video_size_arguments(p, frames: int, height: int, width: int) -> None:
    """--frames/--height/--width options shared by the verbs that take a video size."""
    p.add_argument("--frames", type=int, default=frames, help="pixel frames, 8k+1")
    p.add_argument("--height", type=int, default=height, help="pixel height, multiple of 32")
    p.add_argument("--width", type=int, default=width, help="pixel width, multiple of 32")


def add_arguments(p) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help="diffusers pipeline folder (transformer/, vae/, ...) or a Lightricks single .safetensors")
    p.add_argument("--text-encoder", default=None,
                   help="text encoder folder (text_encoder/ + tokenizer/); required with a single file")
    p.add_argument("--prompt", default="a red car driving through the city at night", help="text prompt")
    p.add_argument("--negative-prompt", default="", help="negative prompt for CFG")
    p.add_argument("--random-tiny", action="store_true", help="use a tiny randomly initialised model (no weights needed)")
    p.add_argument("--image", default=None, help="image file conditioning the first frame (image-to-video)")
    p.add_argument("--semantics", default="diffusers", choices=("diffusers", "official"), help="reference behaviour")
    add_video_size_arguments(p, None, None, None)
    p.add_argument("--frame-rate", type=float, default=25.0, help="frames per second")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the semantics' default)")
    p.add_argument("--guidance-scale", type=float, default=None, help="CFG scale; <= 1 turns CFG off")
    p.add_argument("--stg-scale", type=float, default=None, help="STG scale (official semantics)")
    p.add_argument("--stg-blocks", type=int, nargs="*", default=None, help="STG skip blocks (official semantics)")
    p.add_argument("--decode-timestep", type=float, default=None, help="VAE decode timestep")
    p.add_argument("--decode-noise-scale", type=float, default=None, help="decode noise scale")
    p.add_argument("--max-sequence-length", type=int, default=None, help="T5 tokens")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="DiT and VAE dtype")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", default="runs/generate", help="output folder")


def _call_kwargs(args) -> dict:
    kw = dict(negative_prompt=args.negative_prompt, frame_rate=args.frame_rate, semantics=args.semantics)
    for name, key in (("steps", "num_inference_steps"), ("guidance_scale", "guidance_scale"),
                      ("stg_scale", "stg_scale"), ("stg_blocks", "skip_block_list"),
                      ("decode_timestep", "decode_timestep"), ("decode_noise_scale", "decode_noise_scale"),
                      ("max_sequence_length", "max_sequence_length"), ("image", "image")):
        if getattr(args, name) is not None:
            kw[key] = getattr(args, name)
    return kw


def main(args) -> int:
    if args.random_tiny == (args.model is not None):
        raise ValueError("give a pipeline folder (ltx-jax generate PATH ...) or --random-tiny, not both or neither")
    kw = _call_kwargs(args)
    defaults = TINY_SETTINGS if args.random_tiny else dict(num_frames=121, height=512, width=768)
    size = [args.frames or defaults["num_frames"], args.height or defaults["height"], args.width or defaults["width"]]
    (f, h, w), notes = round_video_size(*size)
    for note in notes:
        print(f"ltx-jax generate: rounded {note}", file=sys.stderr)
    kw.update(num_frames=f, height=h, width=w)
    progress = stage_printer()
    if args.random_tiny:
        result = generate_random_tiny(args.prompt, args.out, seed=args.seed, progress=progress, **kw)
    else:
        if not Path(args.model).is_dir():
            raise ValueError(f"pipeline folder not found: {args.model}")
        dtype = jnp.dtype(args.dtype)
        pipe = LTXPipeline.from_pretrained(args.model, text_encoder=args.text_encoder, dtype=dtype, param_dtype=dtype,
                                           text_encoder_dtype=jnp.float32)
        result = generate(pipe, args.prompt, args.out, seed=args.seed, weights=str(args.model), progress=progress, **kw)
    print(f"  decode done in {result['timings_s'].get('decode', 0.0):.2f} s", file=sys.stderr)
    print(f"wrote {', '.join(result['files'])} and clip.json to {args.out} "
          f"({result['shape'][0]} frames {result['shape'][1]}x{result['shape'][2]}, "
          f"{result['generate_s']:.1f} s; {result['weights']})")
    return 0
