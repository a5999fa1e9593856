"""Time one CycleGAN (and method-1) training iteration: ours against a textbook reference step.

    python bench/train_step.py --size 64 128 256 --precision 32 bf16-mixed [--compile]

"Ours" is the real thing: the LightningModule's training_step under a Lightning Trainer
(generator and discriminator updates, image pools, logging), fed from memory. The
reference is the paper's sequence written plainly on the same network modules: six
separate generator calls, separate discriminator calls on real and fake, fp32, default
memory format, plain Adam, no Lightning. Before timing, the bench checks in fp32 that our
step computes the same losses and gradients as the reference from the same weights and
inputs; a speedup that changed the math does not count.

Each measurement runs in a fresh process so that peak memory (RSS on CPU, max allocated
on GPU) is its own. The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import queue as queue_module
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cyclegan import CUT, CycleGAN, FastCUT, Method1  # noqa: E402
from cyclegan.models.patchnce import patch_nce_loss  # noqa: E402
from cyclegan.models.image_pool import ImagePool  # noqa: E402
from cyclegan.models.losses import discriminator_loss, gan_loss  # noqa: E402


# ---------------------------------------------------------------------------- reference
def reference_cyclegan_step(m: CycleGAN, real_a, real_b, opt_g, opt_d, pool_a, pool_b) -> dict[str, torch.Tensor]:
    """The published iteration, one network call per term (Zhu et al. 2017, Eqn. 3 + identity)."""
    hp = m.hparams
    for d in (m.D_A, m.D_B):
        d.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    fake_b = m.G_AB(real_a)
    rec_a = m.G_BA(fake_b)
    fake_a = m.G_BA(real_b)
    rec_b = m.G_AB(fake_a)
    idt_a = m.G_BA(real_a)
    idt_b = m.G_AB(real_b)
    losses = {
        "loss_g_adv_ab": gan_loss(m.D_B(fake_b), True, mode=hp.gan_mode),
        "loss_g_adv_ba": gan_loss(m.D_A(fake_a), True, mode=hp.gan_mode),
        "loss_cycle_a": F.l1_loss(rec_a, real_a) * hp.lambda_a,
        "loss_cycle_b": F.l1_loss(rec_b, real_b) * hp.lambda_b,
        "loss_idt_a": F.l1_loss(idt_a, real_a) * hp.lambda_a * hp.lambda_identity,
        "loss_idt_b": F.l1_loss(idt_b, real_b) * hp.lambda_b * hp.lambda_identity,
    }
    losses["loss_g"] = sum(losses.values())
    losses["loss_g"].backward()
    opt_g.step()
    for d in (m.D_A, m.D_B):
        d.requires_grad_(True)

    opt_d.zero_grad(set_to_none=True)
    fake_a_d, fake_b_d = pool_a.query(fake_a.detach()), pool_b.query(fake_b.detach())
    loss_d_a = 0.5 * (gan_loss(m.D_A(real_a), True, mode=hp.gan_mode, for_discriminator=True)
                      + gan_loss(m.D_A(fake_a_d), False, mode=hp.gan_mode, for_discriminator=True))
    loss_d_b = 0.5 * (gan_loss(m.D_B(real_b), True, mode=hp.gan_mode, for_discriminator=True)
                      + gan_loss(m.D_B(fake_b_d), False, mode=hp.gan_mode, for_discriminator=True))
    (loss_d_a + loss_d_b).backward()
    opt_d.step()
    losses.update(loss_d_a=loss_d_a, loss_d_b=loss_d_b)
    return losses


def reference_method1_step(m: Method1, real_a, real_b, opt_g, opt_d, pool_b) -> dict[str, torch.Tensor]:
    m.D_B.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    fake_b = m.G_AB(real_a)
    loss_g = gan_loss(m.D_B(fake_b), True, mode=m.hparams.gan_mode)
    loss_g.backward()
    opt_g.step()
    m.D_B.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    fake = pool_b.query(fake_b.detach())
    loss_d = 0.5 * (gan_loss(m.D_B(real_b), True, mode=m.hparams.gan_mode, for_discriminator=True)
                    + gan_loss(m.D_B(fake), False, mode=m.hparams.gan_mode, for_discriminator=True))
    loss_d.backward()
    opt_d.step()
    return {"loss_g": loss_g, "loss_d_b": loss_d}


def reference_nce(m: CUT, src: torch.Tensor, tgt: torch.Tensor, flipped: bool) -> torch.Tensor:
    """lambda_nce * L_PatchNCE(tgt = G(src), src) as the CUT authors compute it: two encoder passes."""
    hp = m.hparams
    feat_q = m.G_AB.encode(tgt, m.nce_layers)
    feat_q = [f.flip(3) for f in feat_q] if flipped else feat_q
    feat_k = m.G_AB.encode(src, m.nce_layers)
    ids = m.sample_locations(feat_k, hp.nce_patches)
    q, k = m.nce_heads(feat_q, ids), m.nce_heads(feat_k, ids)
    per_layer = [patch_nce_loss(qi, ki, batch=src.shape[0], temperature=hp.nce_temperature).mean() * hp.lambda_nce
                 for qi, ki in zip(q, k)]
    return sum(per_layer) / len(per_layer)


def reference_cut_step(m: CUT, real_a, real_b, opt_g, opt_d) -> dict[str, torch.Tensor]:
    """The CUT authors' iteration (their optimize_parameters): G forward, D update, then G and the heads."""
    hp = m.hparams
    real = torch.cat([real_a, real_b]) if hp.nce_idt else real_a
    flipped = bool(hp.flip_equivariance and torch.rand(()) < 0.5)
    fake = m.G_AB(real.flip(3) if flipped else real)
    fake_b = fake[: real_a.shape[0]]
    m.D_B.requires_grad_(True)
    opt_d.zero_grad(set_to_none=True)
    loss_d = 0.5 * (gan_loss(m.D_B(fake_b.detach()), False, mode=hp.gan_mode, for_discriminator=True)
                    + gan_loss(m.D_B(real_b), True, mode=hp.gan_mode, for_discriminator=True))
    loss_d.backward()
    opt_d.step()
    m.D_B.requires_grad_(False)
    opt_g.zero_grad(set_to_none=True)
    losses = {"loss_g_adv_ab": gan_loss(m.D_B(fake_b), True, mode=hp.gan_mode) * hp.lambda_gan}
    nce = reference_nce(m, real_a, fake_b, flipped)
    if hp.nce_idt:
        losses["loss_nce_ab"] = 0.5 * nce
        losses["loss_nce_idt_b"] = 0.5 * reference_nce(m, real_b, fake[real_a.shape[0]:], flipped)
    else:
        losses["loss_nce_ab"] = nce
    losses["loss_g"] = sum(losses.values())
    losses["loss_g"].backward()
    opt_g.step()
    losses["loss_d_b"] = loss_d
    return losses


