"""Training throughput: litllm's step through the Lightning Trainer vs a plain PyTorch loop over transformers.

    .venv/bin/python benchmarks/train.py                       # pythia-160m and debug.yaml's model, bf16 and fp32
    .venv/bin/python benchmarks/train.py --models pythia-160m --precisions bf16-mixed --steps 6

For each model and precision both sides train on the same random token batches (batch 4 x 512 by default) with
fused AdamW; litllm runs `GPTModule.training_step` inside `Trainer.fit`, transformers runs forward, loss,
backward and step in a loop (with CPU autocast for bf16-mixed). Tokens/s is the median over the timed steps
after warm-up; MFU is the training FLOPs of one step (counted with torch's FlopCounterMode) per second, over
the matmul peak of the same dtype measured by this script (the faster of BLAS's and oneDNN's 2048^3 product).
In float32, litllm's linear layers and output head train through oneDNN on a CPU with AVX-512, where it beats BLAS
(`litllm.cpu.kernels.training_gemm`; 2.2x on an AMD EPYC; LITLLM_TRAINING_GEMM=linear|onednn picks either). Each side
runs in a fresh process of its own, so that neither inherits the other's allocator state or kernel choices: on the CPU,
litllm's module keeps freed memory for reuse while training (`litllm.cpu.memory.keep_freed_memory`), which a plain loop
does not. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from litllm.config import Config  # noqa: E402

DEBUG_RECIPE = Path(__file__).resolve().parent.parent / "config_hub" / "pretrain" / "debug.yaml"


def model_config(name: str) -> Config:
    if name == "debug":  # its block size stretched to the benchmark's 512 tokens
        return Config(**{**yaml.safe_load(DEBUG_RECIPE.read_text())["model"]["model_config"], "block_size": 512})
    return Config.from_name(name)


def hf_model(config: Config):
    """The transformers model of the same architecture (GPT-NeoX for pythia, Llama for debug.yaml's)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    c = config
    if c.hf_model_type == "gpt_neox":
        hf = GPTNeoXConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.n_embd,
            num_hidden_layers=c.n_layer,
            num_attention_heads=c.n_head,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.block_size,
            rotary_pct=c.rotary_percentage,
            use_parallel_residual=c.parallel_residual,
            tie_word_embeddings=c.tie_embeddings,
        )
        return GPTNeoXForCausalLM(hf)
    hf = LlamaConfig(
        vocab_size=c.vocab_size,
        hidden_size=c.n_embd,
        num_hidden_layers=c.n_layer,
        num_attention_heads=c.n_head,
        num_key_value_heads=c.n_query_groups,
        intermediate_size=c.intermediate_size,
        max_position_embeddings=c.block_size,
        tie_word_embeddings=c.tie_embeddings,
        rms_norm_eps=c.norm_eps,
    )
    return LlamaForCausalLM(hf)


