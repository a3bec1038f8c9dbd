"""PyTorch side of benches/train.rs: PGD-AT or TRADES images/s of a plain training loop.

usage: bench_train.py '{"family", "config", "io", "method", "batch", "iters", "steps", "threads",
                         "device", "amp", "channels_last"}'
       bench_train.py '{"family", "config", "io", "script_to"}'
The second form saves the reference network, scripted (torch.jit.script), for robarch to train as
a TorchScript module (`arch: torchscript, train: true`).
One PGD-AT step (`method` pgd-at, the default): PGD-ℓ∞ (ε 8/255, step 2/255, random start) with
the model in eval mode, then a train-mode forward on the adversarial batch, cross-entropy, backward,
AdamW step, and the loss read back (as a training loop logs it). One TRADES step (Zhang et al.
2019, `trades.py`, with the clean softmax computed once): in eval mode, `steps` signed steps of
2/255 ascending KL(f(x) ‖ f(x′)) from x + 0.001·N(0, I), projected; then train-mode forwards on x
and x′, CE + 6·KL (batch mean), backward and AdamW step; `amp`: forward passes under torch.autocast(bfloat16);
`channels_last`: model and inputs in channels-last memory format. Prints images/s of `iters` steps after one warm-up step.
"""
import json
import pathlib
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import reference_models  # noqa: E402


def pgd(m, x, y, eps, alpha, steps, amp):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        with amp:
            logits = m(adv)
        loss = F.cross_entropy(logits.float(), y)
        (g,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * g.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def trades_adv(m, x, eps, alpha, steps, amp):
    with torch.no_grad(), amp:
        p = F.softmax(m(x).float(), dim=1)
    adv = x + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        adv.requires_grad_(True)
        with amp:
            logits = m(adv)
        loss = F.kl_div(F.log_softmax(logits.float(), dim=1), p, reduction="sum")
        (g,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * g.sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def main():
    r = json.loads(sys.argv[1])
    if "script_to" in r:
        torch.jit.script(reference_models.build(r["family"], r["config"], r["io"])).save(r["script_to"])
        return
    torch.set_num_threads(r["threads"])
    dev = torch.device("cuda" if r["device"] == "cuda" else "cpu")
    io = r["io"]
    m = reference_models.build(r["family"], r["config"], io).to(dev)
    fmt = torch.channels_last if r.get("channels_last") else torch.contiguous_format
    m = m.to(memory_format=fmt)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bool(r.get("amp")))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.01)
    b, n = r["batch"], r["batch"] * r["iters"]
    trades = r.get("method", "pgd-at") == "trades"
    xs = torch.randint(0, 256, (n, io["in_channels"], io["image_size"], io["image_size"]),
                       dtype=torch.uint8)
    ys = torch.randint(io["num_classes"], (n,))

    def step(i):
        lo = (i * b) % n
        x = xs[lo:lo + b].to(dev).float().div_(255).contiguous(memory_format=fmt)
        y = ys[lo:lo + b].to(dev)
        m.eval()
        if trades:
            adv = trades_adv(m, x, 8 / 255, 2 / 255, r["steps"], amp)
            m.train()
            with amp:
                clean, robust = m(x).float(), m(adv).float()
            kl = F.kl_div(F.log_softmax(robust, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
            loss = F.cross_entropy(clean, y) + 6.0 * kl
        else:
            adv = pgd(m, x, y, 8 / 255, 2 / 255, r["steps"], amp)
            m.train()
            with amp:
                logits = m(adv)
            loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    step(0)
    t = time.perf_counter()
    for i in range(r["iters"]):
        step(i)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    print(n / (time.perf_counter() - t))


if __name__ == "__main__":
    main()
