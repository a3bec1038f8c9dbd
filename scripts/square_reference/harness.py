"""Drive pyautoattack's SquareAttack (fra31 square.py) with robarch's seeded draw scheme
(square.rs: draw(seed, [site, restart, step]) → torch.manual_seed(derive(...)) → torch.rand),
so its trajectory can be compared with the Rust port."""
import torch, math
import pyautoattack.square as sq

M = (1 << 64) - 1
def derive(seed, parts):
    z = seed ^ 0x9E3779B97F4A7C15
    for p in parts:
        z = (z + ((p * 0xBF58476D1CE4E5B9) & M) + 0x9E3779B97F4A7C15) & M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z ^= z >> 31
    return z

ORIG_RAND = torch.rand
def draw(seed, parts, f):
    torch.manual_seed(derive(seed, parts) & ((1 << 63) - 1))
    return f()

def rchoice(shape):
    return (ORIG_RAND(shape) * 2.0 - 1.0).sign()

SITE_INIT, SITE_WINDOW, SITE_SIGNS = 0, 1, 2

def l1_box(x, delta, eps):
    """port of project::l1_box (f64), returns the projected perturbation."""
    n = delta.shape[0]
    v = delta.reshape(n, -1).double(); xf = x.reshape(n, -1).double()
    e = eps.double().view(n, 1)
    a = v.abs()
    room = torch.where(v > 0, 1 - xf, xf).clamp_min(0)
    capped = torch.minimum(a, room)
    f0 = capped.sum(1, keepdim=True)
    start = (a - room).clamp_min(0)
    points = torch.cat([start, a], 1)
    ones = torch.ones_like(a)
    steps = torch.cat([ones, -ones], 1)
    pts, order = points.sort(1)
    slope = steps.gather(1, order).cumsum(1)
    m = pts.shape[1]
    seg = slope[:, :m-1] * (pts[:, 1:] - pts[:, :m-1])
    f = torch.cat([f0, f0 - seg.cumsum(1)], 1)
    k = ((f >= e).sum(1, keepdim=True) - 1).clamp(0, m - 1)
    pk = pts.gather(1, k); fk = f.gather(1, k); sk = slope.gather(1, k)
    lam = (pk + (fk - e) / sk.clamp_min(1e-300)).clamp_min(0)
    lam = torch.where(f0 > e, lam, torch.zeros_like(lam))
    out = v.sign() * torch.minimum((a - lam).clamp_min(0), room)
    return out.float().view(delta.shape)

class Feeder:
    def __init__(self, att, seed, restart, n_windows, n, c):
        self.att, self.seed, self.r, self.K = att, seed, restart, n_windows
        self.n, self.c = n, c
        self.choice_calls = 0; self.int_calls = 0; self.rand1_calls = 0
        self.init = None; self.u = {}

    def window_u(self, it):
        if it not in self.u:
            self.u[it] = draw(self.seed, [SITE_WINDOW, self.r, it], lambda: ORIG_RAND([5]))
        return self.u[it]

    def init_draw(self):
        if self.init is None:
            n, c = self.n, self.c
            if self.att.norm == 'Linf':
                self.init = None
            else:
                K = self.K
                self.init = draw(self.seed, [SITE_INIT, self.r, 0],
                                 lambda: (rchoice([K, n, c, 1, 1]), ORIG_RAND([K])))
        return self.init

    def random_choice(self, shape):
        k = self.choice_calls; self.choice_calls += 1
        if self.att.norm == 'Linf':
            if k == 0:
                return draw(self.seed, [SITE_INIT, self.r, 0], lambda: rchoice(shape))
            it = k - 1
            return draw(self.seed, [SITE_SIGNS, self.r, it], lambda: rchoice(shape))
        if k < self.K:
            signs, _ = self.init_draw()
            return signs[k]
        it = k - self.K
        return draw(self.seed, [SITE_SIGNS, self.r, it], lambda: rchoice(shape))

    def random_int(self, low=0, high=1, shape=[1]):
        j = self.int_calls; self.int_calls += 1
        per = 2 if self.att.norm == 'Linf' else 4
        it, slot = j // per, j % per
        u = self.window_u(it)[slot:slot+1]
        t = low + (high - low) * u
        return t.long()

    def rand(self, *args, **kw):
        shape = args[0] if args else kw.get('size')
        if list(shape) == [1]:
            j = self.rand1_calls; self.rand1_calls += 1
            if j < self.K:
                _, flips = self.init_draw()
                return flips[j:j+1]
            it = j - self.K
            return self.window_u(it)[4:5]
        return ORIG_RAND(*args, **kw)

def grid_windows(h, w):
    s = h // 5
    return (h // s) * (w // s)

def run_reference(model, x, y, eps, norm, queries, seed, loss='margin', resc=False, p_init=.8):
    att = sq.SquareAttack(model, norm=norm, n_queries=queries, eps=eps, p_init=p_init,
                          n_restarts=1, seed=0, loss=loss, resc_schedule=resc, device='cpu')
    att.init_hyperparam(x)
    h, w = x.shape[2], x.shape[3]
    acc0 = (model(x).max(1)[1] == y)
    fd = Feeder(att, seed, 0, grid_windows(h, w), int(acc0.sum()), x.shape[1])
    att.random_choice = fd.random_choice
    att.random_int = fd.random_int
    old_proj = sq.L1_projection
    sq.L1_projection = lambda x2, y2, e1: l1_box(x2, y2, torch.full([x2.shape[0]], eps).float() * (1.0 - 1e-6)) - y2
    torch.rand = fd.rand
    try:
        with torch.no_grad():
            acc = model(x).max(1)[1] == y
            idx = acc.nonzero().squeeze(1)
            nq, xb = att.attack_single_run(x[idx].clone(), y[idx].clone())
    finally:
        torch.rand = ORIG_RAND
        sq.L1_projection = old_proj
    run_reference.fd = fd
    return idx, nq, xb
