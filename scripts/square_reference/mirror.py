"""Python transliteration of src/attacks/square.rs (per-sample eps, generalised grid, l1_box, clamp)."""
import torch, math
from harness import derive, draw, ORIG_RAND, rchoice, l1_box, SITE_INIT, SITE_WINDOW, SITE_SIGNS
import pyautoattack.square as sq

def p_selection(p_init, it, nq, resc):
    if resc:
        it = int(it / nq * 10000)
    tab = [(10,0),(50,1),(200,2),(500,3),(1000,4),(2000,5),(4000,6),(6000,7),(8000,8)]
    for hi, k in tab:
        if it <= hi:
            return p_init / 2**k
    return p_init / 2**9

def eta_rect(rows, cols, l1):
    d = torch.zeros(rows, cols)
    r0, c0 = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        b = torch.tensor([float(k + 1)])
        add = 1.0 / (b ** 4 if l1 else b ** 2)
        d[max(r0, 0):min(r0 + 2*k + 1, rows), max(c0, 0):min(c0 + 2*k + 1, cols)] += add
        r0 -= 1; c0 -= 1
    return unit(d, l1)

def unit(t, l1):
    return t / (t.abs().sum(dim=(0, 1), keepdim=True) if l1 else (t ** 2).sum(dim=(0, 1), keepdim=True).sqrt())