def batches(config: Config, batch: int, seq: int, n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randint(0, config.vocab_size, (batch, seq + 1), generator=g)
        out.append({"input_ids": x[:, :-1].contiguous(), "labels": x[:, 1:].contiguous()})
    return out


def step_seconds(side: str, name: str, precision: str, args: argparse.Namespace) -> list[float]:
    """Run in a fresh process: the seconds of each training step of one side on one model and precision."""
    torch.set_num_threads(args.threads)
    config = model_config(name)
    data = batches(config, args.batch, args.seq, args.warmup + args.steps)
    if side == "transformers":
        return time_transformers(config, precision, data)
    return time_litllm(config, precision, data, args.compile)


def in_fresh_process(*job) -> list[float]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(step_seconds, *job).result()


def time_transformers(config: Config, precision: str, data: list[dict]) -> list[float]:
    torch.manual_seed(0)
    model = hf_model(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    times = []
    for b in data:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            logits = model(input_ids=b["input_ids"]).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), b["labels"].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return times


def time_litllm(config: Config, precision: str, data: list[dict], compile: bool = False) -> list[float]:
    import lightning as L
    from torch.utils.data import DataLoader

    from litllm.training.module import GPTModule

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *args) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.times.append(time.perf_counter() - self.start)

    fields = config.to_dict()
    module = GPTModule(model_config=fields, warmup_steps=0, compile=compile)
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=len(data),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = DataLoader(data, batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return timer.times


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> tuple[float, str]:
    """FLOP/s of the faster of BLAS's (`a @ b`) and oneDNN's n x n product, and which one: on some CPUs (AMD EPYC)
    oneDNN's float32 is twice BLAS's, and a peak below what a kernel reaches would overstate the MFU. oneDNN is left
    out where it does not take the dtype (bfloat16 on an AVX2 CPU: it refuses). n shrinks (by halves, to 256) where
    the product is slow: bfloat16 on AVX2 goes to a scalar path, whose 2048^3 products took minutes."""
    from litllm.cpu.kernels import onednn_takes

    small = torch.randn(256, 256, dtype=dtype)
    small @ small  # the first product starts the threads
    while n > 256 and timed(lambda: small @ small) * (n / 256) ** 3 > 2.0:
        n //= 2
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    kernels = {"BLAS": lambda: a @ b}
    if onednn_takes(dtype):
        kernels["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    seconds = {}
    for name, kernel in kernels.items():
        kernel()
        seconds[name] = min(timed(kernel) for _ in range(repeats))
    best = min(seconds, key=seconds.get)
    return 2 * n**3 / seconds[best], best


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    from litllm.cpu import isa

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["pythia-160m", "debug"])
    parser.add_argument("--precisions", nargs="+", default=["bf16-mixed", "32-true"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="litllm with GPTModule(compile=True) (compiled blocks)")
    parser.add_argument(
        "--isa", choices=("auto", *isa.ISAS), default="auto",
        help="run as on a CPU with only this instruction set (litllm.cpu.isa.run_as: litllm's kernels and torch's)",
    )  # fmt: skip
    args = parser.parse_args()
    from litllm.cpu.kernels import cpu_model, training_gemm_rule
    from litllm.training.module import training_flops
    from litllm.training.runs import default_precision

    isa.run_as(args.isa)
    torch.set_num_threads(args.threads)
    (bf16_peak, bf16_by), (fp32_peak, fp32_by) = matmul_peak(torch.bfloat16), matmul_peak(torch.float32)
    if "bf16-mixed" in args.precisions and not isa.native_bfloat16():
        print("bf16-mixed: bfloat16 is not native here (no fast product in oneDNN); its rows take many minutes")
    peaks = {"bf16-mixed": bf16_peak, "32-true": fp32_peak}
    print(
        f"{cpu_model()}; kernels built for {isa.active()}; torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}), {args.threads} threads, batch {args.batch} x {args.seq}, litllm "
        f"{'compiled blocks' if args.compile else 'eager'}; matmul peak bf16 {bf16_peak / 1e9:.0f} GFLOP/s "
        f"({bf16_by}), fp32 {fp32_peak / 1e9:.0f} GFLOP/s ({fp32_by}); float32 training kernel "
        f"{training_gemm_rule()}; default precision {default_precision()}\n"
    )
    header = (
        f"{'model':<12} | {'precision':<10} | {'transformers tok/s':>18} | {'litllm tok/s':>12} | "
        f"{'ratio':>5} | {'litllm MFU':>10} | {'transformers MFU':>16}"
    )
    print(header)
    print("-" * len(header))
    verdicts, speeds = [], {}
    for name in args.models:
        flops = training_flops(model_config(name), args.batch, args.seq)
        tokens = args.batch * args.seq
        for precision in args.precisions:
            hf = statistics.median(in_fresh_process("transformers", name, precision, args)[args.warmup :])
            ours = statistics.median(in_fresh_process("litllm", name, precision, args)[args.warmup :])
            ratio = hf / ours
            mfu_ours, mfu_hf = flops / ours / peaks[precision], flops / hf / peaks[precision]
            print(
                f"{name:<12} | {precision:<10} | {tokens / hf:>18.0f} | {tokens / ours:>12.0f} | {ratio:>5.2f} | "
                f"{mfu_ours:>10.0%} | {mfu_hf:>16.0%}",
                flush=True,
            )
            verdicts.append((name, precision, ratio, mfu_ours))
            speeds[name, precision] = tokens / ours
    print()
    for name, precision, ratio, mfu in verdicts:
        ok = ratio >= 1.2 and (name != "pythia-160m" or precision != "bf16-mixed" or mfu >= 0.40)
        print(
            f"{'PASS' if ok else 'FAIL'} {name} {precision}: {ratio:.2f}x transformers (target >= 1.2x)"
            + (f", MFU {mfu:.0%} (target >= 40%)" if name == "pythia-160m" and precision == "bf16-mixed" else "")
        )
    for name in args.models:  # the default precision should be the faster one here
        if (name, "bf16-mixed") in speeds and (name, "32-true") in speeds:
            faster = max(("bf16-mixed", "32-true"), key=lambda p: speeds[name, p])
            print(
                f"{'PASS' if faster == default_precision() else 'FAIL'} {name}: default precision "
                f"{default_precision()}, faster here {faster} (bf16-mixed {speeds[name, 'bf16-mixed']:.0f} tok/s, "
                f"32-true {speeds[name, '32-true']:.0f})"
            )


if __name__ == "__main__":
    main()
