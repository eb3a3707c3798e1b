"""xposim: exact-ground-truth simulator for exploration in RLHF (XPO and relatives)."""
__version__ = "0.1.0"
