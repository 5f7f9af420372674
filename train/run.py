"""The training loop: epochs, evaluation, early stopping, fine-tuning freezes, resume."""
from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from streamseg.checkpoint import ModelInfo
from streamseg.data import CamVid, read_rgb
from streamseg.evaluate import AtInputSize, evaluate
from streamseg.metrics import is_main

from .artefacts import draw_plots, remove_partial_files, save_epoch
from .config import TrainConfig
from .engine import train_one_epoch
from .losses import Loss
from .setup import (
    autocast_dtype,
    build_criterion,
    build_data,
    build_network,
    build_optimizer,
    faster_cpu_precision,
    frozen_part,
    lr_factor,
    model_info,
    ramped_ema,
    seed_epoch,
    seed_everything,
    set_frozen,
    setup_distributed,
)
from .state import RESUME_NAME, RunState, load_resume, set_rng_state

# Drawing the plots costs ~1.5 s of CPU (matplotlib, a few predictions): noise next to a CPU epoch,
# as long as a whole epoch on a GPU, so they are redrawn at most this often and after the last epoch.
PLOT_INTERVAL = 30.0


@dataclass
class Run:
    """Everything an epoch needs, built once by `train`."""
    cfg: TrainConfig
    net: nn.Module                  # the bare model; DDP wraps it for the training step only
    info: ModelInfo
    train_set: CamVid
    val_set: CamVid
    train_loader: DataLoader
    val_loader: DataLoader
    criterion: Loss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None  # the autocast dtype the steps run in; None: float32
    out: Path
    rank: int = 0
    world: int = 1
    ema: AveragedModel | None = None  # evaluated and saved instead of `net` when on
    plotted_at: float = float("-inf")  # when the plots were last drawn, and for which epoch
    plotted_epoch: int = 0

    @property
    def precision(self) -> str:
        return str(self.amp_dtype or torch.float32).removeprefix("torch.")

    @property
    def eval_net(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.net

    def step(self) -> None:
        """After each optimiser step: the LR schedule, then the weight average."""
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.net)


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) a training run; returns the best epoch's metrics."""
    rank, world, device = setup_distributed()
    lock = None
    try:
        if rank == 0:
            Path(cfg.out).mkdir(parents=True, exist_ok=True)
            lock = lock_run_dir(Path(cfg.out))
        run = build_run(cfg, rank, world, device)
        state = RunState()
        if cfg.resume:
            state = resume(cfg.resume, run)
            if is_main():
                remove_partial_files(run.out)
        else:
            settle_precision(run, None)
        best = fit(run, state)
        if world > 1:
            dist.barrier()  # rank 0 may still be writing artefacts
        return best
    finally:
        if lock is not None:
            lock.close()  # releases the flock
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def lock_run_dir(out: Path) -> TextIO:
    """One writer per run directory: a second process (say, a resume started while
    the first still runs) would interleave checkpoints and history. The OS drops
    the lock when the process dies, even by SIGKILL, so it never goes stale."""
    handle = open(out / ".lock", "w")  # noqa: SIM115 — held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"another training process is writing to {out}; stop it first or choose another --out") \
            from None
    return handle