def eta(s, l1, tr):
    d = unit(torch.cat([eta_rect(s // 2, s, l1), -eta_rect(s - s // 2, s, l1)], 0), l1)
    return d.t().contiguous() if tr else d

def init_grid(h, w):
    s = max(min(h, w) // 5, 1)
    nh, nw = h // s, w // s
    off = lambda l, n: max(0, min(int((l - 5*s) / 2), l - n*s))
    sh, sw = off(h, nh), off(w, nw)
    return s, [(sh + a*s, sw + b*s) for a in range(nh) for b in range(nw)]

def col(e, like):
    return e.view(-1, *([1] * (like.dim() - 1)))

def margin_and_loss(model, x, y, loss):
    logits = model(x)
    yc = logits.gather(1, y[:, None])[:, 0]
    z = logits.clone(); z[torch.arange(len(y)), y] = -float('inf')
    m = yc - z.max(1)[0]
    return m, (m if loss == 'margin' else -torch.nn.functional.cross_entropy(logits, y, reduction='none'))

def rint(high, u):
    return int((torch.tensor([float(high)]) * u.view(1))[0].item())

def start(x, eps, norm, seed, r):
    n, c, h, w = x.shape
    e = col(eps, x)
    if norm == 'Linf':
        st = draw(seed, [SITE_INIT, r, 0], lambda: rchoice([n, c, 1, w]))
        return (x + e * st).clamp(0, 1)
    s, corners = init_grid(h, w); k = len(corners)
    signs, flips = draw(seed, [SITE_INIT, r, 0], lambda: (rchoice([k, n, c, 1, 1]), ORIG_RAND([k])))
    d = torch.zeros_like(x)
    for j, (vh, vw) in enumerate(corners):
        d[:, :, vh:vh+s, vw:vw+s] = eta(s, norm == 'L1', bool(flips[j] > 0.5)).view(1, 1, s, s) * signs[j]
    if norm == 'L2':
        return (x + d / (col((d.flatten(1) ** 2).sum(1).sqrt(), d) + 1e-12) * e).clamp(0, 1)
    return (x + l1_box(x, d, eps * (1 - 1e-6))).clamp(0, 1)

def side(p, c, h, w):
    return round(math.sqrt(p * (c*h*w) / c))

def propose(xc, xbc, ec, norm, p, seed, r, it):
    m, c, h, w = xc.shape
    e = col(ec, xc)
    u = draw(seed, [SITE_WINDOW, r, it], lambda: ORIG_RAND([5]))
    if norm == 'Linf':
        s = min(max(side(p, c, h, w), 1), min(h, w))
        vh, vw = rint(h - s, u[0]), rint(w - s, u[1])
        signs = draw(seed, [SITE_SIGNS, r, it], lambda: rchoice([c, 1, 1]))
        win = torch.zeros(1, 1, h, w); win[:, :, vh:vh+s, vw:vw+s] = 1
        nd = win * signs.unsqueeze(0) * (e * 2)
        xn = xbc + nd
        return torch.min(torch.max(xn, xc - e), xc + e).clamp(0, 1)
    s = max(side(p, c, h, w), 3)
    if s % 2 == 0: s += 1
    s = min(s, min(h, w))
    vh, vw, vh2, vw2 = rint(h - s, u[0]), rint(w - s, u[1]), rint(h - s, u[2]), rint(w - s, u[3])
    signs = draw(seed, [SITE_SIGNS, r, it], lambda: rchoice([m, c, 1, 1]))
    et = eta(s, norm == 'L1', bool(u[4] > 0.5)).view(1, 1, s, s)
    d = xbc - xc
    w1 = d[:, :, vh:vh+s, vw:vw+s]
    m1 = torch.zeros(1, 1, h, w); m1[:, :, vh:vh+s, vw:vw+s] = 1
    m2 = torch.zeros(1, 1, h, w); m2[:, :, vh2:vh2+s, vw2:vw2+s] = 1
    mask = torch.maximum(m1, m2)
    fresh = et * signs
    if norm == 'L2':
        nw1 = (w1 ** 2).sum((2, 3), keepdim=True).sqrt()
        ni = col((d.flatten(1) ** 2).sum(1).sqrt(), d)
        nws = ((d * mask) ** 2).sum((2, 3), keepdim=True).sqrt()
        nd = fresh + w1 / (nw1 + 1e-12)
        budget = ((e ** 2 - ni ** 2).clamp_min(0) / c + nws ** 2).sqrt()
        new = nd / ((nd ** 2).sum((2, 3), keepdim=True).sqrt() + 1e-12) * budget
    else:
        nw1 = w1.abs().sum((2, 3), keepdim=True)
        ni = col(d.flatten(1).abs().sum(1), d)
        nws = (d * mask).abs().sum((2, 3), keepdim=True)
        nd = fresh + w1 / (nw1 + 1e-12)
        budget = (e - ni).clamp_min(0) / c + nws
        new = nd / (nd.abs().sum((2, 3), keepdim=True) + 1e-12) * budget * c
    d[:, :, vh2:vh2+s, vw2:vw2+s] = 0
    d[:, :, vh:vh+s, vw:vw+s] = new
    if norm == 'L2':
        return (xc + d / (col((d.flatten(1) ** 2).sum(1).sqrt(), d) + 1e-12) * e).clamp(0, 1)
    return (xc + l1_box(xc, d, ec * (1 - 1e-6))).clamp(0, 1)

def single_run(model, x, y, eps, norm, queries, loss, seed, r, p_init=.8, resc=False):
    with torch.no_grad():
        n = x.shape[0]
        xb = start(x, eps, norm, seed, r)
        mm, lm = margin_and_loss(model, xb, y, loss)
        nq = torch.ones(n)
        if not bool((mm < 0).all()):
            for it in range(queries):
                idx = (mm > 0).nonzero()[:, 0]
                if len(idx) == 0: break
                xc, xbc, yc, ec = x[idx], xb[idx], y[idx], eps[idx]
                mmc, lmc = mm[idx], lm[idx]
                p = p_selection(p_init, it, queries, resc)
                xn = propose(xc, xbc, ec, norm, p, seed, r, it)
                marg, l = margin_and_loss(model, xn, yc, loss)
                imp = l < lmc
                lm = lm.index_copy(0, idx, torch.where(imp, l, lmc))
                imp = imp | (marg <= 0)
                mm = mm.index_copy(0, idx, torch.where(imp, marg, mmc))
                xb = xb.index_copy(0, idx, torch.where(col(imp, xn), xn, xbc))
                nq = nq.index_add(0, idx, torch.ones(len(idx)))
                if bool((mm <= 0).all()): break
        return xb, nq, mm

def square(model, x, y, eps, norm, queries, loss, seed, restarts=1):
    with torch.no_grad():
        adv = x.clone()
        robust = model(x).argmax(1) == y
        for r in range(restarts):
            idx = robust.nonzero()[:, 0]
            if len(idx) == 0: break
            xb, nq, mm = single_run(model, x[idx], y[idx], eps[idx], norm, queries, loss, seed, r)
            fooled = model(xb).argmax(1) != y[idx]
            hit = fooled.nonzero()[:, 0]
            g = idx[hit]
            robust[g] = False
            adv[g] = xb[hit]
        return adv
