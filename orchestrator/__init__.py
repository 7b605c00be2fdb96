"""The `scs-sweep` CLI and the Ray Tune wiring: plans sweeps, runs them on Ray, reads their records.
May import search_spaces, trainables and results; ray only in the Tune modules, never at the CLI's start."""