KINDS = {"cyclegan": CycleGAN, "method1": Method1, "cut": CUT, "fastcut": FastCUT}


def _model(kind: str, args) -> CycleGAN | Method1 | CUT:
    torch.manual_seed(0)
    cls = KINDS[kind]
    generator = {"ngf": args.ngf, "n_blocks": args.n_blocks}
    discriminator = {"ndf": args.ndf}
    if issubclass(cls, CUT):  # the published antialiased layout
        generator.update(antialias=True, upsample="antialias")
        discriminator.update(antialias=True)
    return cls(generator=generator, discriminator=discriminator, compile=args.compile)


def _reference_optimizers(model, betas):
    """The reference's plain Adams: G's (with CUT's heads, as the authors' separate optimizer_F: the
    same update per parameter) and D's."""
    gens = [model.G_AB, *([model.G_BA] if hasattr(model, "G_BA") else []), *([model.nce_heads] if isinstance(model, CUT) else [])]
    discs = [model.D_B, *([model.D_A] if hasattr(model, "D_A") else [])]
    return (torch.optim.Adam([p for g in gens for p in g.parameters()], lr=2e-4, betas=betas),
            torch.optim.Adam([p for d in discs for p in d.parameters()], lr=2e-4, betas=betas))


def _inputs(size: int, batch: int, device: str):
    g = torch.Generator().manual_seed(1)
    a = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    b = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return a.to(device), b.to(device)


