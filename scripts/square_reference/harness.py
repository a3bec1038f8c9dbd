"""Drive pyautoattack's SquareAttack (fra31 square.py) with robarch's per-point draw scheme
(streams.rs: call k of a draw tagged [site, restart, step] gives point `id` the uniforms of a
SplitMix64 stream seeded derive(derive(derive(seed, tags), [k]), [id])), one point at a time, so
its trajectory can be compared with the Rust port."""
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

def point_draw(seed, tags, call, pid, shape):
    """Row `pid` of call `call` of a point-stream draw tagged `tags` (streams.rs `Draw::fill`):
    U[0, 1) in float32 from the top 24 bits of a SplitMix64 stream (rng.rs `SplitMix64`)."""
    state = derive(derive(derive(seed, tags), [call]), [pid])
    vals = []
    for _ in range(math.prod(shape)):
        state = (state + 0x9E3779B97F4A7C15) & M
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        z ^= z >> 31
        vals.append((z >> 40) * 2.0 ** -24)
    return torch.tensor(vals, dtype=torch.float32).view(shape)

def sign_of(u):
    return (u * 2.0 - 1.0).sign()

class Feeder:
    """Answers the random calls of one point's `attack_single_run` (a batch of that point alone)."""
    def __init__(self, att, seed, restart, n_windows, c, pid):
        self.att, self.seed, self.r, self.K = att, seed, restart, n_windows
        self.c, self.pid = c, pid
        self.choice_calls = 0; self.int_calls = 0; self.rand1_calls = 0
        self.init = None; self.u = {}

    def window_u(self, it):
        if it not in self.u:
            self.u[it] = point_draw(self.seed, [SITE_WINDOW, self.r, it], 0, self.pid, [5])
        return self.u[it]

    def init_draw(self):
        if self.init is None:
            tags, K, c = [SITE_INIT, self.r, 0], self.K, self.c
            signs = sign_of(point_draw(self.seed, tags, 0, self.pid, [K, c, 1, 1]))
            flips = point_draw(self.seed, tags, 1, self.pid, [K])
            self.init = (signs, flips)
        return self.init

    def random_choice(self, shape):
        k = self.choice_calls; self.choice_calls += 1
        if self.att.norm == 'Linf':
            if k == 0:
                rest = list(shape)[1:]
                tags = [SITE_INIT, self.r, 0]
                return sign_of(point_draw(self.seed, tags, 0, self.pid, rest)).view(shape)
            it = k - 1
        else:
            if k < self.K:
                signs, _ = self.init_draw()
                return signs[k].view(shape)
            it = k - self.K
        u = point_draw(self.seed, [SITE_SIGNS, self.r, it], 0, self.pid, [self.c, 1, 1])
        return sign_of(u).view(shape)

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
    """`attack_single_run` on each correctly classified point alone (its id: its row in `x`),
    with that point's draws; returns the points' rows, query counts and final iterates."""
    att = sq.SquareAttack(model, norm=norm, n_queries=queries, eps=eps, p_init=p_init,
                          n_restarts=1, seed=0, loss=loss, resc_schedule=resc, device='cpu')
    att.init_hyperparam(x)
    h, w = x.shape[2], x.shape[3]
    old_proj = sq.L1_projection
    sq.L1_projection = lambda x2, y2, e1: l1_box(x2, y2, torch.full([x2.shape[0]], eps).float() * (1.0 - 1e-6)) - y2
    nqs, xbs = [], []
    try:
        with torch.no_grad():
            idx = (model(x).max(1)[1] == y).nonzero().squeeze(1)
            for i in idx.tolist():
                fd = Feeder(att, seed, 0, grid_windows(h, w), x.shape[1], i)
                att.random_choice = fd.random_choice
                att.random_int = fd.random_int
                torch.rand = fd.rand
                nq, xb = att.attack_single_run(x[i:i+1].clone(), y[i:i+1].clone())
                torch.rand = ORIG_RAND
                nqs.append(nq); xbs.append(xb)
    finally:
        torch.rand = ORIG_RAND
        sq.L1_projection = old_proj
    return idx, torch.cat(nqs), torch.cat(xbs)
