"""Leaf pieces that import nothing else of everlearn: errors, atomic files, checkpoint files,
ranges, the replay buffer and transition batch, the seed-axis lockstep helpers, row stores and
neuron statistics."""
