"""neuronlab's Hydra plugin: the resumable Optuna search (``resumable_optuna.py``).

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace, so the class lives
here; the logic is in ``neuronlab.cli.search``.
"""
