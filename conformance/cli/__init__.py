"""The `callgate` command line: `main` builds the parser, one module per group of subcommands."""
