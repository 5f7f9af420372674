"""Training and evaluation on CamVid (run as `python -m train`)."""
