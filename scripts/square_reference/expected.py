"""Prints the expected values of square.rs `single_run_reproduces_the_reference_trajectory`:
pyautoattack's SquareAttack.attack_single_run on model.make() with its random calls answered
from robarch's seeded draws (harness.py). Run with the project's .venv python."""
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from harness import *
from model import make
W, x, y, model = make()
wts = (torch.arange(300) % 7 + 1).float()
for norm, eps, loss in [('Linf', 0.015625, 'margin'), ('Linf', 0.01171875, 'ce'), ('L2', 1.0, 'margin'), ('L2', 1.0, 'ce'), ('L1', 4.0, 'ce'), ('L1', 4.0, 'margin')]:
    idx, nq, xb = run_reference(model, x, y, eps, norm, 60, seed=11, loss=loss)
    d = (xb - x[idx]).flatten(1).double()
    fooled = model(xb).argmax(1) != y[idx]
    nrm = {'Linf': d.abs().max(1)[0], 'L2': d.norm(dim=1), 'L1': d.abs().sum(1)}[norm]
    print(f"{norm} {eps} {loss}: idx {idx.tolist()}")
    print("  nq", [int(v) for v in nq.tolist()], "fooled", fooled.tolist())
    print("  sum", [round(v, 6) for v in d.sum(1).tolist()])
    print("  wsum", [round(v, 6) for v in (d * wts.double()).sum(1).tolist()])
    print("  norm", [round(v, 6) for v in nrm.tolist()])
