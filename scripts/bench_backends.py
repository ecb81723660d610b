"""Measure the expert backends with tiny models built from configs (offline, CPU or GPU):

1. the transformers LRU pool under a memory budget: loads, unloads and hits for two access patterns, and how much
   slower a call is when its model must be loaded first;
2. the model server's overhead: the same expert called in-process and through `hugginggpt serve-models` (a separate
   process on 127.0.0.1): tiny transformers models (a text call; an image call with upload + artifact download) and,
   where installed and set up, the embedded OCR and COCO detection experts on the demo images.

Usage: .venv/bin/python scripts/bench_backends.py [--calls 40] [--device cpu]
Prints medians and ratios measured in one run (the machine is shared: compare ratios, not absolute times).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import httpx
import numpy as np
from PIL import Image

import tinymodels
from hugginggpt.experts.protocol import ExpertContext
from hugginggpt.experts.server import ServerBackend
from hugginggpt.experts.transformers import TransformersBackend, weights_bytes
from hugginggpt.types import ModelCard
from hugginggpt.workspace import Workspace
from localserver import free_port


def ms(seconds: float) -> str:
    return "—" if seconds != seconds else f"{seconds * 1000:8.1f} ms"


async def pool_benchmark(cache: Path, workdir: Path, device: str) -> None:
    ids = [f"bench/bert-{i}" for i in range(3)]
    for model_id in ids:
        tinymodels.text_classifier(cache, model_id, hidden=384)
    size = weights_bytes(tinymodels.cache_folder(cache, ids[0]))
    budget = int(size * 2.5)  # room for two of the three models
    ctx = ExpertContext(Workspace(workdir / "out", [workdir]), 0, "text-classification")
    print(
        f"\n## LRU pool: 3 models of {size / 2**20:.1f} MB, budget {budget / 2**20:.1f} MB (two fit), device {device}"
    )
    patterns = {
        "round robin A B C A B C ... (LRU worst case)": [ids[i % 3] for i in range(18)],
        "locality A A A B B B C C C A A A ...": [ids[(i // 3) % 3] for i in range(18)],
    }
    print(f"{'pattern':48} {'calls':>5} {'loads':>5} {'unloads':>7} {'hits':>5} {'miss call':>11} {'hit call':>11}")
    for name, order in patterns.items():
        backend = TransformersBackend(cache_dir=cache, online=False, ram_bytes=budget, gpu_bytes=budget, device=device)
        experts = {m: backend.expert(ModelCard(id=m, task="text-classification")) for m in ids}
        await experts[ids[0]].run({"text": "warm up"}, ctx)  # imports transformers and torch once
        backend.pool.clear()
        backend.pool.loads = backend.pool.unloads = backend.pool.hits = 0
        misses, hits = [], []
        for model_id in order:
            loaded = backend.pool.loaded()
            start = time.perf_counter()
            await experts[model_id].run({"text": "a good movie"}, ctx)
            elapsed = time.perf_counter() - start
            (hits if any(k.startswith(model_id + "@") for k in loaded) else misses).append(elapsed)
            report = backend.pool.report()
            assert all(report.used_mb[d] <= report.budgets_mb[d] for d in report.used_mb)
        report = backend.pool.report()
        miss = statistics.median(misses) if misses else float("nan")
        hit = statistics.median(hits) if hits else float("nan")
        print(
            f"{name:48} {len(order):5} {report.loads:5} {report.unloads:7} {report.hits:5} {ms(miss):>11} {ms(hit):>11}"
        )
    print(f"a call whose model must be loaded first is {miss / hit:.1f}x a call to a loaded model (last pattern)")


async def server_benchmark(cache: Path, workdir: Path, calls: int, device: str) -> None:
    tinymodels.text_classifier(cache, "bench/bert-server", hidden=384)
    tinymodels.object_detector(cache, "bench/yolos-server")
    photo = workdir / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((480, 640, 3)) * 255).astype("uint8")).save(photo)
    port = free_port()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HUGGINGGPT_TRANSFORMERS_CACHE_DIR": str(cache),
        "HUGGINGGPT_TRANSFORMERS_DEVICE": device,
        "HUGGINGGPT_CATALOG_SNAPSHOT": str(workdir / "none.jsonl"),
    }
    (workdir / "none.jsonl").write_text("")
    command = [sys.executable, "-m", "hugginggpt.cli", "serve-models", "--port", str(port)]
    command += ["-m", "text-classification=bench/bert-server", "-m", "object-detection=bench/yolos-server"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/running", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        local = TransformersBackend(cache_dir=cache, online=False, device=device)
        remote = ServerBackend([url])
        cases = [
            ("text-classification", local.expert(ModelCard(id="bench/bert-server", task="text-classification")),
             {"text": "a good movie"}),
            ("object-detection", local.expert(ModelCard(id="bench/yolos-server", task="object-detection")),
             {"image": str(photo)}),
        ]  # fmt: skip
        cases += _embedded_cases()
        print(f"\n## model server overhead: median of {calls} calls each, after one warm-up call, device {device}")
        print("(server run = the expert's time inside the server; HTTP + files = via server - server run)")
        header = f"{'task':20} {'model':36} {'in-process':>11} {'via server':>11} {'ratio':>6}"
        print(header + f" {'server run':>11} {'HTTP + files':>12}")
        for task, in_process, args in cases:
            card = in_process.card
            model_id = card.id
            ctx = ExpertContext(
                Workspace(workdir / "out", [workdir, *(Path(v).parent for v in args.values())]), 0, task
            )
            times = {}
            for name, expert in (("in-process", in_process), ("via server", remote.expert(card))):
                await expert.run(args, ctx)
                samples = []
                for _ in range(calls):
                    start = time.perf_counter()
                    await expert.run(args, ctx)
                    samples.append(time.perf_counter() - start)
                times[name] = statistics.median(samples)
            inproc, served = times["in-process"], times["via server"]
            inside = await _server_run_seconds(url, card, args, max(5, calls // 4))
            print(
                f"{task:20} {model_id:36} {ms(inproc):>11} {ms(served):>11} {served / inproc:5.2f}x"
                f" {ms(inside):>11} {ms(served - inside):>12}"
            )
        memory = httpx.get(f"{url}/memory").json()
        print(f"server RSS {memory['rss_mb']} MB; pool {json.dumps(memory['pool']['used_mb'])} MB used")
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _server_run_seconds(url: str, card: ModelCard, args: dict[str, str], calls: int) -> float:
    """Median of the `seconds` the server reports for running the expert itself."""
    plain = {k: v for k, v in args.items() if k != "image"}
    samples = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for _ in range(calls):
            files = {"image": Path(args["image"]).read_bytes()} if "image" in args else None
            data = {"task": card.task, "args": json.dumps(plain)}
            reply = await client.post(f"/models/{card.id}", data=data, files=files)
            samples.append(reply.raise_for_status().json()["seconds"])
    return statistics.median(samples)


def _embedded_cases() -> list[tuple[str, Any, dict[str, str]]]:
    """The embedded OCR and COCO detection experts on the demo images, where installed and set up."""
    from hugginggpt.config import Settings
    from hugginggpt.experts.embedded import embedded_experts
    from hugginggpt.experts.vision import vision_experts
    from hugginggpt.setup.files import demo_inputs

    demo = demo_inputs()
    experts = {(e.card.task, e.card.id): e for e in [*embedded_experts(Settings()), *vision_experts(Settings())]}
    wanted = [
        ("image-to-text", "rapidocr/PP-OCRv6-small", demo / "sign.png"),
        ("object-detection", "embedded/centernet-mobilenetv3-coco", demo / "horses.jpg"),
    ]
    cases = []
    for task, model_id, image in wanted:
        expert = experts.get((task, model_id))
        if expert is not None and expert.card.available and image.is_file():
            cases.append((task, expert, {"image": str(image)}))
        else:
            print(f"(skipping {model_id}: not installed, or `hugginggpt setup` has not run)")
    return cases


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hugginggpt-bench-") as tmp:
        workdir = Path(tmp)
        cache = workdir / "cache"
        await pool_benchmark(cache, workdir, options.device)
        await server_benchmark(cache, workdir, options.calls, options.device)


if __name__ == "__main__":
    asyncio.run(main())
