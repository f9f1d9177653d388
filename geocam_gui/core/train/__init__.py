"""Training: configuration and per-model recipes, the engine (events, cancel/pause), the epoch
loop, the cache-fed batch loader, evaluation metrics and the child process the GUI trains in.
Builds on ``data`` and the shared core modules."""
