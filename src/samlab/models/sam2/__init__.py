"""SAM 2 video fine-tuning: the model's torch parts (prompt simulation, optimiser groups, inference) and its
LightningModule, one submodule each; nothing is imported here so that importing one part stays light."""
