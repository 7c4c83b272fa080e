"""`python -m loomiq.cli`: the same as the `loomiq` command."""

from . import main

main()
