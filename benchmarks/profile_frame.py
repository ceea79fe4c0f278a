"""Where an eager frame step spends its time: torch.profiler over one slow-AR step, one fast-AR pass and whole
frames of the ``small`` config (or ``tiny``), greedy, one thread.

    python benchmarks/profile_frame.py [--config small] [--frames 8] [--top 15]

Ops are the top-level ATen calls (what Python dispatches; their inner calls are not counted again). The
second table lists the ops of one frame by CPU time (profiler included); ``frame ms`` is the median wall time
of a frame without the profiler.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
from bench_generate import build_model, make_prompt
from torch.profiler import ProfilerActivity, profile


def top_level(prof) -> list:
    return [event for event in prof.events() if event.cpu_parent is None and event.name.startswith("aten::")]


def profiled(fn, repeat: int = 1):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeat):
            fn()
    events = top_level(prof)
    total_us = sum(event.cpu_time_total for event in events) / repeat
    return prof, len(events) / repeat, total_us


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="small", choices=["tiny", "small"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = build_model(args.config, torch.device("cpu"), getattr(torch, args.dtype))
    prompt = make_prompt(model, 1, 199, torch.device("cpu"))
    model.generate(*prompt, max_new_tokens=4, do_sample=False)  # prepares the session (and the CPU layout)
    session, fast = model.decode_session, model.audio_decoder

    @torch.no_grad()
    def slow_step():
        frame = session.frame
        # the 4-D step mask, as decode_frame makes it
        mask = ((session.slot_index <= session.slot) & session.attention_mask)[:, None, None]
        model(
            inputs_embeds=model.embed_inputs(frame[:, :1], frame[:, 1:, None]),
            attention_mask=mask, position_ids=session.position_ids,
            past_key_values=session.slow_cache, cache_position=session.slot, use_cache=True, logits_to_keep=1,
        )  # fmt: skip

    inputs = fast.embed_codes(session.frame[:, 2:3])

    @torch.no_grad()
    def fast_pass():
        fast.decode_step(inputs, 3, session.fast_cache)

    with torch.no_grad():
        _, slow_ops, slow_us = profiled(slow_step, 5)
        _, fast_ops, fast_us = profiled(fast_pass, 20)
        prof, frame_ops, frame_us = profiled(session.decode_frame, args.frames)
        wall = []
        for _ in range(args.frames):
            start = time.perf_counter()
            session.decode_frame()
            wall.append(time.perf_counter() - start)
    print(f"{args.config} config, {args.dtype}, 1 thread (profiler overhead included)\n")
    print("| unit | top-level ops | CPU ms |")
    print("|---|---:|---:|")
    print(f"| slow-AR step | {slow_ops:.0f} | {slow_us / 1e3:.2f} |")
    print(f"| fast-AR pass | {fast_ops:.0f} | {fast_us / 1e3:.2f} |")
    print(f"| frame | {frame_ops:.0f} | {frame_us / 1e3:.2f} |\n")
    print(f"frame ms without the profiler: {1e3 * statistics.median(wall):.1f} (median of {args.frames})\n")

    counts, self_us = collections.Counter(), collections.Counter()
    for event in top_level(prof):
        counts[event.name] += 1
        self_us[event.name] += event.cpu_time_total
    print("| op (one frame) | calls | CPU ms (incl. inner calls) |")
    print("|---|---:|---:|")
    for name, us in self_us.most_common(args.top):
        print(f"| {name} | {counts[name] / args.frames:.0f} | {us / args.frames / 1e3:.2f} |")


if __name__ == "__main__":
    main()
