"""LightningDataModules for casebook's tasks: sources, parsing, features, splits (and the RL environment).

Data flows one way: datamodules never import lightning_modules.
"""
