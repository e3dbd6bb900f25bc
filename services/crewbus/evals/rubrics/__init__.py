"""The packaged judge rubrics: `<name>.md`, each starting with its own `version: N`."""
