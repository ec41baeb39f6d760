"""Offline GAN training (torch). Writes run folders; `training.export` turns one into a model folder."""
