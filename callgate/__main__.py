"""`python -m callgate`: the same command line as the `callgate` console script."""

from callgate.conformance.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
