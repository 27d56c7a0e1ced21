"""Datasets and the loader factory. Adding a dataset: a Dataset class plus a YAML in configs/dataset/."""
