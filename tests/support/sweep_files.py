"""Sweep files the tests share."""

# two axes, layer x max_lr: 4 trials of rohrer25k
GOOD = """
name = "lr-axis"
epochs = 2

[fixed]
arch = "rohrer25k"
activation = "none"
pooling = "maxabs"
batch_size = 64

[[grid]]
layer = ["conv", "scs"]
max_lr = [0.003, 0.01]
"""
GRID = "[[grid]]\nlayer = [\"conv\", \"scs\"]\nmax_lr = [0.003, 0.01]"
