"""The ``supervised`` trainer: the backbone learns the binary pseudo-labels with the configured loss."""

from __future__ import annotations

import torch

from crackseg import (
    BinaryLabels,
    CracksegError,
    SegmentationTrainSet,
    TrainForward,
    TrainJob,
    TrainResult,
    check_batch,
    collate,
    forward_outputs,
    input_stats,
    size_multiple,
    start_training,
)


class SupervisedTrainer:
    """Plain training on the binary pseudo-labels (the paper's phase 2)."""

    def fit(self, job: TrainJob) -> TrainResult:
        engine, cfg = job.engine, job.config
        started = start_training(job)
        if started is None:
            return engine.result()
        optimizer, scheduler = started
        params = engine.trainable()
        mean, std = input_stats(job.model)
        data = SegmentationTrainSet(job.samples, BinaryLabels(job.labels), job.image_size, cfg, mean, std, job.seed,
                                    dataset=job.dataset)
        loader = engine.loader(data, cfg.batch_size, collate_fn=collate)
        net = engine.wrap(TrainForward(engine.model))
        multiple = size_multiple(job.model)
        for epoch in engine.epochs():
            total, count = 0.0, 0
            bar = engine.progress(loader)
            for batch in bar:
                x, y, keys = check_batch(batch)
                x, y = x.to(engine.device, non_blocking=True), y.to(engine.device, non_blocking=True)
                with engine.autocast():
                    outs = forward_outputs(net, x, keys, multiple, job.backbone)
                loss = job.loss(outs, y)
                if not torch.isfinite(loss):
                    raise CracksegError(f"training diverged: loss is {loss.item()} at step {engine.step}; "
                                        f"lower train.lr")
                engine.backward_step(loss, optimizer, params, images=x.shape[0])
                total += float(loss.detach()) * x.shape[0]
                count += x.shape[0]
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
                if engine.should_stop():
                    break
            if scheduler is not None:
                scheduler.step()
            engine.end_epoch(epoch, {"loss": engine.mean_across(total, count)}, optimizer, scheduler)
        return engine.result()
