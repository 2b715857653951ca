"""The model handed to other checkers: Promela for spin (issue 20, item 5).

* `callgate.model.export.targets`: the machines and compositions an engine can be asked about,
  by name (`resolve`).
* `callgate.model.export.promela`: the Promela text of a machine or composition, generated from
  the same transition tables the Python explorer steps, with its state and cross invariants as
  assertions.
* `callgate.model.export.engines`: one result shape (`EngineResult`) for both engines: the
  Python explorer (`python_engine`) and spin (`spin_engine`).
"""
