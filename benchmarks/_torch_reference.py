"""The :class:`xposim.lm.Transformer` architecture written in torch (autograd backward).

Used ONLY by ``tests/test_lm_torch_parity.py`` and ``benchmarks/bench_lm.py`` (both import this
file by path and skip when torch is missing). The package ``xposim`` never imports torch.

Parameter names, shapes and layouts are those of ``Transformer.params`` (linear weights stored
``(in, out)``, ``y = x @ W + b``), so weights copy over one to one.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


class TorchTransformer(torch.nn.Module):
    """Pre-LN decoder-only transformer equal to ``xposim.lm.Transformer`` (same config object)."""

    def __init__(self, config, params: dict[str, np.ndarray], dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.config = config
        if dtype is None:
            dtype = torch.float64 if config.dtype == "float64" else torch.float32
        # ParameterDict keys may not contain '.', so store under '/'-separated names.
        self.weights = torch.nn.ParameterDict(
            {name.replace(".", "/"): torch.nn.Parameter(torch.tensor(np.asarray(value), dtype=dtype)) for name, value in params.items()}
        )

    def p(self, name: str) -> torch.Tensor:
        return self.weights[name.replace(".", "/")]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        b, t = tokens.shape
        d, h = cfg.d_model, cfg.n_heads
        dh = d // h
        eps = cfg.layer_norm_eps
        x = self.p("tok_emb")[tokens] + self.p("pos_emb")[:t]
        for i in range(cfg.n_layers):
            pre = f"h{i}."
            u = F.layer_norm(x, (d,), self.p(pre + "ln1.gain"), self.p(pre + "ln1.bias"), eps)
            qkv = torch.addmm(self.p(pre + "attn.qkv.bias"), u.reshape(b * t, d), self.p(pre + "attn.qkv.weight"))
            q, k, v = qkv.reshape(b, t, 3, h, dh).permute(2, 0, 3, 1, 4).unbind(0)
            ctx = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0 / math.sqrt(dh))
            ctx = ctx.transpose(1, 2).reshape(b * t, d)
            x = x + torch.addmm(self.p(pre + "attn.out.bias"), ctx, self.p(pre + "attn.out.weight")).reshape(b, t, d)
            u = F.layer_norm(x, (d,), self.p(pre + "ln2.gain"), self.p(pre + "ln2.bias"), eps)
            hid = torch.addmm(self.p(pre + "mlp.in.bias"), u.reshape(b * t, d), self.p(pre + "mlp.in.weight"))
            hid = F.gelu(hid, approximate="tanh")
            x = x + torch.addmm(self.p(pre + "mlp.out.bias"), hid, self.p(pre + "mlp.out.weight")).reshape(b, t, d)
        x = F.layer_norm(x, (d,), self.p("ln_f.gain"), self.p("ln_f.bias"), eps)
        head = self.p("tok_emb").T if cfg.tie_embeddings else self.p("head.weight")
        return x @ head

    def grads(self) -> dict[str, np.ndarray]:
        """The ``.grad`` of every parameter as numpy arrays under the xposim names."""
        return {name.replace("/", "."): p.grad.detach().cpu().numpy() for name, p in self.weights.items()}
