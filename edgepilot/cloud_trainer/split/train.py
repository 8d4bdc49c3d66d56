"""Training of the split CNN and of the task-oriented entropy-model compressor.

1. ``train_base``: the full-precision CNN (cross-entropy), model selection on validation.
2. ``train_codec``: for each lambda, head + analysis + entropy bottleneck + synthesis + tail
   fine-tuned from the base CNN with loss = CE + lambda * bits per image (the paper's
   "weighted sum of the inference loss and communication cost", Sec. III-A.3).
3. ``lambda_sweep``: one codec per lambda -> a rate-accuracy curve (validation split).

Checkpoints are plain ``torch.save`` dicts (see ``save`` / ``load_codec``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from edgepilot.cloud_trainer.checkpoint import atomic_torch_save
from edgepilot.cloud_trainer.split.data import Split, to_float
from edgepilot.cloud_trainer.split.model import CNNConfig, CodecConfig, CoInferenceModel, SplitCNN

Progress = Callable[[str, int, int, dict], None]  # (stage, step, total_steps, metrics)
FORMAT = "edgepilot-split-v1"


def _noop(stage: str, step: int, total: int, metrics: dict) -> None:
    pass


@dataclass
class TrainConfig:
    epochs: int = 8
    codec_epochs: int = 8
    batch_size: int = 128
    lr: float = 2e-3
    codec_lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    flip_augment: bool = True


def _batches(split: Split, batch_size: int, rng: np.random.Generator | None, flip: bool):
    order = rng.permutation(len(split)) if rng is not None else np.arange(len(split))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        x = to_float(split.images[idx])
        if flip and rng is not None:
            mask = rng.random(len(idx)) < 0.5
            x[mask] = x[mask, :, :, ::-1]
        yield torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(split.labels[idx])


@torch.no_grad()
def evaluate_base(model: SplitCNN, split: Split, batch_size: int = 500) -> float:
    model.eval()
    correct = 0
    for x, y in _batches(split, batch_size, None, False):
        correct += int((model(x).argmax(1) == y).sum())
    return correct / max(1, len(split))


@torch.no_grad()
def evaluate_codec(model: CoInferenceModel, split: Split, batch_size: int = 500) -> dict:
    """Accuracy with hard rounding and the model's estimate of the coded size."""
    model.eval()
    correct, bits = 0, 0.0
    for x, y in _batches(split, batch_size, None, False):
        logits, b = model(x)
        correct += int((logits.argmax(1) == y).sum())
        bits += float(b.sum())
    n = max(1, len(split))
    return {"val_accuracy": correct / n, "val_bits_per_image": bits / n, "val_bytes_per_image": bits / n / 8}


def _schedule(optimizer, total_steps: int):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                               total_steps=max(1, total_steps), pct_start=0.2)


def train_base(train: Split, val: Split, config: CNNConfig = CNNConfig(), tc: TrainConfig = TrainConfig(),
               progress: Progress = _noop) -> tuple[SplitCNN, dict]:
    torch.manual_seed(tc.seed)
    torch.set_num_threads(tc.threads)
    rng = np.random.default_rng(tc.seed)
    model = SplitCNN(config)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    steps_per_epoch = math.ceil(len(train) / tc.batch_size)
    sched = _schedule(opt, tc.epochs * steps_per_epoch)
    best, best_state, history = -1.0, None, []
    step = 0
    for epoch in range(tc.epochs):
        model.train()
        t0 = time.monotonic()
        for x, y in _batches(train, tc.batch_size, rng, tc.flip_augment):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 20 == 0:
                progress("base", step, tc.epochs * steps_per_epoch, {"loss": loss.item()})
        acc = evaluate_base(model, val)
        history.append({"epoch": epoch + 1, "val_accuracy": acc, "seconds": time.monotonic() - t0})
        progress("base-epoch", epoch + 1, tc.epochs, history[-1])
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return model, {"val_accuracy": best, "history": history}


@torch.no_grad()
def head_features(base: SplitCNN, split: Split, split_point: int, flip: bool, batch_size: int = 500):
    """Frozen-head features and the base model's logits (the distillation teacher) for
    every image, and for its mirror image when ``flip``: computed once, so the codec
    epochs only run analysis -> entropy model -> synthesis -> tail."""
    base.eval()
    feats, teacher, labels = [], [], []
    for mirrored in ((False, True) if flip else (False,)):
        for x, y in _batches(split, batch_size, None, False):
            if mirrored:
                x = torch.flip(x, dims=[3])
            h = base.head(x, split_point)
            feats.append(h)
            teacher.append(base.tail(h, split_point))
            labels.append(y)
    return torch.cat(feats), torch.cat(teacher), torch.cat(labels)


