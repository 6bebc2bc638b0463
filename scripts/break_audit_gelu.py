# python scripts/break_audit_gelu.py "data=mnist1d data.n_samples=1000 model=cnn \
#     model.activation=gelu model.hidden=[4,1]" 1 -5.8,-6,-6.1,-6.2 1 32-true
"""A constructed state the audit's bound judges least well: one gelu channel whose
pre-activations all sit where gelu'(z) = Φ(z) + zφ(z) is formed from 1 + erf(z/√2) ≈ 0
(z ≈ −6 in float32). There the derivative's own rounding is ~u in absolute terms (torch's
kernel and ``gelu_derivative`` differ by ~u/4: 0 vs −1.5e−8 at z = −6.15), while the bound's
carry ``|f'(z)| + |f''(z)|·Z̃`` is ~1e−6. Only the model floor (2⁻¹⁰ of the largest term)
keeps the ratio below 1: worst seen 0.80 (seed 0, hidden [4,1], bias −6, batch 1).

Arguments: overrides (one string), the index of the layer whose bias is set, the bias values
(comma-separated), the batch size, trainer.precision (32-true or 64-true).
"""
import sys

import torch

from neuronlab.config import compose
from neuronlab.gradcheck.conv_terms import network_gradient_terms
from neuronlab.gradcheck.rounding import compare_to_bound, unit_roundoff
from neuronlab.training.run import build

torch.set_num_threads(1)

def probe(overrides, layer_idx, bias, batch=4, dtype="32-true"):
    cfg = compose(["callbacks.progress_bar=null", "~logger", "torch_threads=1",
                   *overrides, f"data.batch_size={batch}", f"trainer.precision={dtype}"],
                  output_dir="/tmp/gelu_probe")
    dm, task, _ = build(cfg)
    net = task.net
    if dtype == "64-true":
        net.double()
    x, y = next(iter(dm.train_dataloader()))
    x = x.to(next(net.parameters()).dtype)
    worst = (0.0, None)
    for b in bias:
        with torch.no_grad():
            net.layers[layer_idx].bias.fill_(b)
        named = [(n, p) for n, p in net.named_parameters()]
        grads = {}
        for mode in ("manual", "autograd"):
            net.backprop = mode
            _, loss = task.output_and_loss((x, y))
            grads[mode] = torch.autograd.grad(loss, [p for _, p in named])
        net.backprop = "manual"
        terms = network_gradient_terms(net, x, y, task.loss_name)
        r, d, bd = compare_to_bound(grads["manual"], grads["autograd"],
                                    [terms[n] for n, _ in named],
                                    unit_roundoff(named[0][1].dtype))
        k = int(r.argmax())
        print(f"bias={b}: worst {r[k]:.3g} in {named[k][0]} (diff {d[k]:.3g}, bound {bd[k]:.3g})")
        if r[k] > worst[0]:
            worst = (float(r[k]), b)
    return worst

if __name__ == "__main__":
    ov = sys.argv[1].split()
    print(probe(ov, int(sys.argv[2]), [float(v) for v in sys.argv[3].split(",")],
                int(sys.argv[4]), sys.argv[5]))