def build_run(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> Run:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":  # two fixed input sizes (crops, full frames): let cuDNN time its kernels once each
        torch.backends.cudnn.benchmark = True
    seed_everything(cfg.seed + rank)
    out = Path(cfg.out)
    if not cfg.resume and (out / RESUME_NAME).exists():
        raise ValueError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set, train_loader, val_loader = build_data(cfg, ModelInfo.for_model(cfg.model), rank, world)
    info = model_info(cfg, train_set.classes, train_set.palette, read_rgb(val_set.pairs[0][0]).shape[:2])
    net = build_network(cfg, info).to(device)
    if world > 1 and device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # same state-dict keys as BatchNorm
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    frozen_part(net, cfg.freeze)  # a wrong --freeze fails now, not after the set-up work
    criterion, weights = build_criterion(cfg, train_set)
    if weights is not None and rank == 0:
        pairs = zip(train_set.classes, weights.tolist(), strict=True)
        print(f"class weights ({cfg.class_weights}): " + ", ".join(f"{c} {w:.2f}" for c, w in pairs), flush=True)
    optimizer = build_optimizer(cfg, net)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, len(train_loader)))
    amp_dtype = autocast_dtype(device) if cfg.amp else None  # a candidate until `settle_precision`
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # bf16 needs no loss scaling
    # BatchNorm statistics are averaged too (use_buffers), so the EMA model evaluates as is.
    ema = AveragedModel(net, multi_avg_fn=ramped_ema(cfg.ema), use_buffers=True) if cfg.ema else None
    return Run(cfg, net, info, train_set, val_set, train_loader, val_loader, criterion, optimizer, scheduler,
               scaler, device, amp_dtype, out, rank, world, ema)


def resume(spec: str, run: Run) -> RunState:
    payload = load_resume(spec)
    try:
        run.net.load_state_dict(payload["model"])
        run.optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError) as error:
        saved = payload.get("config", {})
        raise ValueError(f"--resume {spec}: saved run (model {saved.get('model')}, classes {saved.get('classes')}) "
                         f"does not match this one ({str(error).splitlines()[0]})") from None
    run.scheduler.load_state_dict(payload["scheduler"])
    run.scaler.load_state_dict(payload["scaler"])
    if run.ema is not None:
        if "ema" in payload:
            run.ema.load_state_dict(payload["ema"])
        else:  # a run that had no EMA: start the average from the resumed weights
            run.ema = AveragedModel(run.net, multi_avg_fn=ramped_ema(run.cfg.ema), use_buffers=True)
    # Resume files older than the recorded precision trained in the candidate (bf16 wherever native).
    settle_precision(run, payload.get("precision", run.precision))
    set_rng_state(payload["rng"])
    if is_main():
        print(f"resumed from {spec} at epoch {payload['state']['epoch']}", flush=True)
    return RunState(**payload["state"])


def settle_precision(run: Run, saved: str | None) -> None:
    """The autocast dtype the steps run in: a resumed run keeps the one it trained in (so it continues
    exactly); a new run on a native-bf16 CPU keeps bfloat16 only where timed steps show it faster."""
    if not run.cfg.amp:  # --no-amp, also on a resume of a run that had it
        chosen = None
    elif saved is not None:
        chosen = None if saved == "float32" else getattr(torch, saved)
    elif run.amp_dtype is torch.bfloat16:
        chosen, note = faster_cpu_precision(run.cfg, run.net, run.criterion, run.info.num_classes)
        if run.world > 1:  # every rank trains in rank 0's choice
            box = [chosen]
            dist.broadcast_object_list(box, src=0)
            chosen = box[0]
        if run.rank == 0:
            print(note, flush=True)
    else:
        chosen = run.amp_dtype
    run.amp_dtype = chosen
    if chosen is not None and run.rank == 0:
        print(f"mixed precision: {run.precision} autocast on {run.device.type}", flush=True)


def frozen_at(cfg: TrainConfig, epoch: int) -> bool:
    """Whether `--freeze` applies during (1-based) `epoch`; depends on the epoch only, so resume agrees."""
    return cfg.freeze is not None and not (cfg.unfreeze_after and epoch > cfg.unfreeze_after)


def wrap(run: Run) -> nn.Module:
    """DDP registers the parameters that require grad when it is built, so it is
    rebuilt whenever the frozen set changes."""
    if run.world == 1:
        return run.net
    ids = [run.device.index] if run.device.type == "cuda" else None
    return DistributedDataParallel(run.net, device_ids=ids)


def plot(run: Run, state: RunState, *, final: bool = False) -> None:
    """Redraw the plots at most every PLOT_INTERVAL seconds, and once more for the last epoch."""
    due = time.monotonic() - run.plotted_at >= PLOT_INTERVAL or (final and run.plotted_epoch != state.epoch)
    if is_main() and state.epoch and due:
        draw_plots(run.out, run.val_set, run.device, run.plotted_epoch)
        run.plotted_at, run.plotted_epoch = time.monotonic(), state.epoch