# ---------------------------------------------------------------------------- equivalence
def check_same_math(kind: str, size: int, args) -> dict[str, float]:
    """Largest relative differences between our step's and the reference's losses and gradients (fp32)."""
    ours = _model(kind, argparse.Namespace(**{**vars(args), "compile": False}))
    ref = copy.deepcopy(ours)
    a, b = _inputs(size, args.batch, "cpu")

    def grads(m):
        return {k: p.grad.detach().clone() for k, p in m.named_parameters() if p.grad is not None}

    if kind == "cyclegan":
        g_ours = ours.generator_losses(a, b)
        g_ours.losses["loss_g"].backward()
        gen_grads_ours = grads(ours)
        ref_losses = {}
        fake_b, fake_a = ref.G_AB(a), ref.G_BA(b)
        hp = ref.hparams
        ref_losses = {
            "loss_g_adv_ab": gan_loss(ref.D_B(fake_b), True, mode=hp.gan_mode),
            "loss_g_adv_ba": gan_loss(ref.D_A(fake_a), True, mode=hp.gan_mode),
            "loss_cycle_a": F.l1_loss(ref.G_BA(fake_b), a) * hp.lambda_a,
            "loss_cycle_b": F.l1_loss(ref.G_AB(fake_a), b) * hp.lambda_b,
            "loss_idt_a": F.l1_loss(ref.G_BA(a), a) * hp.lambda_a * hp.lambda_identity,
            "loss_idt_b": F.l1_loss(ref.G_AB(b), b) * hp.lambda_b * hp.lambda_identity,
        }
        ref_losses["loss_g"] = sum(ref_losses.values())
        ref_losses["loss_g"].backward()
        gen_grads_ref = grads(ref)
        pairs = [(ours.D_A, ref.D_A, a, g_ours.fake_a.detach()), (ours.D_B, ref.D_B, b, g_ours.fake_b.detach())]
        loss_pairs = [(g_ours.losses[k], ref_losses[k]) for k in ref_losses]
    elif kind in ("cut", "fastcut"):
        # Same locations for both (ours draws, the reference replays), and no mirroring.
        drawn = []

        def record(feats, n, rng=None):
            drawn.append([torch.randperm(f.shape[2] * f.shape[3])[:n] for f in feats])
            return drawn[-1]

        ours.sample_locations = record
        ours.hparams.flip_equivariance = ref.hparams.flip_equivariance = False
        fake_b, idt_b, flipped, keys = ours.translate_batch(a, b)
        terms = ours.generator_losses(a, b, fake_b, idt_b, flipped, keys)
        sum(terms.values()).backward()
        gen_grads_ours = grads(ours)
        replay = iter(drawn)
        ref.sample_locations = lambda feats, n, rng=None: next(replay)
        hp = ref.hparams
        real = torch.cat([a, b]) if hp.nce_idt else a
        fake = ref.G_AB(real)
        ref_terms = {"loss_g_adv_ab": gan_loss(ref.D_B(fake[: a.shape[0]]), True, mode=hp.gan_mode) * hp.lambda_gan}
        nce = reference_nce(ref, a, fake[: a.shape[0]], False)
        if hp.nce_idt:
            ref_terms["loss_nce_ab"], ref_terms["loss_nce_idt_b"] = 0.5 * nce, 0.5 * reference_nce(ref, b, fake[a.shape[0]:], False)
        else:
            ref_terms["loss_nce_ab"] = nce
        sum(ref_terms.values()).backward()
        gen_grads_ref = grads(ref)
        pairs = [(ours.D_B, ref.D_B, b, fake_b.detach())]
        loss_pairs = [(terms[k], ref_terms[k]) for k in ref_terms]
    else:
        fake_b = ours.G_AB(a)
        loss_ours = gan_loss(ours.D_B(fake_b), True, mode=ours.hparams.gan_mode)
        loss_ours.backward()
        gen_grads_ours = grads(ours)
        loss_ref = gan_loss(ref.D_B(ref.G_AB(a)), True, mode=ref.hparams.gan_mode)
        loss_ref.backward()
        gen_grads_ref = grads(ref)
        pairs = [(ours.D_B, ref.D_B, b, fake_b.detach())]
        loss_pairs = [(loss_ours, loss_ref)]

    # Discriminators: ours scores real and fake in one call; the reference in two.
    for d_ours, d_ref, real, fake in pairs:
        d_ours.zero_grad(set_to_none=True)
        d_ref.zero_grad(set_to_none=True)
        ld = discriminator_loss(d_ours, real, fake, mode="lsgan", together=True).loss
        ld.backward()
        lr_ = 0.5 * (gan_loss(d_ref(real), True, mode="lsgan", for_discriminator=True)
                     + gan_loss(d_ref(fake), False, mode="lsgan", for_discriminator=True))
        lr_.backward()
        loss_pairs.append((ld, lr_))
        for (k, p), q in zip(d_ours.named_parameters(), d_ref.parameters()):
            gen_grads_ours[f"d.{id(d_ours)}.{k}"], gen_grads_ref[f"d.{id(d_ours)}.{k}"] = p.grad, q.grad

    loss_diff = max(abs(x.item() - y.item()) / max(abs(y.item()), 1e-8) for x, y in loss_pairs)
    # Over all parameters together: the biases of convolutions followed by instance norm
    # have an exact gradient of 0, so per-tensor ratios would compare rounding noise.
    diff = torch.cat([(gen_grads_ours[k] - gen_grads_ref[k]).flatten() for k in gen_grads_ref])
    grad_diff = (diff.norm() / torch.cat([g.flatten() for g in gen_grads_ref.values()]).norm()).item()
    return {"loss_rel_diff": loss_diff, "grad_rel_diff": grad_diff}


