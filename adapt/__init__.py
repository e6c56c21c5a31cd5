"""The Lightning side of sam3-adapt: the task, the SAM 3 objective, metrics and the CLI."""
