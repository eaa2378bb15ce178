"""A plain Gradio app with nothing of Atelier, measured beside it: what Gradio and gradio_client cost by themselves.

- `/echo`: one queued echo, the cost of any queued call through gradio_client on this machine.
- `/generate_image` (with --sd DIR): the same pipeline folder Atelier loaded, run as a plain Gradio app would run
  it: one queued event, the documented diffusers call (Euler a, a CPU generator seeded per call), the image out
  as a PNG (gr.Image, format="png"). It takes /generate_image's parameters by the same names, so the benchmark
  sends both apps the same call.
- `/chat` (with --text DIR): the same text model folder streamed the plain way: model.generate() with a
  TextIteratorStreamer in a thread, each new piece yielded to a gr.Textbox.

    python bench/_vanilla_gradio.py PORT [--sd DIR] [--text DIR] [--threads N] [--interop N]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def echo(text: str) -> str:
    """Return the text unchanged: the call costs only Gradio and gradio_client."""
    return text


PROBES = ""  # --probes: a JSON-lines file that gets each pipeline call's start and end (time.perf_counter())


def record(name: str, t0: float, t1: float, cpu: float) -> None:
    """One timing line for the benchmark, as bench/_probes.py writes them (`cpu`: the thread's CPU seconds)."""
    if PROBES:
        import _probes

        _probes._record(name, t0, t1, cpu)


def image_endpoint(folder: str) -> Any:
    """/generate_image on the diffusers pipeline in `folder`, the plain way."""
    import _null_model
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if (null := _null_model.settings()) is not None:
        _null_model.install(pipe, *null)

    def generate_image(prompt: str, negative_prompt: str, width: float, height: float, steps: float,
                       cfg_scale: float, seed: float, sampler: str, batch_count: float) -> Any:
        """One image: the pipeline call, a PIL image out (Gradio writes it as a PNG into its cache)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return call(prompt, negative_prompt, width, height, steps, cfg_scale, seed)
        finally:
            record("pipeline call (generate_batch, incl. previews)", t0, time.perf_counter(),
                   time.thread_time() - c0)

    def call(prompt: str, negative_prompt: str, width: float, height: float, steps: float, cfg_scale: float,
             seed: float) -> Any:
        return pipe(prompt=prompt, negative_prompt=negative_prompt or None, width=int(width), height=int(height),
                    num_inference_steps=int(steps), guidance_scale=cfg_scale,
                    generator=torch.Generator("cpu").manual_seed(int(seed))).images[0]

    return generate_image


def chat_endpoint(folder: str, gptq_backend: str = "") -> Any:
    """/chat on the causal LM in `folder` (loaded as Atelier loads it on this device: fp32 on the CPU, and the same
    GPTQ kernel when `gptq_backend` names it): generate() streamed through a TextIteratorStreamer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPTQConfig, TextIteratorStreamer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    kernel = {}
    if gptq_backend and gptq_backend != "auto":
        bits = AutoConfig.from_pretrained(folder).quantization_config.get("bits", 4)
        kernel = {"quantization_config": GPTQConfig(bits=bits, backend=gptq_backend)}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map={"": "cpu"}, **kernel)
    model.eval()

    def chat(message: str, temperature: float, top_p: float, max_new_tokens: float) -> Iterator[tuple[str, int]]:
        """Stream the reply: the text so far at each new piece, and the pieces so far (the tokens, at the end)."""
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        counted: list[int] = []

        def generate() -> None:
            with torch.inference_mode():
                ids = model.generate(**prompt, streamer=streamer, max_new_tokens=int(max_new_tokens),
                                     do_sample=True, temperature=temperature, top_p=top_p)
            counted.append(int(ids.shape[1] - prompt["input_ids"].shape[1]))

        thread = threading.Thread(target=generate)
        thread.start()
        text, pieces = "", 0
        for piece in streamer:
            text, pieces = text + piece, pieces + 1
            yield text, pieces
        thread.join()
        yield text, counted[0]

    return chat


def main() -> None:
    """Serve the endpoints on 127.0.0.1:PORT until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--sd", help="a diffusers Stable Diffusion folder: also serve /generate_image")
    parser.add_argument("--text", help="a transformers causal LM folder: also serve /chat")
    parser.add_argument("--gptq-backend", default="", help="with --text: the GPTQ kernel (Atelier's choice)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--interop", type=int, default=None, help="torch inter-op threads")
    parser.add_argument("--probes", default="", help="a JSON-lines file for the pipeline calls' timings")
    parser.add_argument("--cpu-profile", help="sample CPU by Python stack (bench/_cpu_profile.py) into this file")
    args = parser.parse_args()
    global PROBES
    PROBES = args.probes
    if PROBES:  # Gradio's phases, as in Atelier's server
        import _probes

        _probes.install_gradio_probes(PROBES)
    if args.cpu_profile:
        import _cpu_profile

        if os.environ.get("ATELIER_BENCH_PROFILE_KIND") == "cprofile":
            _cpu_profile.start_main_thread_profile(args.cpu_profile)
        else:
            _cpu_profile.start(args.cpu_profile)
    if args.threads is not None or args.interop is not None:
        import torch

        if args.interop is not None:
            torch.set_num_interop_threads(args.interop)  # only before any parallel work
        if args.threads is not None:
            torch.set_num_threads(args.threads)
    import gradio as gr

    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        gr.Button().click(echo, box, out, api_name="echo")
        if args.sd:
            numbers = [gr.Number() for _ in range(5)]
            inputs = [gr.Textbox(), gr.Textbox(), *numbers[:4], gr.Number(), gr.Textbox(), numbers[4]]
            gr.Button().click(image_endpoint(args.sd), inputs, gr.Image(type="pil", format="png"),
                              api_name="generate_image")
        if args.text:
            inputs = [gr.Textbox(), gr.Number(), gr.Number(), gr.Number()]
            gr.Button().click(chat_endpoint(args.text, args.gptq_backend), inputs, [gr.Textbox(), gr.Number()],
                              api_name="chat")
    demo.queue()
    if os.environ.get("ATELIER_BENCH_PROFILE_KIND") == "cprofile":
        # The event loop in the main thread, where the profiler runs: mounted on FastAPI and served by uvicorn
        # (launch() serves from a thread of its own).
        import uvicorn
        from fastapi import FastAPI

        app = gr.mount_gradio_app(FastAPI(), demo, path="/", show_error=False)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
        return
    demo.launch(server_name="127.0.0.1", server_port=args.port, quiet=True, show_error=False)


if __name__ == "__main__":
    main()
