"""The compiled act-step-learn trainers (functional, Gymnasium, from data), the single-task
reference runs and the normalisation scores."""
