"""Hyper-parameter search on Optuna (the ``tune`` extra); imported only when used."""
