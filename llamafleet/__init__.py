"""llamafleet: provision and verify llama.cpp RPC clusters over SSH."""

__version__ = "0.1.0"
