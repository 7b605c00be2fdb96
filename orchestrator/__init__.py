"""CLI and Ray Tune wiring: presets -> Tuner; run, resume, status. Ray is imported only where needed."""
