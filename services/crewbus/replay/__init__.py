"""Learning from production: recorded tasks run again under a candidate variant (replay)
and live tasks' twins run beside them (shadow), each paired with the original in a pair
of experiments that `crewbus eval compare` reads. See docs/replay.md.

The agents enforce the replay rules (`crewbus_agents.tools.replay`,
`crewbus_agents.recording`); this package picks the tasks, builds the experiment pairs
and runs the shadow inside the orchestrator.
"""
