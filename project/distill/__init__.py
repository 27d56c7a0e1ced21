"""Distillation wing (optional; delete this folder, configs/experiment/distill.yaml and
tests/distill/ to drop it): a student learns from a trained teacher's softened outputs.

It plugs into the core through one seam: `task` may name a BaseTrainer subclass of the
project by its import path (project/trainer/__init__.py), and experiment=distill sets
`task: project.distill.trainer.DistillationTrainer`."""
