"""Sample models shipped with Pruning Lab: architectures, trained weights and the script that trained them."""
