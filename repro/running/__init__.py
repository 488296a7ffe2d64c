"""Running a trainer: resolving the config, the run folder, the launcher, the training process."""