def fit(run: Run, state: RunState) -> dict:
    cfg, best_file = run.cfg, run.out / "metrics.json"
    best: dict = json.loads(best_file.read_text()) if cfg.resume and best_file.exists() else {}
    model, frozen = run.net, None
    try:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if cfg.patience and state.stale >= cfg.patience:
                if is_main():
                    print(f"early stop: no val mIoU gain for {cfg.patience} epochs", flush=True)
                break
            if frozen != frozen_at(cfg, epoch):
                frozen = frozen_at(cfg, epoch)
                set_frozen(run.net, cfg.freeze, frozen)
                model = wrap(run)
            metrics = run_epoch(run, model, epoch, state)
            if state.best_epoch == epoch:
                best = {**metrics, "epoch": epoch}
            plot(run, state)
    except KeyboardInterrupt:  # the plots of the epochs finished before Ctrl-C
        plot(run, state, final=True)
        raise
    plot(run, state, final=True)
    if is_main() and state.best_epoch:
        print(f"best val mIoU {state.best_miou:.4f} at epoch {state.best_epoch}; artefacts in {run.out}",
              flush=True)
    return best


def _sync_buffers(run: Run) -> None:
    """BatchNorm running stats drift apart per rank after the last step; evaluate with rank 0's."""
    if run.world > 1:
        for buffer in run.net.buffers():
            dist.broadcast(buffer, 0)


def run_epoch(run: Run, model: nn.Module, epoch: int, state: RunState) -> dict:
    """Train one epoch, evaluate, update `state` and (on rank 0) write every artefact."""
    cfg = run.cfg
    seed_epoch(run.train_loader, run.train_set, cfg.seed, epoch, run.rank)
    start = time.perf_counter()
    lr = run.optimizer.param_groups[0]["lr"]
    stats = train_one_epoch(model, run.train_loader, run.criterion, run.optimizer, run.step, run.device,
                            run.scaler, epoch=epoch, amp_dtype=run.amp_dtype,
                            channels_last=cfg.channels_last)
    _sync_buffers(run)
    # at the input size `streamseg run` and `eval` use, scored against the full-resolution labels
    val_net = AtInputSize(run.eval_net, run.info.input_size)
    val_loss, confusion = evaluate(val_net, run.val_loader, run.criterion, run.device, run.info.num_classes,
                                   run.train_set.ignore_index, amp_dtype=run.amp_dtype)
    metrics = confusion.compute(run.info.classes)
    seconds = time.perf_counter() - start
    state.seconds += seconds
    row = {"epoch": epoch, "train_loss": round(stats["train_loss"], 5), "val_loss": round(val_loss, 5),
           "pixel_accuracy": round(metrics["pixel_accuracy"], 5), "mIoU": round(metrics["mIoU"], 5),
           "lr": f"{lr:.3g}", "seconds": round(seconds, 1), "images_per_s": round(stats["images_per_s"], 2)}
    state.history.append(row)
    improved = metrics["mIoU"] > state.best_miou
    state.stale = 0 if improved else state.stale + 1
    if improved:
        state.best_miou, state.best_epoch = metrics["mIoU"], epoch
    state.epoch = epoch
    if is_main():
        log_epoch(row, stats, improved)
        save_epoch(cfg, run.out, run.net, run.info, state, metrics, improved,
                   (run.optimizer, run.scheduler, run.scaler), ema=run.ema, precision=run.precision)
    return metrics


def log_epoch(row: dict, stats: dict, improved: bool) -> None:
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
          f"pixel acc {row['pixel_accuracy']:.4f}  mIoU {row['mIoU']:.4f}  lr {row['lr']}  "
          f"{row['images_per_s']:.1f} img/s (data {stats['data_share']:.0%})  {row['seconds']:.0f}s"
          + ("  *best*" if improved else ""), flush=True)
