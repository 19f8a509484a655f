"""Run loops (functional and Gymnasium paths), run directory, checkpoints, config."""