def train_codec(base: SplitCNN, train: Split, val: Split, lam: float, codec: CodecConfig = CodecConfig(),
                tc: TrainConfig = TrainConfig(), progress: Progress = _noop, features=None) -> tuple[CoInferenceModel, dict]:
    """Train the analysis / synthesis transforms, the entropy bottleneck and the tail on
    top of the base model's frozen head. Loss (task-oriented, Sec. III-A.3):

        CE(labels) + KL(base model's softmax || ours) + MSE(synthesis(y_hat), h) + lam * bits

    The distillation and feature terms only speed up convergence of the tail on the new
    input; the rate is the entropy model's estimate of the coded size in bits per image.
    ``features``: precomputed :func:`head_features` (shared across a lambda sweep)."""
    torch.manual_seed(tc.seed)
    torch.set_num_threads(tc.threads)
    gen = torch.Generator().manual_seed(tc.seed + 1)
    cnn = SplitCNN(base.config)
    cnn.load_state_dict(base.state_dict())
    model = CoInferenceModel(cnn, codec)
    sp = codec.split_point
    # The device head stays the base model's (frozen, BN statistics fixed): the same head
    # serves every lambda, and its features are computed once.
    for p in model.cnn.blocks[:sp].parameters():
        p.requires_grad_(False)
    feats, teacher, labels = features if features is not None else head_features(base, train, sp, tc.flip_augment)
    density = list(model.entropy_bottleneck.parameters())
    transforms = [*model.analysis.parameters(), *model.synthesis.parameters()]
    tail_params = [p for p in model.cnn.blocks[sp:].parameters()]
    # The density gets a 10x learning rate: it must narrow to the latent's scale within a
    # few hundred steps, or the rate term is dominated by the prior's initial width.
    opt = torch.optim.AdamW([{"params": tail_params, "lr": tc.codec_lr * 0.5},
                             {"params": transforms, "lr": tc.codec_lr * 2},
                             {"params": density, "lr": tc.codec_lr * 10, "weight_decay": 0.0}],
                            weight_decay=tc.weight_decay)
    n = len(feats)
    steps_per_epoch = math.ceil(n / tc.batch_size)
    total = tc.codec_epochs * steps_per_epoch
    sched = _schedule(opt, total)
    step, history = 0, []
    eb = model.entropy_bottleneck
    for epoch in range(tc.codec_epochs):
        model.train()
        model.cnn.blocks[:sp].eval()
        t0 = time.monotonic()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, tc.batch_size):
            idx = order[start:start + tc.batch_size]
            h, t, yb = feats[idx], teacher[idx], labels[idx]
            y = model.analysis(h)
            bits = -torch.log2(eb.likelihood(eb.quantize(y, noise=True))).flatten(1).sum(dim=1)
            h_hat = model.synthesis(y + (torch.round(y) - y).detach())
            logits = model.cnn.tail(h_hat, sp)
            ce = F.cross_entropy(logits, yb)
            kd = F.kl_div(F.log_softmax(logits, 1), F.softmax(t, 1), reduction="batchmean")
            rate = bits.mean()
            loss = ce + kd + F.mse_loss(h_hat, h) + lam * rate
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                progress(f"codec lambda={lam:g}", step, total, {"ce": ce.item(), "bits": rate.item()})
        metrics = evaluate_codec(model, val)
        history.append({"epoch": epoch + 1, **metrics, "seconds": time.monotonic() - t0})
        progress("codec-epoch", epoch + 1, tc.codec_epochs, {"lambda": lam, **history[-1]})
    model.eval()
    return model, {"lambda": lam, **history[-1], "history": history}


def choose_operating_point(points: list[dict], base_val_accuracy: float, max_drop: float = 0.003) -> dict:
    """The lowest-rate codec whose validation accuracy is within ``max_drop`` of the
    full-precision model; the most accurate one if none is."""
    ok = [p for p in points if p["val_accuracy"] >= base_val_accuracy - max_drop]
    if ok:
        return min(ok, key=lambda p: p["val_bits_per_image"])
    return max(points, key=lambda p: p["val_accuracy"])


def save_base(model: SplitCNN, metrics: dict, path: Path) -> Path:
    return atomic_torch_save({"format": FORMAT, "kind": "base", "cnn_config": model.config.to_dict(),
                         "state_dict": model.state_dict(), "metrics": metrics}, Path(path))


def save_codec(model: CoInferenceModel, metrics: dict, path: Path) -> Path:
    return atomic_torch_save({"format": FORMAT, "kind": "codec", "cnn_config": model.cnn.config.to_dict(),
                         "codec_config": model.codec.to_dict(), "state_dict": model.state_dict(),
                         "metrics": metrics}, Path(path))


def _load(path: Path, kind: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("kind") != kind:
        raise ValueError(f"{path}: not an edgepilot split {kind} checkpoint")
    return ckpt


def load_base(path: Path) -> tuple[SplitCNN, dict]:
    ckpt = _load(path, "base")
    model = SplitCNN(CNNConfig.from_dict(ckpt["cnn_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["metrics"]


def load_codec(path: Path) -> tuple[CoInferenceModel, dict]:
    ckpt = _load(path, "codec")
    model = CoInferenceModel(SplitCNN(CNNConfig.from_dict(ckpt["cnn_config"])), CodecConfig(**ckpt["codec_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["metrics"]


def lambda_sweep(base: SplitCNN, train: Split, val: Split, lambdas: list[float], out_dir: Path,
                 codec: CodecConfig = CodecConfig(), tc: TrainConfig = TrainConfig(),
                 progress: Progress = _noop) -> list[dict]:
    points = []
    features = head_features(base, train, codec.split_point, tc.flip_augment)
    for lam in lambdas:
        model, metrics = train_codec(base, train, val, lam, codec, tc, progress, features)
        path = save_codec(model, metrics, Path(out_dir) / f"codec_lambda_{lam:g}.pt")
        points.append({k: v for k, v in metrics.items() if k != "history"} | {"checkpoint": str(path)})
    return points


def write_json(obj, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path
