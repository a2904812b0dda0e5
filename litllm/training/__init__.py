"""Training: the LightningModule, its loss, callbacks, and runs driven by LightningCLI recipes."""
