"""llamafleet's command line in this checkout: `invoke provision | deploy | verify | status | inventory | render |
lab.*`. The tasks live in llamafleet/commands.py, which the installed `llamafleet` command runs too."""

from llamafleet.commands import ns  # noqa: F401 - invoke takes the collection named ns
