"""The command line: `postback serve|worker|migrate|...` and the process wiring behind it."""
