"""Noise schedules and samplers: the zero-terminal-SNR schedule and the step rules hosts share."""
