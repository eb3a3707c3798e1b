"""Throughput of the numpy transformer (xposim.lm): forward + cross-entropy + backward, in
tokens per second, at a few model sizes; when torch is importable, the same architecture in
torch on CPU (benchmarks/_torch_reference.py, autograd backward) and the ratio numpy / torch.

    python benchmarks/bench_lm.py [--repeats N]

torch is not a dependency of xposim: run this with an interpreter that has torch to get the
ratio column (e.g. a separate venv with ``torch==2.13.0`` and ``pip install -e . --no-deps``).
numpy and torch are timed one after the other (each warmed up first); the table reports medians
and the share of CPU other processes took during the run (only a run with ~0 % is meaningful).
torch uses as many intra-op threads as numpy's BLAS; set OPENBLAS_NUM_THREADS=1 for a
single-thread comparison.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np

from xposim.lm import Transformer, TransformerConfig, cross_entropy, sample, sample_from_logits
from xposim.seeding import make_rng

SIZES = [
    # (label, config kwargs, batch, length)
    ("d=32 L=1 H=2", dict(vocab_size=64, d_model=32, n_heads=2, n_layers=1), 64, 16),
    ("d=64 L=2 H=2 (target)", dict(vocab_size=64, d_model=64, n_heads=2, n_layers=2), 64, 16),
    ("d=128 L=4 H=4", dict(vocab_size=256, d_model=128, n_heads=4, n_layers=4), 32, 32),
]


def blas_threads() -> int:
    """Threads numpy's BLAS uses (threadpoolctl if present, else the environment, else cores)."""
    try:
        from threadpoolctl import threadpool_info

        counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
        if counts:
            return int(counts[0])
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def load_torch_reference():
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    path = Path(__file__).resolve().parent / "_torch_reference.py"
    spec = importlib.util.spec_from_file_location("_xposim_torch_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_full_recompute(model: Transformer, prompts: np.ndarray, n_new: int, rng, temperature: float) -> np.ndarray:
    """The plain-numpy baseline of :func:`sample`: one full forward of the prefix per step."""
    tokens = prompts
    for _ in range(n_new):
        logits = model.forward(tokens, keep_cache=False)[:, -1]
        new = sample_from_logits(logits, rng, temperature)[0]
        tokens = np.concatenate([tokens, new[:, None]], axis=1)
    return tokens


def _busy_seconds() -> float | None:
    """CPU-seconds all processes have spent busy since boot (Linux /proc/stat), else None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _repeat(fn, repeats: int, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn()
    return [_timed(fn) for _ in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40, help="timed repeats per size (median reported)")
    args = parser.parse_args()
    threads = blas_threads()
    ref = load_torch_reference()
    if ref is not None:
        import torch

        torch.set_num_threads(threads)
        print(f"torch {torch.__version__}: torch.set_num_threads({threads}) = numpy BLAS threads; float32, CPU")
    else:
        print("torch not importable: numpy columns only")
    print(f"numpy {np.__version__}, BLAS threads {threads}, cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    busy0, own0, wall0 = _busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    print("step = forward + cross-entropy + backward (numpy) / forward + F.cross_entropy + autograd backward (torch)")
    print("numpy/torch = numpy tokens per second / torch tokens per second (> 1: numpy faster)\n")

    header = f"{'model':<24}{'B x T':>9}{'params':>9}{'numpy fwd ms':>14}{'numpy step ms':>15}{'numpy tok/s':>13}"
    if ref is not None:
        header += f"{'torch step ms':>15}{'torch tok/s':>13}{'numpy/torch':>13}"
    print(header)
    for label, kwargs, batch, length in SIZES:
        cfg = TransformerConfig(max_len=length, **kwargs)
        model = Transformer(cfg, 0)
        tokens = make_rng(1).integers(0, cfg.vocab_size, size=(batch, length + 1))
        inputs, targets = tokens[:, :-1], tokens[:, 1:]

        def numpy_step():
            loss, dlogits = cross_entropy(model.forward(inputs), targets)
            model.backward(dlogits)

        def numpy_forward():
            model.forward(inputs, keep_cache=False)

        torch_step = None
        if ref is not None:
            tmodel = ref.TorchTransformer(cfg, model.params)
            t_in, t_tg = torch.tensor(inputs), torch.tensor(targets)

            def torch_step():
                tmodel.zero_grad(set_to_none=True)
                logits = tmodel(t_in)
                torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), t_tg.reshape(-1)).backward()

        # One library at a time (warm-up, then the timed repeats): interleaving them step by step
        # lets the idle worker threads of one (OpenBLAS / OpenMP spin-waiting) steal the second
        # core from the other, which distorts the 2-thread numbers.
        np_step = _repeat(numpy_step, args.repeats)
        np_fwd = _repeat(numpy_forward, args.repeats)
        th_step = _repeat(torch_step, args.repeats) if torch_step is not None else []
        n_tok = batch * length
        step_ms = 1e3 * float(np.median(np_step))
        row = (f"{label:<24}{f'{batch}x{length}':>9}{model.n_params:>9}{1e3 * np.median(np_fwd):>14.2f}"
               f"{step_ms:>15.2f}{n_tok / step_ms * 1e3:>13,.0f}")
        if th_step:
            th_ms = 1e3 * float(np.median(th_step))
            row += f"{th_ms:>15.2f}{n_tok / th_ms * 1e3:>13,.0f}{th_ms / step_ms:>13.2f}"
        print(row)

    # sampling: incremental decoding (KV cache) against full recompute of the prefix per step
    cfg = TransformerConfig(vocab_size=64, max_len=16, d_model=64, n_heads=2, n_layers=2)
    model = Transformer(cfg, 0)
    prompts = make_rng(2).integers(0, 64, size=(64, 4))
    n_sample = max(5, args.repeats // 4)
    kv = _repeat(lambda: sample(model, prompts, 12, make_rng(3), temperature=0.9), n_sample, warmup=2)
    full = _repeat(lambda: sample_full_recompute(model, prompts, 12, make_rng(3), temperature=0.9), n_sample, warmup=2)
    kv_ms, full_ms = 1e3 * float(np.median(kv)), 1e3 * float(np.median(full))
    print(f"\nsampling, d=64 L=2, 64 prompts of 4 tokens + 12 new at temperature 0.9:")
    print(f"  sample (KV cache)     {kv_ms:8.2f} ms  {64 * 12 / kv_ms * 1e3:>10,.0f} new tokens/s")
    print(f"  full recompute        {full_ms:8.2f} ms  {64 * 12 / full_ms * 1e3:>10,.0f} new tokens/s   ratio {full_ms / kv_ms:.2f}")
    busy1, own1, wall1 = _busy_seconds(), _own_cpu_seconds(), time.perf_counter()
    if busy0 is not None and busy1 is not None:
        other = max(0.0, (busy1 - busy0) - (own1 - own0)) / ((wall1 - wall0) * (os.cpu_count() or 1))
        print(f"\nCPU share used by OTHER processes during the run: {100 * other:.0f}% "
              f"(timings are only meaningful when this is near 0)")


if __name__ == "__main__":
    main()
