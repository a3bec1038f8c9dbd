import torch
def make():
    torch.manual_seed(7)
    A = torch.randn(10, 3, 1, 1)
    B = torch.randn(10, 300)
    x = torch.rand(6, 3, 10, 10)
    W = A.expand(10, 3, 10, 10).reshape(10, 300) + B * 0.5
    model = lambda z: (z.flatten(1) - 0.5).matmul(W.t())
    y = model(x).argmax(1); y[5] = (y[5] + 1) % 10
    return W, x, y, model
