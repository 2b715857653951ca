"""The conformance harness (import name `callgate.conformance`): runs an implementation, through
an adapter, against the model, and reports what held.

Wings, lower layers first; a module imports only from its own wing or a lower one:
  protocol/         the adapter protocol, the JSON-lines transport and server, adapter loading
  judge/            running a case step by step against the model; linearizability
  cases/            the case makers: tours, the coverage walk, Hypothesis programs, parallel cases
  report/           views of the results stream: JSON, JUnit, Markdown, HTML, diagrams, compare
  implementations/  the bundled implementations: the reference, Wine
  cli/              the `callgate` command, one module per subcommand
and beside them results (the stream), expectations (known deviations), budgets, gate (a whole
run), mutants and the pytest plugin.
"""
