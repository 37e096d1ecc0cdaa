"""Files: safetensors artifacts and their schema, imported checkpoints, inspection, run folders."""
