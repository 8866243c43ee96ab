"""casebook: three hard ML problems as Lightning recipes, driven by one LightningCLI."""

__version__ = "0.1.0"