# ---------------------------------------------------------------------------- timing
class _Timer:
    def __init__(self):
        self.times: list[float] = []
        self._t = 0.0

    def start(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def stop(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self._t)


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    # VmHWM belongs to this process's address space; ru_maxrss would also count the parent's
    # peak from before the spawn (Linux keeps it across exec).
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_ours(kind: str, size: int, key: str, args, queue) -> None:
    """``key``: a Lightning precision, with ``+compile`` to torch.compile the networks."""
    precision, compiled = key.removesuffix("+compile"), key.endswith("+compile")
    args = argparse.Namespace(**{**vars(args), "compile": compiled})
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, Dataset

    class _Memory(Dataset):
        def __init__(self, n):
            self.a, self.b = _inputs(size, 1, "cpu")
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return {"A": self.a[0], "B": self.b[0]}

    timer = _Timer()

    class _Clock(pl.Callback):
        def on_train_batch_start(self, *a):
            timer.start()

        def on_train_batch_end(self, *a):
            timer.stop()

    model = _model(kind, args)
    n = args.warmup + args.steps
    trainer = pl.Trainer(
        max_steps=n, precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[_Clock()],
        accelerator="auto", devices=1,
    )
    trainer.fit(model, DataLoader(_Memory(n * args.batch), batch_size=args.batch))
    queue.put({"ms": [1000 * t for t in timer.times[args.warmup:]], "peak_mb": _peak_memory_mb(),
               "warmup_s": sum(timer.times[:args.warmup])})


def time_reference(kind: str, size: int, args, queue) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = _model(kind, argparse.Namespace(**{**vars(args), "compile": False})).to(device).train()
    a, b = _inputs(size, args.batch, device)
    betas = (model.hparams.beta1, model.hparams.beta2)
    if kind == "cyclegan":
        opt_g = torch.optim.Adam([*model.G_AB.parameters(), *model.G_BA.parameters()], lr=2e-4, betas=betas)
        opt_d = torch.optim.Adam([*model.D_A.parameters(), *model.D_B.parameters()], lr=2e-4, betas=betas)
        pools = (ImagePool(50), ImagePool(50))
        step = lambda: reference_cyclegan_step(model, a, b, opt_g, opt_d, *pools)  # noqa: E731
    elif isinstance(model, CUT):
        opt_g, opt_d = _reference_optimizers(model, betas)
        step = lambda: reference_cut_step(model, a, b, opt_g, opt_d)  # noqa: E731
    else:
        opt_g = torch.optim.Adam(model.G_AB.parameters(), lr=2e-4, betas=betas)
        opt_d = torch.optim.Adam(model.D_B.parameters(), lr=2e-4, betas=betas)
        step = lambda: reference_method1_step(model, a, b, opt_g, opt_d, ImagePool(50))  # noqa: E731
    timer = _Timer()
    for _ in range(args.warmup + args.steps):
        timer.start()
        step()
        timer.stop()
    queue.put({"ms": [1000 * t for t in timer.times[args.warmup:]], "peak_mb": _peak_memory_mb()})


def count_flops(kind: str, size: int, args) -> float:
    """FLOPs of one reference iteration (forward and backward), by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model = _model(kind, argparse.Namespace(**{**vars(args), "compile": False}))
    a, b = _inputs(size, args.batch, "cpu")
    opts = [torch.optim.SGD(model.parameters(), lr=0.0)] * 2
    with FlopCounterMode(display=False) as counter:
        if kind == "cyclegan":
            reference_cyclegan_step(model, a, b, *opts, ImagePool(0), ImagePool(0))
        elif isinstance(model, CUT):
            reference_cut_step(model, a, b, *opts)
        else:
            reference_method1_step(model, a, b, *opts, ImagePool(0))
    return counter.get_total_flops()


def matmul_gflops(dtype: torch.dtype) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 4096 if device == "cuda" else 2048
    x = torch.randn(n, n, device=device, dtype=dtype)
    y = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        x @ y
    timer = _Timer()
    for _ in range(5):
        timer.start()
        x @ y
        timer.stop()
    return 2 * n**3 / statistics.median(timer.times) / 1e9


def _in_subprocess(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, queue))
    p.start()
    while True:  # a child that dies (e.g. training stopped on NaN losses) must not hang the bench
        try:
            result = queue.get(timeout=5)
            break
        except queue_module.Empty:
            if not p.is_alive():
                return {"failed": f"exit code {p.exitcode}, traceback above"}
    p.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", nargs="+", default=["32", "bf16-mixed"], choices=["32", "bf16-mixed", "16-mixed"])
    parser.add_argument("--compile", action="store_true",
                        help="also time ours with torch.compile beside eager (compile time reported apart)")
    parser.add_argument("--models", nargs="+", default=["cyclegan", "method1"], choices=list(KINDS))
    parser.add_argument("--steps", type=int, default=5, help="timed iterations per round (median over all reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating reference/ours measurements")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, ResNet-{args.n_blocks} ngf {args.ngf}, batch {args.batch}")
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"matmul: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")

    rows = []
    for kind in args.models:
        for size in args.size:
            same = check_same_math(kind, size, args)
            flops = count_flops(kind, size, args)
            # Rounds alternate reference and ours, so that drifting machine load (a shared
            # VM varies by +-20% here) hits both alike; medians over all timed steps.
            variants = [*args.precision, *([f"{p}+compile" for p in args.precision] if args.compile else [])]
            times = {"reference": [], **{p: [] for p in variants}}
            warmups = {p: [] for p in variants}
            failed: dict[str, str] = {}
            peaks = {k: 0.0 for k in times}
            for _ in range(args.rounds):
                for key in times:
                    r = (_in_subprocess(time_reference, kind, size, args) if key == "reference"
                         else _in_subprocess(time_ours, kind, size, key, args))
                    if "failed" in r:
                        failed[key] = r["failed"]
                        continue
                    times[key] += r["ms"]
                    peaks[key] = max(peaks[key], r["peak_mb"])
                    if key != "reference":
                        warmups[key].append(r["warmup_s"])
            if "reference" in failed:
                raise SystemExit(f"the reference step failed: {failed['reference']}")
            ref = {"ms": statistics.median(times["reference"]), "peak_mb": peaks["reference"]}
            row = {"model": kind, "size": size, "gflop": flops / 1e9, "reference_ms": ref["ms"],
                   "reference_peak_mb": ref["peak_mb"], **same}
            for precision in variants:
                if precision in failed:
                    row[f"ours_{precision}_failed"] = failed[precision]
                    continue
                ms = statistics.median(times[precision])
                row[f"ours_{precision}_ms"] = ms
                row[f"ours_{precision}_peak_mb"] = peaks[precision]
                row[f"ours_{precision}_warmup_s"] = statistics.median(warmups[precision])
                row[f"speedup_{precision}"] = ref["ms"] / ms
            rows.append(row)
            line = (f"{kind:8s} {size:4d}px  {flops / 1e9:8.1f} GFLOP  ref {ref['ms']:8.1f} ms "
                    f"({flops / ref['ms'] / 1e6:6.0f} GFLOP/s, {ref['peak_mb']:.0f} MB)")
            for precision in variants:
                if precision in failed:
                    line += f" | {precision} FAILED ({failed[precision]})"
                    continue
                line += (f" | {precision} {row[f'ours_{precision}_ms']:8.1f} ms x{row[f'speedup_{precision}']:.2f}"
                         f" ({row[f'ours_{precision}_peak_mb']:.0f} MB)")
            line += f" | same math: loss {same['loss_rel_diff']:.1e}, grad {same['grad_rel_diff']:.1e}"
            print(line, flush=True)

    print(json.dumps({"device": device, "load_avg": os.getloadavg(), "matmul_gflops": peak, "compile": args.compile, "batch": args.batch,
                      "results": rows}))


if __name__ == "__main__":
    main()
