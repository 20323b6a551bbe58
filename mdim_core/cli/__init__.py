"""The command line, ``python -m mdim_core COMMAND``: one module per command, and the volume runner."""
