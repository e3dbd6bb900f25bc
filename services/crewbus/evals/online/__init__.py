"""Online evaluation of production tasks: the evaluator service (`service`), its
evaluators.toml (`config`) and sampling rule (`sampling`), the task scores it stores
(`scores`), and human feedback stored beside them (`feedback`)."""
