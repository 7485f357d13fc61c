"""The outside of cnnlab: the command line (one module per command group)."""
