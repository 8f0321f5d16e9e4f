"""Offline training: objectives (pure losses) and the one loop that runs them.

config.py      `LoraSettings` (shared with online RL), `TrainConfig` and `load_config`
objectives.py  the losses as pure functions, and `OBJECTIVES`: each method's loss over a scored micro-batch
batches.py     tokenising, packing and ordering examples
logps.py       per-sequence log-probs with logits only where a loss needs them
rundir.py      `RunDir`, the run folder both loops share: accelerate, metrics, checkpoints, resume, export
checkpoint.py  atomic checkpoints, metric truncation on resume, the exported folders
loop.py        `train`: the loop
"""
