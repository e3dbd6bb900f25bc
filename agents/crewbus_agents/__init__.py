"""crewbus agents: planner, researcher, executor and critic, with their prompts."""
