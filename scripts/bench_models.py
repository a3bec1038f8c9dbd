"""PyTorch side of benches/models.rs: forward+backward images/s of one reference model.

usage: bench_models.py '{"family", "config", "io", "batch", "iters", "threads", "device"}'
Prints the images/s on stdout.
"""
import json
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference_models  # noqa: E402


def main():
    r = json.loads(sys.argv[1])
    torch.set_num_threads(r["threads"])
    dev = torch.device("cuda" if r["device"] == "cuda" else "cpu")
    io = r["io"]
    fmt = torch.channels_last if r.get("channels_last") else torch.contiguous_format
    m = reference_models.build(r["family"], r["config"], io).to(dev).train()
    m = m.to(memory_format=fmt)
    x = torch.rand(r["batch"], io["in_channels"], io["image_size"], io["image_size"], device=dev)
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(io["num_classes"], (r["batch"],), device=dev)

    def step():
        F.cross_entropy(m(x), y).backward()

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(r["iters"]):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(r["batch"] * r["iters"] / (time.perf_counter() - t))


if __name__ == "__main__":
    main()
